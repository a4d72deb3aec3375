"""NIfTI-to-NIfTI synthesis of missing contrasts, whole volumes at a time.

``python -m tfsynth.synthesize --model PATH --source C --target C [C ...] --out DIR INPUT...``

INPUT: NIfTI files of the source contrast, or folders of BraTS cases (either naming era; the
source file of each case is picked by name). For each case: read and validate the volume,
normalise it as in training (brain = nonzero voxels, 0.5/99.5 percentiles -> [0, 1]), take every
axial slice with brain, place it on the model's canvas (`to_canvas`), synthesise each target in
batches, zero the background, undo the canvas and write a float32 NIfTI on exactly the input's
grid (shape, affine, header, qform/sform) with `tfsynth.data.nifti.write_like`, atomically.
Output intensities are the normalised [0, 1] scale of the training data: the target's scanner
scale is unknown.

Output names (``--naming``): ``brats2023`` (default, the BraSyn convention
``{case}-{t1n|t1c|t2w|t2f}.nii.gz``), ``brats2020`` (``{case}_{t1|t1ce|t2|flair}.nii.gz``),
``canonical`` (``{case}-{t1|t1c|t2|flair}.nii.gz``), or a template using ``{case}``,
``{contrast}`` (canonical) and ``{source}``, e.g. ``"{case}_{contrast}_from_{source}.nii.gz"``.

A failing case is reported on stderr and the others continue (``--fail-fast`` stops at the
first); the exit status is 1 if any case failed, 2 for a usage error before any work.
"""

from __future__ import annotations

import argparse
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
        synthesizer: provides ``synthesize_normalized(images01 [N, H, W], sources, targets)`` and ``metadata``.
        batch_size: source slices per call; each call synthesises every target of those slices
            (``batch_size x len(targets)`` images), so a volume needs few calls.
    """

    def __init__(self, synthesizer, batch_size: int = DEFAULT_BATCH):
        self.synthesizer = synthesizer
        self.batch_size = int(batch_size)
        size = synthesizer.metadata.get("image_size")
        self.image_size = int(size) if size else None
        self.voxel_size_mm = synthesizer.metadata.get("voxel_size_mm")

    def synthesize_volume(self, volume: np.ndarray, source: str, targets: Sequence[str]) -> dict[str, np.ndarray]:
        """Synthesises every target contrast for one raw source volume.

        Args:
            volume: raw intensities ``[X, Y, Z]``, background exactly 0 (skull-stripped).
            source: canonical contrast of ``volume``.
            targets: canonical target contrasts.

        Returns:
            target -> float32 ``[X, Y, Z]`` in [0, 1], 0 outside the source's brain.
        """
        from .data.normalize import percentile_normalize, undo_crop_or_pad

        normalized, _ = percentile_normalize(volume)
        brain = volume != 0
        axial = np.moveaxis(normalized, -1, 0)  # [Z, X, Y]: the layout the model was trained on
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


def synthesize_case(
    engine: VolumeSynthesizer, path: Path, source: str, targets: Sequence[str], out_paths: dict[str, Path]
) -> list[Path]:
    """Reads one source volume, synthesises every target and writes them (each file atomically).

    All targets are computed before the first file is written, so a failure leaves no outputs.
    """
    from .data.nifti import read_volume, write_like

    if path.is_dir():
        raise TfsynthError(f"{path}: case has no {source} file")
    volume, image = read_volume(path)
    zooms = np.asarray(image.header.get_zooms()[:3], dtype=float)
    if engine.voxel_size_mm and np.any(np.abs(zooms[:2] / float(engine.voxel_size_mm) - 1) > 0.25):
        print(
            f"warning: {path}: in-plane voxel size {tuple(zooms[:2])} mm differs from the model's "
            f"{engine.voxel_size_mm} mm; results may be poor",
            file=sys.stderr,
        )
    results = engine.synthesize_volume(volume, source, targets)
    return [write_like(out_paths[target], results[target], image) for target in targets]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfsynth synthesize",
        description="Synthesise missing contrasts of whole NIfTI volumes; outputs lie on the input's exact grid.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="source NIfTI files or folders of BraTS cases")
    parser.add_argument("--model", required=True, help="run directory, SavedModel directory or TF-Serving model base")
    parser.add_argument("--source", required=True, help="contrast of the inputs (t1, t1c, t2, flair or an alias)")
    parser.add_argument("--target", required=True, nargs="+", help="contrast(s) to synthesise")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--naming", default="brats2023", help=f"{', '.join(NAMINGS)} or a template with {{case}} and {{contrast}}"
    )
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH, help="source slices per model call (all targets at once)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing case")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
            synthesize_case(engine, path, source, targets, out_paths)
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
