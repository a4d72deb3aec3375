"""``python -m tfsynth.evaluate``: the ``tfsynth evaluate`` command (`tfsynth.commands.evaluate`)."""

import sys

if __name__ == "__main__":  # imported, this module is empty
    from tfsynth.cli import run

    sys.exit(run("evaluate"))
