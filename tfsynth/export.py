"""``python -m tfsynth.export``: the ``tfsynth export`` command (`tfsynth.commands.export`)."""

import sys

if __name__ == "__main__":  # imported, this module is empty
    from tfsynth.cli import run

    sys.exit(run("export"))
