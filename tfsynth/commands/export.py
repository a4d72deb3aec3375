"""``tfsynth export`` / ``python -m tfsynth.export``: a trained run into TF Serving's layout (`tfsynth.savedmodel.export`)."""

from __future__ import annotations

import argparse

from tfsynth.errors import cli_entry
from tfsynth.savedmodel.contract import COMPUTE_DTYPES, DEFAULT_COMPUTE_DTYPE
from tfsynth.savedmodel.export import export_run


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tfsynth export",
        description="Copy a trained run's SavedModel into TF Serving's <base>/<name>/<version>/ layout, atomically.",
    )
    parser.add_argument("run_dir", help="training run directory (holds saved_model/)")
    parser.add_argument("--base-path", required=True, help="directory holding one folder per served model")
    parser.add_argument("--name", default="tfsynth", help="model name in TF Serving (default: tfsynth)")
    parser.add_argument("--version", type=int, default=None, help="version number (default: next free integer)")
    parser.add_argument(
        "--precision",
        choices=COMPUTE_DTYPES,
        default=None,
        help="compute precision of the served generator (default: the run's export, normally "
        f"{DEFAULT_COMPUTE_DTYPE}); bfloat16 pays off only on CPUs with AMX/AVX512-BF16 or on accelerators",
    )
    args = parser.parse_args(argv)
    target = export_run(args.run_dir, args.base_path, name=args.name, version=args.version, precision=args.precision)
    print(target)
    return 0
