"""A cohort to evaluate: each patient's brain slices on the model's canvas.

Two sources give the same slices: a prepared split (`load_prepared_patients`, the slices
``prepare`` wrote) and a BraTS-layout folder (`load_brats_patients`, read and normalised here the
way ``prepare`` would, but never cropping brain to fit the canvas).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from tfsynth.contrasts import CONTRASTS
from tfsynth.data.manifest import load_manifest
from tfsynth.errors import TfsynthError


@dataclasses.dataclass
class Patient:
    """One patient's brain slices on the model's canvas.

    Attributes:
        case_id: the case id.
        images: canonical contrast -> float32 ``[N, S, S]`` in [0, 1] (present contrasts only).
        brain: bool ``[N, S, S]``.
        tumor: uint8 ``[N, S, S]`` labels, or None without a segmentation.
        slice_indices: axial index of each slice in the (reoriented, resampled) volume.
        notes: what the report must say about this patient (resampling, cropping, canvas).
    """

    case_id: str
    images: dict[str, np.ndarray]
    brain: np.ndarray
    tumor: np.ndarray | None
    slice_indices: np.ndarray
    notes: list[str] = dataclasses.field(default_factory=list)


def load_prepared_patients(prepared_dir: str | os.PathLike, split: str = "test") -> list[Patient]:
    """Groups a prepared split's slices by case (slices in axial order, cases sorted by id).

    A case whose brain ``prepare`` cropped (``manifest.json``'s ``crop``) gets a note saying so.

    Raises:
        TfsynthError: the split has no slices.
    """
    from tfsynth.data.tfrecord import iter_prepared_slices

    crops = load_manifest(prepared_dir).get("crop", {})
    grouped: dict[str, list[dict]] = {}
    for example in iter_prepared_slices(prepared_dir, split):
        grouped.setdefault(example["case_id"], []).append(example)
    if not grouped:
        raise TfsynthError(f"{prepared_dir}: split {split!r} has no slices to evaluate")
    patients = []
    for case_id in sorted(grouped):
        slices = sorted(grouped[case_id], key=lambda e: int(e["slice_index"]))
        stack = np.stack([e["images"] for e in slices])
        present = slices[0]["present"]
        patients.append(
            Patient(
                case_id,
                {c: stack[..., i] for i, c in enumerate(CONTRASTS) if present[i]},
                np.stack([e["brain"] > 0 for e in slices]),
                np.stack([e["tumor"] for e in slices]) if slices[0]["has_seg"] else None,
                np.array([int(e["slice_index"]) for e in slices]),
                _crop_notes(crops.get(case_id, {})),
            )
        )
    return patients


def _crop_notes(crop: dict) -> list[str]:
    """What a prepared case's crop entry means for its scores."""
    cropped = int(crop.get("brain_voxels_cropped", 0) or 0)
    if not cropped:
        return []
    return [f"prepare cropped {cropped} brain voxels away to fit its --size; they are not scored"]


def load_brats_patients(
    root: str | os.PathLike,
    image_size: int | None,
    voxel_size_mm: Sequence[float] | None = None,
    min_brain_fraction: float | None = None,
) -> list[Patient]:
    """Reads, validates and normalises a BraTS-layout folder the way the model sees its inputs.

    Each case is reoriented to the slicing orientation (`tfsynth.data.brats.validate_case`),
    each contrast percentile-normalised over its own brain (as `tfsynth.data.preparation` does),
    then resampled to ``voxel_size_mm`` (`tfsynth.data.geometry.Frame`; None: not resampled).
    The slices `tfsynth.data.normalize.select_slices` keeps -- the same rule as ``prepare`` --
    are placed on the ``image_size`` canvas with `tfsynth.synthesis.volumes.to_canvas`, which never
    crops brain: a brain that does not fit keeps its whole slices, and the patient's ``notes``
    say so.

    Args:
        root: a folder of BraTS cases (either naming era).
        image_size: the model's canvas, or None to leave slices as they are.
        voxel_size_mm: the model's voxel size ``[x, y, z]``, or None.
        min_brain_fraction: default `tfsynth.data.normalize.MIN_BRAIN_FRACTION`.

    Raises:
        TfsynthError: a bad case (see `validate_case`), naming the file; a case without brain.
    """
    from tfsynth.data.brats import find_cases, validate_case
    from tfsynth.data.geometry import Frame
    from tfsynth.data.normalize import MIN_BRAIN_FRACTION, brain_mask, select_slices
    from tfsynth.synthesis.volumes import to_canvas

    fraction = MIN_BRAIN_FRACTION if min_brain_fraction is None else min_brain_fraction
    patients = []
    for case in find_cases(root):
        loaded = validate_case(case)
        frame = Frame.of(loaded.affine, loaded.shape, voxel_size_mm=voxel_size_mm)
        brain = frame.forward_mask(brain_mask(loaded.volumes.values()))
        keep = select_slices(brain, fraction)
        if keep.size == 0:
            raise TfsynthError(f"case {case.case_id}: no axial slice with brain (>= {fraction:.1%} of the slice)")
        axial_brain = np.moveaxis(brain[:, :, keep], -1, 0)
        canvas_brain, original_hw = to_canvas(axial_brain, axial_brain, image_size)

        def axial(volume, keep=keep, axial_brain=axial_brain):
            return to_canvas(np.moveaxis(volume[:, :, keep], -1, 0), axial_brain, image_size)[0]

        images = {c: axial(frame.normalized(v, str(case.files[c]))) for c, v in loaded.volumes.items()}
        tumor = axial(frame.forward(loaded.seg, order=0)) if loaded.seg is not None else None
        notes = []
        if frame.resampled:
            zooms = ", ".join(f"{z:g}" for z in frame.oriented_zooms)
            notes.append(f"resampled from {zooms} mm to {', '.join(f'{z:g}' for z in voxel_size_mm)} mm")
        if image_size and original_hw is None and canvas_brain.shape[1:] != (image_size, image_size):
            notes.append(
                f"brain does not fit the {image_size}x{image_size} canvas: scored on whole "
                f"{canvas_brain.shape[1]}x{canvas_brain.shape[2]} slices"
            )
        patients.append(Patient(case.case_id, images, canvas_brain, tumor, keep, notes))
    return patients
