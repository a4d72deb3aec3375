"""``python -m tfsynth.tune``: the ``tfsynth tune`` command (`tfsynth.commands.tune`)."""

import sys

if __name__ == "__main__":  # imported, this module is empty
    from tfsynth.cli import run

    sys.exit(run("tune"))
