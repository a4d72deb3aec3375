"""The brain mask of a source volume, and the refusal of volumes whose background is not zero.

tfsynth, like BraTS, takes the brain to be the nonzero voxels of a skull-stripped volume.
A volume that is not skull-stripped (air noise, skull, neck) or whose background holds another
value (e.g. the -32768 padding of some DICOM conversions) would then be taken as brain almost
entirely, and its normalisation window would start at the padding value. Such volumes are
recognised by their border: in a skull-stripped volume the faces of the voxel grid are
background, so at most a small part of them is nonzero (a brain cropped tightly may touch a
face). They are refused unless the caller says where the brain is (a mask file, or the
background value).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tfsynth.data.nifti import AFFINE_ATOL_MM, read_volume
from tfsynth.errors import TfsynthError

# A skull-stripped volume whose brain touches a face of the grid still has a zero border elsewhere.
MAX_NONZERO_BORDER = 0.5
ADVICE = (
    "tfsynth expects skull-stripped volumes with background 0: skull-strip it (e.g. SynthStrip, HD-BET), "
    "or pass --brain-mask FILE or --background VALUE"
)
# For BraTS folders (prepare, evaluate), which take no per-file options.
CASE_ADVICE = (
    "BraTS-style cases must be skull-stripped with background 0: skull-strip it (e.g. SynthStrip, HD-BET) first"
)


def border_values(volume: np.ndarray) -> np.ndarray:
    """The voxels on the six faces of a 3-D array, as one vector."""
    volume = np.asarray(volume)
    faces = [volume[index] for axis in range(volume.ndim) for index in _faces(volume.ndim, axis)]
    return np.concatenate([face.ravel() for face in faces])


def _faces(ndim: int, axis: int):
    for end in (0, -1):
        index = [slice(None)] * ndim
        index[axis] = end
        yield tuple(index)


def background_problem(volume: np.ndarray) -> str | None:
    """Why ``volume`` does not look skull-stripped with background 0, or None if it does.

    Returns:
        e.g. ``"its background is not 0: 100% of the border voxels are nonzero (most common
        border value -32768)"``.
    """
    border = border_values(volume)
    nonzero = border != 0
    fraction = float(nonzero.mean()) if border.size else 0.0
    if fraction <= MAX_NONZERO_BORDER:
        return None
    values, counts = np.unique(border[nonzero], return_counts=True)
    common = float(values[np.argmax(counts)])
    share = counts.max() / border.size
    detail = f"most common border value {common:g}" if share >= 0.5 else "no single background value"
    return f"its background is not 0: {fraction:.0%} of the border voxels are nonzero ({detail})"


def check_zero_background(volume: np.ndarray, path: str | os.PathLike, advice: str = ADVICE) -> None:
    """Raises `TfsynthError` (naming ``path``, the reason and ``advice``) unless the background is 0."""
    problem = background_problem(volume)
    if problem:
        raise TfsynthError(f"{path}: {problem}; {advice}")


def brain_mask_of(
    volume: np.ndarray,
    path: str | os.PathLike,
    affine: np.ndarray | None = None,
    mask_file: str | os.PathLike | None = None,
    background: float | None = None,
) -> np.ndarray:
    """The brain of a source volume, bool of ``volume``'s shape ``[X, Y, Z]``.

    Args:
        volume: the source intensities.
        path: its file, for messages.
        affine: its voxel-to-world matrix (checked against ``mask_file``'s).
        mask_file: a NIfTI mask on the same grid (nonzero = brain); overrides the checks below.
        background: voxels equal to this value are background (e.g. -32768).

    Without either, the brain is the nonzero voxels, after `check_zero_background`.

    Raises:
        TfsynthError: a background that is not 0 without an option, a mask on another grid,
            or an empty brain.
    """
    if mask_file is not None:
        mask_data, mask_img = read_volume(mask_file)
        if mask_data.shape != volume.shape:
            raise TfsynthError(f"{mask_file}: brain mask shape {mask_data.shape} differs from {path} {volume.shape}")
        if affine is not None and not np.allclose(mask_img.affine, affine, rtol=0, atol=AFFINE_ATOL_MM):
            raise TfsynthError(f"{mask_file}: brain mask affine differs from {Path(path).name}'s")
        mask = mask_data != 0
    elif background is not None:
        mask = volume != np.float32(background)
    else:
        check_zero_background(volume, path)
        mask = volume != 0
    if not mask.any():
        raise TfsynthError(f"{path}: the brain mask is empty (no brain voxels)")
    return mask
