"""``python -m tfsynth.bench``: the ``tfsynth bench`` command (`tfsynth.commands.bench`)."""

import sys

if __name__ == "__main__":  # imported, this module is empty
    from tfsynth.cli import run

    sys.exit(run("bench"))
