"""``python -m tfsynth.prepare``: runs the `tfsynth prepare` command (`tfsynth.prepare_command`).

Only an entry point; the library is `tfsynth.data.prepare`.
"""

import sys

from .prepare_command import main

if __name__ == "__main__":
    sys.exit(main())
