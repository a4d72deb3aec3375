"""``python -m tfsynth.prepare``: the ``tfsynth prepare`` command (`tfsynth.commands.prepare`)."""

import sys

if __name__ == "__main__":  # imported, this module is empty
    from tfsynth.cli import run

    sys.exit(run("prepare"))
