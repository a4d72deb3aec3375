"""``python -m tfsynth.prepare``: runs the `tfsynth prepare` command (`tfsynth.prepare_command`).

Only an entry point; the library is `tfsynth.data.preparation`.
"""

import sys

if __name__ == "__main__":  # imported, this module is empty: nothing imports a command's module
    from tfsynth.prepare_command import main

    sys.exit(main())
