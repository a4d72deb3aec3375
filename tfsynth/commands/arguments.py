"""Command-line arguments shared by ``tfsynth synthesize`` (both modes) and ``tfsynth request``."""

from __future__ import annotations

import argparse
from pathlib import Path

from tfsynth.contrasts import canonical
from tfsynth.errors import TfsynthError
from tfsynth.synthesis.volumes import SourceOptions

# Completion mode has no --brain-mask / --background: said in both commands' help.
SKULL_STRIPPED = "The inputs must be skull-stripped (background exactly 0), as BraTS and BraSyn cases are."


def add_target_argument(parser: argparse.ArgumentParser) -> None:
    """``--target``: ``--target t2 flair`` and ``--target t2 --target flair`` both work (also for ``tfsynth request``)."""
    parser.add_argument(
        "--target",
        required=True,
        nargs="+",
        action="extend",
        help="contrast(s) to synthesise: --target t2 flair, or --target t2 --target flair",
    )


def paths_after_targets(args: argparse.Namespace, *positionals: str) -> list[str]:
    """Gives back the paths that ``--target t2 flair IN OUT`` lets argparse put into ``--target``.

    ``--target`` takes one or more values, so the positional paths written after it land in it.
    Trailing values that are not contrast names are moved behind the positional values already
    parsed (declare the positionals optional, ``nargs="*"`` or ``"?"``).

    Returns:
        The positional values, in command-line order (``args.target`` loses the moved ones).
    """

    def is_contrast(word: str) -> bool:
        try:
            canonical(word)
        except TfsynthError:
            return False
        return True

    moved: list[str] = []
    while len(args.target) > 1 and not is_contrast(args.target[-1]):
        moved.insert(0, args.target.pop())
    given = []
    for name in positionals:
        value = getattr(args, name)
        given += value if isinstance(value, list) else [value] if value is not None else []
    return given + moved


def add_source_arguments(parser: argparse.ArgumentParser, resample: bool = True) -> None:
    """``--brain-mask``, ``--background`` (and ``--no-resample``): where the brain of a source volume is."""
    parser.add_argument(
        "--brain-mask", type=Path, help="NIfTI brain mask on the input's grid (nonzero = brain); one input only"
    )
    parser.add_argument(
        "--background",
        type=float,
        help="background value of inputs that are not 0 outside the brain (e.g. -32768); voxels equal to it are background",
    )
    if resample:
        add_resample_argument(parser)


def add_resample_argument(parser: argparse.ArgumentParser) -> None:
    """``--no-resample`` (``args.no_resample``): keep the inputs' voxel size instead of the model's."""
    parser.add_argument(
        "--no-resample",
        action="store_true",
        help="do not resample inputs to the model's voxel size (default: resample, and back on write)",
    )


def source_options(args: argparse.Namespace) -> SourceOptions:
    """The `SourceOptions` of parsed `add_source_arguments` flags.

    Raises:
        TfsynthError: both ``--brain-mask`` and ``--background``, or a missing mask file.
    """
    if args.brain_mask is not None and args.background is not None:
        raise TfsynthError("give --brain-mask or --background, not both")
    if args.brain_mask is not None and not args.brain_mask.is_file():
        raise TfsynthError(f"--brain-mask {args.brain_mask}: no such file")
    return SourceOptions(args.brain_mask, args.background, not getattr(args, "no_resample", False))
