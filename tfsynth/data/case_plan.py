"""One case, pass 1 and pass 2 of ``prepare``: what to keep of it (`plan_case`) and its slices as
serialized examples (`case_records`)."""

from __future__ import annotations

import dataclasses

import nibabel as nib
import numpy as np

from tfsynth.contrasts import CONTRASTS, NUM_CONTRASTS
from tfsynth.data.brats import Case, LoadedCase
from tfsynth.data.normalize import NormParams, brain_mask, crop_or_pad, normalize_with, percentile_window, select_slices
from tfsynth.errors import TfsynthError


@dataclasses.dataclass
class CasePlan:
    """What pass 1 learnt about a valid case: everything pass 2 and the manifest need."""

    case: Case
    shape: tuple[int, int, int]
    zooms: tuple[float, float, float]
    affine: np.ndarray
    norm: dict[str, NormParams]
    slices: list[int]
    lr_axis: int | None
    orientation: str


def lr_axis_of(affine: np.ndarray) -> int | None:
    """Which in-plane axis (0 or 1) of an axial slice runs left-right, from the affine."""
    codes = nib.aff2axcodes(affine)
    axis = next((i for i, c in enumerate(codes) if c in ("L", "R")), None)
    return axis if axis in (0, 1) else None


def plan_case(loaded: LoadedCase, min_brain_fraction: float) -> CasePlan:
    """Normalisation windows and the axial slices to keep for one validated case.

    A slice is kept if its brain (union over contrasts) covers at least ``min_brain_fraction``
    of the slice area (and at least one voxel): `tfsynth.data.normalize.select_slices`, which
    `tfsynth.commands.evaluate` uses too.
    """
    norm = {}
    for contrast, volume in loaded.volumes.items():
        try:
            norm[contrast] = percentile_window(volume)
        except TfsynthError as error:
            raise TfsynthError(f"{loaded.case.files[contrast]}: {error}") from None
    keep = select_slices(brain_mask(loaded.volumes.values()), min_brain_fraction)
    if keep.size == 0:
        raise TfsynthError(
            f"case {loaded.case.case_id}: no axial slice with brain (>= {min_brain_fraction:.1%} of the slice)"
        )
    return CasePlan(
        loaded.case,
        loaded.shape,
        loaded.zooms,
        loaded.affine,
        norm,
        keep.tolist(),
        lr_axis_of(loaded.affine),
        loaded.orientation,
    )


def case_records(loaded: LoadedCase, plan: CasePlan, size: int) -> tuple[list[bytes], int]:
    """Serializes one case's kept slices, in slice order.

    Returns:
        ``(records, brain_voxels_cropped)``: the examples, and how many brain voxels of the
        kept slices fell outside the ``size x size`` window.
    """
    from tfsynth.data import tfrecord  # here, not at the top: validation errors should not wait for TensorFlow

    keep = plan.slices
    stack = np.zeros((len(keep), size, size, NUM_CONTRASTS), dtype=np.float32)
    present = np.zeros(NUM_CONTRASTS, dtype=np.int64)
    for c, contrast in enumerate(CONTRASTS):
        if contrast in loaded.volumes:
            normalized = normalize_with(loaded.volumes[contrast][:, :, keep], plan.norm[contrast])
            stack[..., c] = crop_or_pad(np.moveaxis(normalized, -1, 0), size)
            present[c] = 1
    mask = np.moveaxis(brain_mask(loaded.volumes.values())[:, :, keep], -1, 0).astype(np.uint8)
    brain = crop_or_pad(mask, size)
    seg = loaded.seg if loaded.seg is not None else np.zeros(loaded.shape, dtype=np.uint8)
    tumor = crop_or_pad(np.moveaxis(seg[:, :, keep], -1, 0), size)
    records = [
        tfrecord.serialize_example(
            stack[i], present, brain[i], tumor[i], loaded.seg is not None, plan.case.case_id, int(k)
        )
        for i, k in enumerate(keep)
    ]
    return records, int(mask.sum(dtype=np.int64) - brain.sum(dtype=np.int64))
