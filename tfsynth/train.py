"""``python -m tfsynth.train``: the ``tfsynth train`` command (`tfsynth.commands.train`)."""

import sys

if __name__ == "__main__":  # imported, this module is empty
    from tfsynth.cli import run

    sys.exit(run("train"))
