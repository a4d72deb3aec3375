"""``python -m tfsynth.phantom``: runs the `tfsynth phantom` command (`tfsynth.phantom_command`).

Only an entry point; the library is `tfsynth.data.phantom`.
"""

import sys

from .phantom_command import main

if __name__ == "__main__":
    sys.exit(main())
