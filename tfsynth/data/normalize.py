"""Per-volume intensity normalisation and centre crop/pad of axial slices.

MRI intensities have no absolute unit, so each volume is scaled on its own, inside the
brain only: clip to the 0.5 and 99.5 percentiles of the brain voxels and map that range
to [0, 1]. This is the percentile clipping nnU-Net applies to non-CT images
(Isensee et al., Nat Methods 2021) and TorchIO's ``RescaleIntensity(percentiles=(0.5, 99.5),
masking_method=...)``; restricting the percentiles to the brain keeps the (large, zero)
background from dragging the low percentile to 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from tfsynth.errors import TfsynthError

LOW_PERCENTILE = 0.5
HIGH_PERCENTILE = 99.5
# The axial slices worth training on and scoring: brain on at least 1 % of the slice.
MIN_BRAIN_FRACTION = 0.01


@dataclasses.dataclass(frozen=True)
class NormParams:
    """The intensity window mapped to [0, 1]: ``x01 = clip((x - lo) / (hi - lo), 0, 1)``."""

    lo: float
    hi: float

    def to_dict(self) -> dict[str, float]:
        return {"lo": self.lo, "hi": self.hi}


def percentile_window(
    volume: np.ndarray, mask: np.ndarray | None = None, low: float = LOW_PERCENTILE, high: float = HIGH_PERCENTILE
) -> NormParams:
    """The ``low`` and ``high`` percentiles of the brain voxels (see `percentile_normalize`).

    Raises:
        TfsynthError: the mask is empty or the brain has a single intensity.
    """
    volume = np.asarray(volume, dtype=np.float32)
    mask = volume != 0 if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != volume.shape:
        raise TfsynthError(f"brain mask shape {mask.shape} differs from volume shape {volume.shape}")
    brain = volume[mask]
    if brain.size == 0:
        raise TfsynthError("volume has no brain voxels (all zero)")
    lo, hi = (float(v) for v in np.percentile(brain, [low, high]))
    if not hi > lo:
        raise TfsynthError(f"brain intensities are constant between the {low} and {high} percentiles ({lo})")
    return NormParams(lo, hi)


def percentile_normalize(
    volume: np.ndarray, mask: np.ndarray | None = None, low: float = LOW_PERCENTILE, high: float = HIGH_PERCENTILE
) -> tuple[np.ndarray, NormParams]:
    """Clips a volume to brain percentiles and scales it to [0, 1]; zero outside the brain.

    Args:
        volume: intensities, any shape (normally ``[X, Y, Z]``).
        mask: brain mask of the same shape; default: the nonzero voxels of ``volume``
            (BraTS volumes are skull-stripped with background exactly 0).
        low, high: percentiles (0..100) mapped to 0 and 1.

    Returns:
        ``(normalized, params)``: float32 array of ``volume``'s shape in [0, 1], and the window.

    Raises:
        TfsynthError: the mask is empty or the brain has a single intensity.
    """
    params = percentile_window(volume, mask, low, high)
    return normalize_with(volume, params, mask), params


def normalize_with(volume: np.ndarray, params: NormParams, mask: np.ndarray | None = None) -> np.ndarray:
    """Applies a known window: ``clip((volume - lo) / (hi - lo), 0, 1)``, 0 outside ``mask``."""
    volume = np.asarray(volume, dtype=np.float32)
    mask = volume != 0 if mask is None else np.asarray(mask, dtype=bool)
    scale = np.float32(1.0 / (params.hi - params.lo))
    out = np.clip((volume - np.float32(params.lo)) * scale, 0.0, 1.0).astype(np.float32)
    out[~mask] = 0.0
    return out


def denormalize(x: np.ndarray, params: NormParams, mask: np.ndarray | None = None) -> np.ndarray:
    """Maps [0, 1] values back to the volume's intensity scale: ``lo + x * (hi - lo)``.

    Intensities clipped by the window cannot be recovered. With ``mask``, voxels outside it
    are set to 0 (the background of the original volume).
    """
    out = (np.float32(params.lo) + np.asarray(x, dtype=np.float32) * np.float32(params.hi - params.lo)).astype(
        np.float32
    )
    if mask is not None:
        out[~np.asarray(mask, dtype=bool)] = 0.0
    return out


def brain_mask(volumes: Iterable[np.ndarray]) -> np.ndarray:
    """The brain of a skull-stripped case: voxels nonzero in any of its contrasts, bool.

    The one brain mask of tfsynth: prepare writes it, the baseline fits inside it, evaluate
    scores inside it and `select_slices` chooses slices by it.

    Args:
        volumes: the case's co-registered contrasts, all of one shape.
    """
    volumes = list(volumes)
    if not volumes:
        raise ValueError("brain_mask needs at least one volume")
    mask = np.zeros(np.shape(volumes[0]), dtype=bool)
    for volume in volumes:
        mask |= np.asarray(volume) != 0
    return mask


def select_slices(brain: np.ndarray, min_brain_fraction: float = MIN_BRAIN_FRACTION) -> np.ndarray:
    """The axial slices kept for training (`tfsynth.data.preparation`) and scored (`tfsynth.commands.evaluate`).

    Args:
        brain: bool ``[X, Y, Z]`` (union over the case's contrasts).
        min_brain_fraction: keep slices whose brain covers at least this fraction of the slice
            area ``X * Y`` (and at least one voxel).

    Returns:
        int indices along the last axis, ascending.
    """
    area = np.asarray(brain, dtype=bool).sum(axis=(0, 1))
    x, y = brain.shape[:2]
    return np.flatnonzero((area > 0) & (area >= min_brain_fraction * x * y))


def _crop_pad_plan(n: int, size: int) -> tuple[int, int]:
    """Returns (crop_start, pad_before) for centring ``n`` samples in ``size``."""
    if n >= size:
        return (n - size) // 2, 0
    return 0, (size - n) // 2


def crop_or_pad(arr: np.ndarray, size: int) -> np.ndarray:
    """Centre-crops or zero-pads the last two axes to ``size x size``.

    Args:
        arr: ``[H, W]`` or ``[N, H, W]``.
        size: output height and width.

    Returns:
        ``[size, size]`` or ``[N, size, size]``, same dtype. For an odd difference the extra
        row/column is cropped from / padded at the end. `undo_crop_or_pad` inverts it.
    """
    arr = np.asarray(arr)
    out = np.zeros(arr.shape[:-2] + (size, size), dtype=arr.dtype)
    src, dst = [Ellipsis], [Ellipsis]
    for n in arr.shape[-2:]:
        crop, pad = _crop_pad_plan(n, size)
        length = min(n, size)
        src.append(slice(crop, crop + length))
        dst.append(slice(pad, pad + length))
    out[tuple(dst)] = arr[tuple(src)]
    return out


def undo_crop_or_pad(arr: np.ndarray, original_hw: tuple[int, int]) -> np.ndarray:
    """Inverts `crop_or_pad`: back to ``original_hw`` (cropped-away borders come back as 0).

    Args:
        arr: ``[S, S]`` or ``[N, S, S]`` as produced by `crop_or_pad`.
        original_hw: the ``(H, W)`` before cropping/padding.

    Returns:
        ``[H, W]`` or ``[N, H, W]``.
    """
    arr = np.asarray(arr)
    size = arr.shape[-1]
    if arr.shape[-2] != size:
        raise TfsynthError(f"expected square slices, got shape {arr.shape}")
    out = np.zeros(arr.shape[:-2] + tuple(int(n) for n in original_hw), dtype=arr.dtype)
    src, dst = [Ellipsis], [Ellipsis]
    for n in original_hw:
        crop, pad = _crop_pad_plan(int(n), size)
        length = min(int(n), size)
        dst.append(slice(crop, crop + length))
        src.append(slice(pad, pad + length))
    out[tuple(dst)] = arr[tuple(src)]
    return out


def crop_info(original_hw: tuple[int, int], size: int) -> dict[str, list[int]]:
    """Describes `crop_or_pad` for the manifest: where the original rows/columns went."""
    plans = [_crop_pad_plan(int(n), size) for n in original_hw]
    return {
        "original_hw": [int(n) for n in original_hw],
        "crop_start": [p[0] for p in plans],
        "pad_before": [p[1] for p in plans],
    }
