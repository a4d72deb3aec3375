"""``tfsynth request --address HOST:PORT --target t2 IN.nii.gz OUT_DIR``: synthesis by a TF Serving server.

Sends the volume's axial slices (one request per target) and writes
``OUT_DIR/{case}-{contrast}.nii.gz`` (the name ``tfsynth synthesize`` gives) on the input's grid,
intensities in [0, 1].
"""

from __future__ import annotations

import argparse
import sys

from ..errors import cli_entry


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tfsynth request", description=__doc__.splitlines()[0])
    parser.add_argument("input", help="source NIfTI volume (.nii or .nii.gz)")
    parser.add_argument("out_dir", help="directory for the synthesised volumes")
    parser.add_argument(
        "--address", required=True, help="HOST:PORT of TF Serving (gRPC 8500, or REST 8501 with --rest)"
    )
    parser.add_argument(
        "--source", help="contrast of the input (t1, t1c, t2, flair or an alias); default: from a BraTS file name"
    )
    parser.add_argument(
        "--target", action="append", required=True, help="target contrast (repeatable): t1, t1c, t2, flair"
    )
    parser.add_argument("--model-name", default="tfsynth")
    parser.add_argument("--version", type=int, default=None, help="model version (default: latest)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    parser.add_argument("--retries", type=int, default=3, help="retries when the server is UNAVAILABLE (default 3)")
    parser.add_argument("--rest", action="store_true", help="use TF Serving's REST API instead of gRPC")
    args = parser.parse_args(argv)
    if args.rest:
        from .rest import RestSynthesisClient as Client
    else:
        from .client import SynthesisClient as Client
    with Client(
        args.address, args.model_name, timeout=args.timeout, retries=args.retries, version=args.version
    ) as client:
        for path in client.synthesize_volume(args.input, args.target, args.out_dir, source=args.source):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
