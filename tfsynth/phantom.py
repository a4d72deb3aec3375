"""``python -m tfsynth.phantom``: runs the `tfsynth phantom` command (`tfsynth.phantom_command`).

Only an entry point; the library is `tfsynth.data.phantom_cohort`.
"""

import sys

if __name__ == "__main__":  # imported, this module is empty: nothing imports a command's module
    from tfsynth.phantom_command import main

    sys.exit(main())
