"""``tfsynth request --address HOST:PORT --target t2 IN.nii.gz OUT_DIR``: synthesis by TF Serving.

Sends the volume's axial slices in the slicing orientation (one request per target) and writes
``OUT_DIR/{case}-{contrast}.nii.gz`` (the name ``tfsynth synthesize`` gives) on the input's grid,
intensities in [0, 1]. ``--target t2 flair`` and ``--target t2 --target flair`` are the same;
``--brain-mask FILE`` / ``--background VALUE`` as for ``tfsynth synthesize``. The files appear
together or not at all; a rerun requests only the targets whose files are missing (with a note),
``--overwrite`` replaces them all. The volume is
resampled to the served model's voxel size, which the client asks the model once (its
``model_info`` signature); ``--voxel-size MM`` overrides it and ``--no-resample`` sends the volume
as it is (for models exported before ``model_info``, one of the two is needed).

``tfsynth request --address HOST:PORT --complete CASE_DIR OUT_DIR``: completion. CASE_DIR is one
BraTS case folder lacking one contrast; its contrasts go in one request to the ``complete``
signature and OUT_DIR gets the missing one, named as it would have been
(``BraTS-GLI-00000-000-t2f.nii.gz``) and written as ``tfsynth synthesize --complete`` writes it
(an existing file is kept with a note, unless ``--overwrite``).
"""

from __future__ import annotations

import argparse
import sys

from tfsynth.commands.arguments import (
    SKULL_STRIPPED,
    add_source_arguments,
    add_target_argument,
    paths_after_targets,
    source_options,
)
from tfsynth.errors import cli_entry


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The server and how to reach it, and the served model's voxel size (both modes)."""
    parser.add_argument(
        "--address", required=True, help="HOST:PORT of TF Serving (gRPC 8500, or REST 8501 with --rest)"
    )
    # A volume sent at another voxel size than the model's comes back silently different from
    # `tfsynth synthesize`'s, so by default the client asks the model its voxel size.
    voxel = parser.add_mutually_exclusive_group()
    voxel.add_argument(
        "--voxel-size",
        type=float,
        nargs="+",
        metavar="MM",
        help="resample to this voxel size (one number or three) instead of the one the served model states",
    )
    voxel.add_argument(
        "--no-resample",
        action="store_true",
        help="send the volume at its own voxel size (right only when it already is the model's)",
    )
    parser.add_argument("--model-name", default="tfsynth")
    parser.add_argument("--version", type=int, default=None, help="model version (default: latest)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    parser.add_argument("--retries", type=int, default=3, help="retries when the server is UNAVAILABLE (default 3)")
    parser.add_argument("--rest", action="store_true", help="use TF Serving's REST API instead of gRPC")


def open_client(args: argparse.Namespace):
    """The gRPC or REST client that parsed `add_connection_arguments` flags ask for."""
    if args.rest:
        from tfsynth.clients.rest_client import RestSynthesisClient as Client
    else:
        from tfsynth.clients.grpc_client import SynthesisClient as Client
    return Client(args.address, args.model_name, timeout=args.timeout, retries=args.retries, version=args.version)


def voxel_size(client, args: argparse.Namespace):
    """The voxel size to resample to: ``--voxel-size``, none with ``--no-resample``, else the model's own."""
    if args.no_resample:
        return None
    return args.voxel_size or client.served_voxel_size()


def complete_main(argv: list[str]) -> int:
    """``tfsynth request --complete CASE_DIR OUT_DIR``."""
    parser = argparse.ArgumentParser(
        prog="tfsynth request --complete",
        description=f"Complete one BraTS case's missing contrast on TF Serving. {SKULL_STRIPPED}",
    )
    parser.add_argument("--complete", action="store_true", required=True, help="completion mode")
    parser.add_argument("case_dir", help="one BraTS case folder lacking exactly one contrast")
    parser.add_argument("out_dir", help="directory for the synthesised volume")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    with open_client(args) as client:
        written = client.complete_case(args.case_dir, args.out_dir, voxel_size(client, args), args.overwrite)
    if written is not None:  # None: it existed, and the note said so
        print(written)
    return 0


@cli_entry
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--complete" in argv:
        return complete_main(argv)
    parser = argparse.ArgumentParser(
        prog="tfsynth request",
        description=__doc__.splitlines()[0],
        epilog="Completion mode (--complete CASE_DIR OUT_DIR) takes other options: tfsynth request --complete -h",
    )
    parser.add_argument("input", nargs="?", help="source NIfTI volume (.nii or .nii.gz)")
    parser.add_argument("out_dir", nargs="?", help="directory for the synthesised volumes")
    parser.add_argument(
        "--source", help="contrast of the input (t1, t1c, t2, flair or an alias); default: from a BraTS file name"
    )
    add_target_argument(parser)
    add_source_arguments(parser, resample=False)
    add_connection_arguments(parser)
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing output files (else only missing ones are written)"
    )
    parser.add_argument("--complete", action="store_true", help="completion mode, see: tfsynth request --complete -h")
    args = parser.parse_args(argv)
    paths = paths_after_targets(args, "input", "out_dir")
    if len(paths) != 2:
        parser.error(f"expected the input volume and the output directory, got {paths}")
    args.input, args.out_dir = paths
    options = source_options(args)  # the same checks as tfsynth synthesize
    with open_client(args) as client:
        paths = client.synthesize_volume(
            args.input,
            args.target,
            args.out_dir,
            source=args.source,
            brain_mask=options.brain_mask,
            background=options.background,
            voxel_size_mm=voxel_size(client, args),
            overwrite=args.overwrite,
        )
        for path in paths:
            print(path)
    return 0
