"""NIfTI-to-NIfTI synthesis of missing contrasts, whole volumes at a time.

``python -m tfsynth.synthesize --model PATH --source C --target C [C ...] --out DIR INPUT...``

INPUT: NIfTI files of the source contrast, or folders of BraTS cases (either naming era; the
source file of each case is picked by name). For each case: read and validate the volume; find
its brain (the nonzero voxels of a skull-stripped volume -- a volume whose background is not 0 is
refused unless ``--brain-mask FILE`` or ``--background VALUE`` says where the brain is, see
`tfsynth.data.brain_mask`); normalise it as in training (0.5/99.5 brain percentiles -> [0, 1]);
reorient it to the model's slicing orientation and resample it to the model's voxel size
(`tfsynth.data.geometry.Frame`; ``--no-resample`` turns resampling off); take every axial slice
with brain, place it on the model's canvas (`to_canvas`), synthesise each target in batches, undo
the canvas, resampling and reorientation, zero the background and write a float32 NIfTI on exactly
the input's grid (shape, affine, qform/sform) with `tfsynth.data.nifti.write_like`, atomically,
its header saying what it is. Output intensities are the normalised [0, 1] scale of the training
data: the target's scanner scale is unknown.

Output names (``--naming``): ``brats2023`` (default, the BraSyn convention
``{case}-{t1n|t1c|t2w|t2f}.nii.gz``), ``brats2020`` (``{case}_{t1|t1ce|t2|flair}.nii.gz``),
``canonical`` (``{case}-{t1|t1c|t2|flair}.nii.gz``), or a template using ``{case}``,
``{contrast}`` (canonical) and ``{source}``, e.g. ``"{case}_{contrast}_from_{source}.nii.gz"``.

A failing case is reported on stderr and the others continue (``--fail-fast`` stops at the
first); the exit status is 1 if any case failed, 2 for a usage error before any work. A case's
files appear together or not at all, so an interrupted run is resumed by running it again: cases
already written are skipped and a case missing some files gets those, each with a note;
``--overwrite`` replaces everything.

``--complete IN_DIR --out OUT_DIR``: the other mode, missing-contrast completion of BraSyn-layout
cases (each case's one missing contrast from all the present ones), with its own parser
(`build_complete_parser`); the library is `tfsynth.synthesis.completion`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tfsynth.commands.arguments import (
    SKULL_STRIPPED,
    add_resample_argument,
    add_source_arguments,
    add_target_argument,
    paths_after_targets,
    source_options,
)
from tfsynth.contrasts import canonical_list
from tfsynth.errors import TfsynthError, batch_exit_status, cli_entry
from tfsynth.synthesis.batch import synthesize_files
from tfsynth.synthesis.volumes import (
    DEFAULT_BATCH,
    NAMINGS,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfsynth synthesize",
        description="Synthesise missing contrasts of whole NIfTI volumes; outputs lie on the input's exact grid.",
        epilog="Completion mode (--complete IN_DIR) takes other options: tfsynth synthesize --complete IN_DIR -h",
    )
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="source NIfTI files or folders of BraTS cases")
    parser.add_argument("--model", required=True, help="run directory, SavedModel directory or TF-Serving model base")
    parser.add_argument("--source", required=True, help="contrast of the inputs (t1, t1c, t2, flair or an alias)")
    add_target_argument(parser)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--naming", default="brats2023", help=f"{', '.join(NAMINGS)} or a template with {{case}} and {{contrast}}"
    )
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH, help="source slices per model call (all targets at once)"
    )
    add_source_arguments(parser)
    _add_run_arguments(parser)
    parser.add_argument(
        "--complete",
        metavar="IN_DIR",
        help="completion mode: each BraTS case in IN_DIR lacks one contrast, synthesised from the others "
        "(no --source/--target/INPUT; see tfsynth.synthesis.completion)",
    )
    return parser


def build_complete_parser() -> argparse.ArgumentParser:
    """The command line of ``tfsynth synthesize --complete`` (completion mode)."""
    parser = argparse.ArgumentParser(
        prog="tfsynth synthesize --complete",
        description="Synthesise each case's one missing contrast from the others (BraSyn layout in, flat folder out). "
        + SKULL_STRIPPED,
    )
    parser.add_argument("--complete", required=True, metavar="IN_DIR", help="folder of BraTS case folders")
    parser.add_argument("--model", required=True, help="run directory, SavedModel directory or TF-Serving model base")
    parser.add_argument("--out", required=True, help="output directory (flat)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="slices per model call")
    add_resample_argument(parser)
    _add_run_arguments(parser)
    return parser


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``, ``--fail-fast`` and ``--quiet``: how a run over many cases goes, in both modes."""
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing output files (else only missing ones are written)"
    )
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing case")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _complete(argv: list[str]) -> int:
    """``tfsynth synthesize --complete``: exit status 0, or 1 if a case failed."""
    args = build_complete_parser().parse_args(argv)
    if args.batch_size < 1:
        raise TfsynthError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not Path(args.complete).is_dir():
        raise TfsynthError(f"--complete {args.complete}: not a directory")
    from tfsynth.synthesis.completion import complete_directory
    from tfsynth.synthesis.local import load_synthesizer

    synthesizer = load_synthesizer(args.model)
    if not getattr(synthesizer, "completes", True):  # refused once, rather than once per case
        raise TfsynthError(
            f"--model {args.model}: this model has no completion signature; train it with model.any_subset"
        )
    result = complete_directory(
        synthesizer,
        args.complete,
        args.out,
        overwrite=args.overwrite,
        resample=not args.no_resample,
        batch_size=args.batch_size,
        fail_fast=args.fail_fast,
        progress=not args.quiet,
    )
    return batch_exit_status(
        f"completed {len(result.written)} case(s) into {args.out}{_skipped(result.skipped)}",
        [case for case, _ in result.failures],
    )


def _skipped(cases: list[str]) -> str:
    """The summary's mention of the cases a rerun found written (each already named in a note)."""
    return f"; {len(cases)} case(s) already written, skipped" if cases else ""


@cli_entry
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(arg == "--complete" or arg.startswith("--complete=") for arg in argv):
        return _complete(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.inputs = paths_after_targets(args, "inputs")
    if not args.inputs:
        parser.error("the following arguments are required: INPUT")
    targets = canonical_list(args.target)
    run = synthesize_files(
        args.model,
        args.inputs,
        args.source,
        targets,
        args.out,
        naming=args.naming,
        batch_size=args.batch_size,
        options=source_options(args),
        overwrite=args.overwrite,
        fail_fast=args.fail_fast,
        progress=not args.quiet,
    )
    return batch_exit_status(
        f"synthesized {len(run.written)} case(s) x {len(targets)} contrast(s) into {args.out}{_skipped(run.skipped)}",
        list(run.failures),
    )
