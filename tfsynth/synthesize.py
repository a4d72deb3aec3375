"""NIfTI-to-NIfTI synthesis of missing contrasts, whole volumes at a time.

``python -m tfsynth.synthesize --model PATH --source C --target C [C ...] --out DIR INPUT...``

INPUT: NIfTI files of the source contrast, or folders of BraTS cases (either naming era; the
source file of each case is picked by name). For each case: read and validate the volume; find
its brain (the nonzero voxels of a skull-stripped volume -- a volume whose background is not 0 is
refused unless ``--brain-mask FILE`` or ``--background VALUE`` says where the brain is, see
`tfsynth.data.background`); normalise it as in training (0.5/99.5 brain percentiles -> [0, 1]);
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
first); the exit status is 1 if any case failed, 2 for a usage error before any work.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .contrasts import BRATS_NAMES, canonical, canonical_list
from .errors import TfsynthError, cli_entry

NAMINGS = ("brats2023", "brats2020", "canonical")
DEFAULT_BATCH = 16
# Slices fed per neighbour side; a 2.5-D model would set this from its metadata (see `network_inputs`).
SLICE_CONTEXT = 0


def output_name(naming: str, case_id: str, target: str, source: str | None) -> str:
    """The output file name of one synthesised contrast (also used by `tfsynth.serving.client`).

    Args:
        naming: ``brats2023``, ``brats2020``, ``canonical`` or a template (see the module docstring).
        case_id: the case, e.g. from `case_id_of`.
        target, source: canonical contrast names; ``source`` may be None unless the template uses it.

    Raises:
        TfsynthError: a template without ``{case}`` and ``{contrast}``, with unknown fields, or
            with ``{source}`` when the source is unknown.
    """
    if naming in ("brats2023", "brats2020"):
        separator = "-" if naming == "brats2023" else "_"
        return f"{case_id}{separator}{BRATS_NAMES[naming][target]}.nii.gz"
    if naming == "canonical":
        return f"{case_id}-{target}.nii.gz"
    if "{case}" not in naming or "{contrast}" not in naming:
        raise TfsynthError(
            f"--naming {naming!r}: use one of {', '.join(NAMINGS)} or a template with {{case}} and {{contrast}}"
        )
    if source is None and "{source}" in naming:
        raise TfsynthError(f"--naming {naming!r} uses {{source}}, but the source contrast is not known")
    try:
        name = naming.format(case=case_id, contrast=target, source=source)
    except (KeyError, IndexError, ValueError) as error:
        raise TfsynthError(
            f"--naming {naming!r}: bad template ({error}); fields are {{case}}, {{contrast}}, {{source}}"
        ) from None
    if "/" in name or not name.endswith((".nii", ".nii.gz")):
        raise TfsynthError(f"--naming {naming!r}: must give a file name ending in .nii or .nii.gz, got {name!r}")
    return name


def case_id_of(path: str | Path) -> tuple[str, str | None]:
    """``(case id, contrast or None)`` of a NIfTI file name.

    A BraTS name (``BraTS-GLI-00000-000-t1n.nii.gz``, ``BraTS20_Training_001_t1.nii``) gives its
    case and canonical contrast; any other name gives itself without ``.nii[.gz]`` and None.
    """
    from .data.brats import NIFTI_SUFFIXES, parse_name

    path = Path(path)
    parsed = parse_name(path)
    if parsed is not None and parsed[1] != "seg":
        return parsed[0], parsed[1]
    name = path.name
    return next((name[: -len(s)] for s in NIFTI_SUFFIXES if name.lower().endswith(s)), path.stem), None


def collect_inputs(inputs: Sequence[str], source: str) -> list[tuple[str, Path]]:
    """``(case_id, source file)`` for every input: NIfTI files as given, folders searched for BraTS cases.

    A folder case without the source contrast is kept with its folder as the "file", so that it
    is reported as that case's failure rather than aborting the batch.

    Raises:
        TfsynthError: an input that does not exist, or two inputs with the same case id.
    """
    from .data.brats import find_cases

    found: list[tuple[str, Path]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for case in find_cases(path):
                found.append((case.case_id, case.files.get(source, case.folder)))
        elif path.is_file():
            found.append((case_id_of(path)[0], path))
        else:
            raise TfsynthError(f"{path}: no such file or directory")
    seen: dict[str, Path] = {}
    for case_id, path in found:
        if case_id in seen:
            raise TfsynthError(f"case {case_id} given twice ({seen[case_id]} and {path}); outputs would collide")
        seen[case_id] = path
    return found


def to_canvas(stack: np.ndarray, brain: np.ndarray, size: int | None) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Places axial slices on the model's ``size x size`` training canvas, as `tfsynth.data.prepare` does.

    Centre crop/pad to ``size`` (`tfsynth.data.normalize.crop_or_pad`) unless that would crop away
    brain voxels: then the slices stay as they are (the generator is fully convolutional; the
    SavedModel pads them to a multiple of 4).

    Args:
        stack: ``[N, H, W]`` normalised slices; brain: bool ``[N, H, W]``.
        size: the model's ``image_size`` (None: leave as is).

    Returns:
        ``(canvas [N, S, S] or the input, original (H, W) to undo with, or None if unchanged)``.
    """
    from .data.normalize import crop_or_pad

    if size is None or stack.shape[1:] == (size, size):
        return stack, None
    if crop_or_pad(brain, size).sum() < brain.sum():
        return stack, None
    return crop_or_pad(stack, size), stack.shape[1:]


def network_inputs(volume01: np.ndarray, slices: np.ndarray) -> np.ndarray:
    """The generator's input for each chosen axial slice: ``[N, H, W]`` from ``volume01 [Z, H, W]``.

    The seam for 2.5-D models: one that sees ``SLICE_CONTEXT`` neighbours per side would return
    ``[N, H, W, 2 * SLICE_CONTEXT + 1]`` here (neighbours clamped at the volume's ends), with
    everything else unchanged.
    """
    return volume01[slices]


class VolumeSynthesizer:
    """Whole-volume synthesis around a loaded `tfsynth.inference.Synthesizer`.

    Args:
        synthesizer: provides ``synthesize_normalized(images01 [N, H, W], sources, targets)`` and ``metadata``
            (a `tfsynth.model_metadata.ModelMetadata` or its dict).
        batch_size: source slices per call; each call synthesises every target of those slices
            (``batch_size x len(targets)`` images), so a volume needs few calls.
    """

    def __init__(self, synthesizer, batch_size: int = DEFAULT_BATCH):
        from .model_metadata import as_metadata

        self.synthesizer = synthesizer
        self.batch_size = int(batch_size)
        self.metadata = as_metadata(synthesizer.metadata)
        self.image_size = self.metadata.image_size

    def synthesize_volume(
        self, volume: np.ndarray, source: str, targets: Sequence[str], brain: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Synthesises every target contrast for one raw source volume in the model's frame.

        Args:
            volume: raw intensities ``[X, Y, Z]`` in the model's orientation and voxel size.
            source: canonical contrast of ``volume``.
            targets: canonical target contrasts.
            brain: bool ``[X, Y, Z]``; default: the nonzero voxels (skull-stripped, background 0).

        Returns:
            target -> float32 ``[X, Y, Z]`` in [0, 1], 0 outside the brain.
        """
        from .data.normalize import percentile_normalize

        brain = volume != 0 if brain is None else np.asarray(brain, dtype=bool)
        return self.synthesize_normalized_volume(percentile_normalize(volume, brain)[0], brain, source, targets)

    def synthesize_normalized_volume(
        self, volume01: np.ndarray, brain: np.ndarray, source: str, targets: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """As `synthesize_volume` for a volume already normalised to [0, 1] (0 outside ``brain``)."""
        from .data.normalize import undo_crop_or_pad

        axial = np.moveaxis(volume01, -1, 0)  # [Z, X, Y]: the layout the model was trained on
        axial_brain = np.moveaxis(brain, -1, 0)
        slices = np.flatnonzero(axial_brain.any(axis=(1, 2)))
        canvas, original_hw = to_canvas(network_inputs(axial, slices), axial_brain[slices], self.image_size)
        targets = list(targets)
        outputs: dict[str, list[np.ndarray]] = {target: [] for target in targets}
        for i in range(0, len(canvas), self.batch_size):
            chunk = canvas[i : i + self.batch_size]
            names = [target for target in targets for _ in range(len(chunk))]
            out = self.synthesizer.synthesize_normalized(np.concatenate([chunk] * len(targets)), source, names)
            for target, part in zip(targets, np.split(out, len(targets)), strict=True):
                outputs[target].append(part)
        results = {}
        for target in targets:
            out = np.concatenate(outputs[target])
            if original_hw is not None:
                out = undo_crop_or_pad(out, original_hw)
            synthesized = np.zeros(axial.shape, dtype=np.float32)
            synthesized[slices] = np.clip(out, 0.0, 1.0) * axial_brain[slices]
            results[target] = np.moveaxis(synthesized, 0, -1)
        return results


@dataclasses.dataclass(frozen=True)
class SourceOptions:
    """How source volumes are read: where the brain is, and whether to resample.

    Attributes:
        brain_mask: a NIfTI brain mask on the source's grid (single-case runs), or None.
        background: the background value of sources that are not zero outside the brain, or None.
        resample: resample to the model's voxel size (and back) when it differs.
    """

    brain_mask: Path | None = None
    background: float | None = None
    resample: bool = True


def synthesize_case(
    engine: VolumeSynthesizer,
    path: Path,
    source: str,
    targets: Sequence[str],
    out_paths: dict[str, Path],
    options: SourceOptions = SourceOptions(),
) -> list[Path]:
    """Reads one source volume, synthesises every target and writes them (each file atomically).

    The volume is normalised on its own grid, reoriented to the model's slicing orientation and
    resampled to its voxel size (`tfsynth.data.geometry.Frame`), synthesised, and brought back to
    exactly the input's grid. All targets are computed before the first file is written, so a
    failure leaves no outputs.

    Raises:
        TfsynthError: an unreadable or invalid volume, a background that is not 0 without
            ``options`` saying where the brain is, or a brain mask on another grid.
    """
    from .data.background import brain_mask_of
    from .data.geometry import Frame
    from .data.nifti import read_volume, write_like
    from .data.normalize import percentile_normalize

    if path.is_dir():
        raise TfsynthError(f"{path}: case has no {source} file")
    volume, image = read_volume(path)
    brain = brain_mask_of(volume, path, image.affine, options.brain_mask, options.background)
    try:
        normalized = percentile_normalize(volume, brain)[0]
    except TfsynthError as error:
        raise TfsynthError(f"{path}: {error}") from None
    meta = engine.metadata
    frame = Frame.of(
        image.affine, volume.shape, meta.slice_orientation, meta.voxel_size_mm if options.resample else None
    )
    if (
        not options.resample
        and meta.voxel_size_mm
        and not np.allclose(frame.oriented_zooms, meta.voxel_size_mm, rtol=0.25)
    ):
        print(
            f"warning: {path}: voxel size {tuple(round(z, 3) for z in frame.oriented_zooms)} mm differs from the "
            f"model's {tuple(meta.voxel_size_mm)} mm and --no-resample is set; results may be poor",
            file=sys.stderr,
        )
    model_brain = frame.forward_mask(brain)
    model_volume = np.clip(frame.forward(normalized), 0.0, 1.0) * model_brain
    results = engine.synthesize_normalized_volume(model_volume, model_brain, source, targets)
    back = {target: np.clip(frame.backward(results[target]), 0.0, 1.0) * brain for target in targets}
    return [
        write_like(out_paths[t], back[t], image, descrip=output_description(t, source, meta.model_version))
        for t in targets
    ]


def output_description(target: str, source: str | None, model: str) -> str:
    """The NIfTI ``descrip`` of a synthesised volume (also used by `tfsynth.serving.client`)."""
    origin = f" from {source}" if source else ""
    return f"tfsynth: {target} synthesised{origin} by {model}, range 0-1"


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
    from .contrasts import canonical

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
        parser.add_argument(
            "--no-resample",
            action="store_true",
            help="do not resample inputs to the model's voxel size (default: resample, and back on write)",
        )


def source_options(args: argparse.Namespace, n_cases: int) -> SourceOptions:
    """The `SourceOptions` of parsed `add_source_arguments` flags.

    Raises:
        TfsynthError: both ``--brain-mask`` and ``--background``, or a mask for several cases.
    """
    if args.brain_mask is not None and args.background is not None:
        raise TfsynthError("give --brain-mask or --background, not both")
    if args.brain_mask is not None and n_cases != 1:
        raise TfsynthError(f"--brain-mask belongs to one input volume, but {n_cases} cases were given")
    if args.brain_mask is not None and not args.brain_mask.is_file():
        raise TfsynthError(f"--brain-mask {args.brain_mask}: no such file")
    return SourceOptions(args.brain_mask, args.background, not getattr(args, "no_resample", False))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfsynth synthesize",
        description="Synthesise missing contrasts of whole NIfTI volumes; outputs lie on the input's exact grid.",
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
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing case")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.inputs = paths_after_targets(args, "inputs")
    if not args.inputs:
        parser.error("the following arguments are required: INPUT")
    from tqdm import tqdm

    # Everything that can be checked up front is, so a usage error writes nothing.
    source = canonical(args.source)
    targets = canonical_list(args.target)
    if source in targets:
        raise TfsynthError(f"--target {source} is the source contrast; choose other targets")
    if args.batch_size < 1:
        raise TfsynthError(f"--batch-size must be >= 1, got {args.batch_size}")
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise TfsynthError(f"--out {out_dir}: exists and is not a directory")
    cases = collect_inputs(args.inputs, source)
    options = source_options(args, len(cases))
    plans = [
        (case_id, path, {t: out_dir / output_name(args.naming, case_id, t, source) for t in targets})
        for case_id, path in cases
    ]
    from .inference import load_synthesizer

    engine = VolumeSynthesizer(load_synthesizer(args.model), args.batch_size)
    out_dir.mkdir(parents=True, exist_ok=True)

    failures, done = [], 0
    for case_id, path, out_paths in tqdm(plans, desc="synthesize", unit="case", disable=args.quiet):
        try:
            existing = [str(p) for p in out_paths.values() if p.exists()]
            if existing and not args.overwrite:
                raise TfsynthError(f"output exists: {', '.join(existing)} (pass --overwrite)")
            synthesize_case(engine, path, source, targets, out_paths, options)
            done += 1
        except Exception as error:  # one bad case must not stop a batch; bugs still show their type
            message = str(error) if isinstance(error, TfsynthError) else f"{type(error).__name__}: {error}"
            failures.append(case_id)
            tqdm.write(f"error: case {case_id}: {message}", file=sys.stderr)
            if args.fail_fast:
                break
    print(f"synthesized {done} case(s) x {len(targets)} contrast(s) into {out_dir}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} case(s) failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
