"""The ``tfsynth`` console script: one subcommand per pipeline step.

Each subcommand is the ``main(argv)`` of a module in `tfsynth.commands`; ``python -m
tfsynth.<name>`` runs the same through `run`. This file only dispatches, importing the module
lazily so ``tfsynth --help`` does not load TensorFlow.
"""

from __future__ import annotations

import importlib
import sys

from tfsynth.onednn import prefer_onednn

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "phantom": ("tfsynth.commands.phantom", "build the built-in phantom cohort (BraTS-layout NIfTI)"),
    "prepare": ("tfsynth.commands.prepare", "validate, normalise and write BraTS cases as sharded TFRecords"),
    "train": ("tfsynth.commands.train", "train the unified GAN"),
    "tune": ("tfsynth.commands.tune", "Keras Tuner sweep of the loss weights"),
    "evaluate": ("tfsynth.commands.evaluate", "the paper's 4x3 metric tables on held-out cases"),
    "synthesize": ("tfsynth.commands.synthesize", "NIfTI-to-NIfTI synthesis of missing contrasts"),
    "export": ("tfsynth.commands.export", "export a run as a TF Serving SavedModel"),
    "request": ("tfsynth.commands.request", "send a NIfTI volume to TF Serving over gRPC"),
    "bench": ("tfsynth.commands.bench", "training and inference throughput"),
    "dev-server": ("tfsynth.commands.dev_server", "development stand-in for tensorflow_model_server (gRPC)"),
}


def usage() -> str:
    lines = ["usage: tfsynth COMMAND [ARGS ...]", "", "commands:"]
    lines += [f"  {name:<11} {help_text}" for name, (_, help_text) in SUBCOMMANDS.items()]
    lines += ["", "Run 'tfsynth COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        print(f"error: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return run(command, rest)


def run(command: str, argv: list[str] | None = None) -> int:
    """Runs subcommand ``command`` with ``argv`` (default: the process's arguments)."""
    prefer_onednn()  # before the subcommand's module is imported
    module = importlib.import_module(SUBCOMMANDS[command][0])
    return module.main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
