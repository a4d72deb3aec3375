"""One in-plane voxel size for a whole cohort: ``prepare``'s target spacing and its resampling.

A cohort mixing voxel sizes (a 3 mm and a 2 mm scanner protocol) would otherwise give slices of
different scales under one ``voxel_size_mm``. As nnU-Net does (Isensee et al., Nat Methods 2021),
every case is resampled to one target spacing: the per-axis median of the cohort, or the user's
``--voxel-size``. Only the two in-plane axes are resampled: tfsynth learns from 2-D axial slices,
so the slice spacing changes no example, and through-plane interpolation would invent slices (and
``slice_index`` keeps naming a slice of the file). The resampling is the one `tfsynth synthesize`
uses (`tfsynth.data.geometry.Frame`, ``scipy.ndimage.zoom`` over the same extent), here linear
for intensities, nearest neighbour for labels; each contrast is zeroed outside its own resampled
brain (linear, > 0.5), so the background stays exactly 0. A case already at the target (within
`tfsynth.data.geometry.VOXEL_TOLERANCE` per axis) is left untouched.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from tfsynth.data.brats import LoadedCase
from tfsynth.data.case_plan import CasePlan
from tfsynth.data.geometry import TRAINING_ORIENTATION, Frame, zooms_of
from tfsynth.errors import TfsynthError


def target_voxel_size(zooms: Sequence[Sequence[float]], in_plane_mm: float | None = None) -> tuple[float, float, float]:
    """The cohort's target voxel size ``(x, y, z)`` in mm.

    Args:
        zooms: each case's voxel size ``(x, y, z)`` in the slicing orientation.
        in_plane_mm: the in-plane voxel size the user asked for, or None: the per-axis median of
            the cases' in-plane sizes.

    Returns:
        ``(x, y)`` the in-plane target; ``z`` the median slice spacing, which is not resampled
        (recorded so that the model's ``voxel_size_mm`` says what most slices are).

    Raises:
        TfsynthError: ``in_plane_mm`` is not a positive finite number.
    """
    if in_plane_mm is not None:
        check_voxel_size(in_plane_mm)
    medians = np.median(np.asarray(zooms, dtype=np.float64), axis=0)
    x, y = (in_plane_mm, in_plane_mm) if in_plane_mm is not None else medians[:2]
    return round(float(x), 6), round(float(y), 6), round(float(medians[2]), 6)


def check_voxel_size(in_plane_mm: float) -> float:
    """``in_plane_mm`` if it is a positive finite number of millimetres.

    Raises:
        TfsynthError: anything else, naming ``--voxel-size``.
    """
    if not (isinstance(in_plane_mm, (int, float)) and math.isfinite(in_plane_mm) and in_plane_mm > 0):
        raise TfsynthError(f"--voxel-size must be a positive number of mm, got {in_plane_mm}")
    return float(in_plane_mm)


def in_plane_frame(loaded: LoadedCase | CasePlan, target: Sequence[float]) -> Frame:
    """The case's frame at the target's in-plane voxel size and its own slice spacing.

    ``loaded`` (a validated case, or its plan) is held in the slicing orientation already, so the
    frame only resamples.
    """
    return Frame.of(loaded.affine, loaded.shape, TRAINING_ORIENTATION, (target[0], target[1], loaded.zooms[2]))


def resample_in_plane(loaded: LoadedCase, target: Sequence[float]) -> LoadedCase:
    """The case on the target's in-plane voxel size (the case itself when already there).

    Args:
        loaded: a validated case (`tfsynth.data.brats.validate_case`).
        target: ``(x, y, z)`` mm; ``z`` is ignored (slices keep their spacing).

    Returns:
        A `LoadedCase` with the resampled volumes (float32, linear, 0 outside each contrast's
        resampled brain), segmentation (nearest neighbour), affine and voxel size; the same
        ``case``, ``reference`` and ``orientation``.
    """
    frame = in_plane_frame(loaded, target)
    if not frame.resampled:
        return loaded
    volumes = {
        contrast: frame.forward(volume, order=1) * frame.forward_mask(volume != 0)
        for contrast, volume in loaded.volumes.items()
    }
    seg = frame.forward(loaded.seg, order=0) if loaded.seg is not None else None
    zooms = tuple(round(float(z), 6) for z in zooms_of(frame.affine))
    return dataclasses.replace(loaded, volumes=volumes, seg=seg, affine=frame.affine, zooms=zooms)
