"""Whole-volume synthesis, the library under ``tfsynth synthesize`` (and the serving clients).

For each case: read and validate the volume, find its brain, normalise it as in training,
reorient and resample it to the model's frame, place its axial slices with brain on the model's
canvas (`to_canvas`), synthesise each target in batches (`VolumeSynthesizer`), undo canvas,
resampling and reorientation, and write a float32 NIfTI on the input's exact grid
(`synthesize_case`); `output_name` names the outputs. See `tfsynth.commands.synthesize` for the command.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfsynth.contrasts import BRATS_NAMES
from tfsynth.errors import TfsynthError

NAMINGS = ("brats2023", "brats2020", "canonical")
DEFAULT_BATCH = 16
# Slices fed per neighbour side; a 2.5-D model would set this from its metadata (see `network_inputs`).
SLICE_CONTEXT = 0


def output_name(naming: str, case_id: str, target: str, source: str | None) -> str:
    """The output file name of one synthesised contrast (also used by `tfsynth.clients.grpc_client`).

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
    from tfsynth.data.brats import NIFTI_SUFFIXES, parse_name

    path = Path(path)
    parsed = parse_name(path)
    if parsed is not None and parsed[1] != "seg":
        return parsed[0], parsed[1]
    name = path.name
    return next((name[: -len(s)] for s in NIFTI_SUFFIXES if name.lower().endswith(s)), path.stem), None


def collect_inputs(inputs: Sequence[str], source: str) -> list[tuple[str, Path | TfsynthError]]:
    """``(case_id, source file)`` for every input: NIfTI files as given, folders searched for BraTS cases.

    Folders follow `tfsynth.data.brats.discover_cases`: files that are no contrast or segmentation
    are listed once as ignored. A folder case that cannot be synthesised (no source file, two of
    one contrast, ...) comes with its error instead of a file, so that it fails alone.

    Raises:
        TfsynthError: an input that does not exist, or two inputs with the same case id.
    """
    from tfsynth.data.brats import discover_cases

    found: list[tuple[str, Path | TfsynthError]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            discovery = discover_cases(path)
            found += [(case_id, TfsynthError(message)) for case_id, message in discovery.failed.items()]
            for case in discovery.cases:
                missing = TfsynthError(f"{case.folder}: case has no {source} file")
                found.append((case.case_id, case.files.get(source, missing)))
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
    """Places axial slices on the model's ``size x size`` training canvas, as `tfsynth.data.preparation` does.

    Centre crop/pad to ``size`` (`tfsynth.data.normalize.crop_or_pad`) unless that would crop away
    brain voxels: then the slices stay as they are (the generator is fully convolutional; the
    SavedModel pads them to a multiple of 4).

    Args:
        stack: ``[N, H, W]`` normalised slices; brain: bool ``[N, H, W]``.
        size: the model's ``image_size`` (None: leave as is).

    Returns:
        ``(canvas [N, S, S] or the input, original (H, W) to undo with, or None if unchanged)``.
    """
    from tfsynth.data.normalize import crop_or_pad

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
    """Whole-volume synthesis around a loaded `tfsynth.synthesis.local.Synthesizer`.

    Args:
        synthesizer: provides ``synthesize_normalized(images01 [N, H, W], sources, targets)`` and ``metadata``
            (a `tfsynth.savedmodel.metadata.ModelMetadata` or its dict).
        batch_size: source slices per call; each call synthesises every target of those slices
            (``batch_size x len(targets)`` images), so a volume needs few calls.
    """

    def __init__(self, synthesizer, batch_size: int = DEFAULT_BATCH):
        from tfsynth.savedmodel.metadata import as_metadata

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
        from tfsynth.data.normalize import percentile_normalize

        brain = volume != 0 if brain is None else np.asarray(brain, dtype=bool)
        return self.synthesize_normalized_volume(percentile_normalize(volume, brain)[0], brain, source, targets)

    def synthesize_normalized_volume(
        self, volume01: np.ndarray, brain: np.ndarray, source: str, targets: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """As `synthesize_volume` for a volume already normalised to [0, 1] (0 outside ``brain``)."""
        from tfsynth.data.normalize import undo_crop_or_pad

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
    """Reads one source volume, synthesises every target and writes them as one set.

    The volume is normalised on its own grid, reoriented to the model's slicing orientation and
    resampled to its voxel size (`tfsynth.data.geometry.Frame`), synthesised, and brought back to
    exactly the input's grid. All targets are computed before the first file is written, and the
    files appear together (`tfsynth.data.nifti.write_all_like`), so a failure or an interruption
    leaves none of them.

    Raises:
        TfsynthError: an unreadable or invalid volume, a background that is not 0 without
            ``options`` saying where the brain is, or a brain mask on another grid.
    """
    from tfsynth.data.brain_mask import brain_mask_of
    from tfsynth.data.geometry import Frame
    from tfsynth.data.nifti import read_volume, write_all_like

    volume, image = read_volume(path)
    brain = brain_mask_of(volume, path, image.affine, options.brain_mask, options.background)
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
    model_volume = frame.normalized(volume, str(path), brain, model_brain)
    results = engine.synthesize_normalized_volume(model_volume, model_brain, source, targets)
    back = {target: np.clip(frame.backward(results[target]), 0.0, 1.0) * brain for target in targets}
    return write_all_like(
        {out_paths[t]: (back[t], output_description(t, source, meta.model_version)) for t in targets}, image
    )


def output_description(target: str, source: str | None, model: str) -> str:
    """The NIfTI ``descrip`` of a synthesised volume (also used by `tfsynth.clients.grpc_client`)."""
    origin = f" from {source}" if source else ""
    return f"tfsynth: {target} synthesised{origin} by {model}, range 0-1"
