"""``python -m tfsynth.synthesize``: the ``tfsynth synthesize`` command (`tfsynth.commands.synthesize`)."""

import sys

if __name__ == "__main__":  # imported, this module is empty
    from tfsynth.cli import run

    sys.exit(run("synthesize"))
