"""Input checks shared by the metrics, and the evaluation regions (BraSyn convention).

Images are float in [0, 1], one slice ``[H, W]`` or a stack ``[N, H, W]``; masks are bool of the
same shape.
"""

from __future__ import annotations

import numpy as np

REGIONS: tuple[str, ...] = ("whole", "brain", "tumor", "nontumor")


def as_pair(reference, test) -> tuple[np.ndarray, np.ndarray]:
    """``(reference, test)`` as float64 arrays of one ``[H, W]`` or ``[N, H, W]`` shape.

    Raises:
        ValueError: the shapes differ or are not 2-D or 3-D.
    """
    reference = np.asarray(reference, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    if reference.shape != test.shape or reference.ndim not in (2, 3):
        raise ValueError(f"images must share a [H, W] or [N, H, W] shape, got {reference.shape} and {test.shape}")
    return reference, test


def region_mask(mask, shape) -> np.ndarray:
    """``mask`` as bool of ``shape`` (None: everything).

    Raises:
        ValueError: the mask has another shape.
    """
    if mask is None:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {shape}")
    return mask


def region_masks(brain, tumor=None) -> dict[str, np.ndarray]:
    """The evaluation regions of a slice or stack (BraSyn convention).

    Args:
        brain: bool/uint8 ``[..., H, W]``, 1 inside the brain.
        tumor: segmentation labels ``[..., H, W]`` (any label > 0 is tumour), or None.

    Returns:
        ``{"whole", "brain"}`` and, when ``tumor`` is given, ``"tumor"`` (label > 0 within the
        brain) and ``"nontumor"`` (brain minus tumour): bool arrays of the input's shape.
    """
    brain = np.asarray(brain) > 0
    regions = {"whole": np.ones_like(brain), "brain": brain}
    if tumor is not None:
        tumor = (np.asarray(tumor) > 0) & brain
        regions["tumor"] = tumor
        regions["nontumor"] = brain & ~tumor
    return regions
