"""``python -m tfsynth.phantom``: the ``tfsynth phantom`` command (`tfsynth.commands.phantom`)."""

import sys

from tfsynth.cli import run

sys.exit(run("phantom"))
