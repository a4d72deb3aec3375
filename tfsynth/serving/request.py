"""``tfsynth request --address HOST:PORT --target t2 IN.nii.gz OUT_DIR``: synthesis by a TF Serving server.

Sends the volume's axial slices in the slicing orientation (one request per target) and writes
``OUT_DIR/{case}-{contrast}.nii.gz`` (the name ``tfsynth synthesize`` gives) on the input's grid,
intensities in [0, 1]. ``--target t2 flair`` and ``--target t2 --target flair`` are the same;
``--brain-mask FILE`` / ``--background VALUE`` as for ``tfsynth synthesize``.
"""

from __future__ import annotations

import argparse
import sys

from ..arguments import add_source_arguments, add_target_argument, paths_after_targets
from ..errors import TfsynthError, cli_entry


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tfsynth request", description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?", help="source NIfTI volume (.nii or .nii.gz)")
    parser.add_argument("out_dir", nargs="?", help="directory for the synthesised volumes")
    parser.add_argument(
        "--address", required=True, help="HOST:PORT of TF Serving (gRPC 8500, or REST 8501 with --rest)"
    )
    parser.add_argument(
        "--source", help="contrast of the input (t1, t1c, t2, flair or an alias); default: from a BraTS file name"
    )
    add_target_argument(parser)
    add_source_arguments(parser, resample=False)
    parser.add_argument(
        "--voxel-size",
        type=float,
        nargs="+",
        metavar="MM",
        help="the served model's voxel size (its metadata.json voxel_size_mm; one number or three): the volume is "
        "resampled to it and the results back to the input's grid; default: sent at its own voxel size",
    )
    parser.add_argument("--model-name", default="tfsynth")
    parser.add_argument("--version", type=int, default=None, help="model version (default: latest)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    parser.add_argument("--retries", type=int, default=3, help="retries when the server is UNAVAILABLE (default 3)")
    parser.add_argument("--rest", action="store_true", help="use TF Serving's REST API instead of gRPC")
    args = parser.parse_args(argv)
    paths = paths_after_targets(args, "input", "out_dir")
    if len(paths) != 2:
        parser.error(f"expected the input volume and the output directory, got {paths}")
    args.input, args.out_dir = paths
    if args.brain_mask is not None and args.background is not None:
        raise TfsynthError("give --brain-mask or --background, not both")
    if args.rest:
        from .rest import RestSynthesisClient as Client
    else:
        from .client import SynthesisClient as Client
    with Client(
        args.address, args.model_name, timeout=args.timeout, retries=args.retries, version=args.version
    ) as client:
        paths = client.synthesize_volume(
            args.input,
            args.target,
            args.out_dir,
            source=args.source,
            brain_mask=args.brain_mask,
            background=args.background,
            voxel_size_mm=args.voxel_size,
        )
        for path in paths:
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
