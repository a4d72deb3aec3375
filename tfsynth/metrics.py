"""The five image-quality metrics of Dai et al. 2020 (NMAE, PSNR, SSIM, VIF, NIQE), with region masks.

Every function takes images normalised to [0, 1] (the data range is 1), either one
slice ``[H, W]`` or a stack of slices ``[N, H, W]`` (a volume's brain slices). A stack
is one sample: per-voxel errors, SSIM-map values and VIF information sums are pooled
over all its voxels, so a volume yields one number per metric (the per-patient value
that the evaluation then averages across patients).

``mask`` restricts a metric to a region (bool, same shape as the images). Regions
follow the BraSyn challenge: the whole slice, the brain, and, where a segmentation
exists, the tumour (label > 0) and the non-tumour brain (see `region_masks`).
Full-reference metrics take ``(reference, test)``: the real image first.
"""

from __future__ import annotations

import numpy as np

from tfsynth.quality.full_reference import (
    nmae,
    psnr,
    ssim_interior,
    ssim_map,
)
from tfsynth.quality.niqe import (
    niqe_coverage,
    niqe_features,
    niqe_from_features,
    niqe_patch_size,
)
from tfsynth.quality.regions import as_pair, region_masks
from tfsynth.quality.vif import vif_ratio, vif_terms

FULL_REFERENCE: tuple[str, ...] = ("nmae", "psnr", "ssim", "vif")
METRICS: tuple[str, ...] = FULL_REFERENCE + ("niqe",)
# Larger is better for these; NMAE and NIQE are better when smaller.
HIGHER_IS_BETTER: dict[str, bool] = {"nmae": False, "psnr": True, "ssim": True, "vif": True, "niqe": False}


def volume_metrics(
    reference, test, brain, tumor=None, metrics=METRICS, niqe_patch: int | None = None
) -> dict[tuple[str, str], float]:
    """Every metric in every available region for one patient's volume.

    Args:
        reference: real target ``[N, H, W]`` in [0, 1] (the brain slices of one volume).
        test: synthesised ``[N, H, W]`` in [0, 1].
        brain: ``[N, H, W]`` brain mask; tumor: ``[N, H, W]`` labels or None.
        metrics: names from `METRICS`.
        niqe_patch: NIQE patch size (default `niqe_patch_size` of the slice size).

    Returns:
        ``{(metric, region): value}``. NIQE is reported for the whole slice and the brain only:
        tumour regions are too small for its patch statistics. Values of empty regions are NaN.
    """
    reference, test = as_pair(reference, test)
    if reference.ndim == 2:
        reference, test, brain = reference[None], test[None], np.asarray(brain)[None]
        tumor = None if tumor is None else np.asarray(tumor)[None]
    regions = region_masks(brain, tumor)
    functions = {"nmae": nmae, "psnr": psnr}
    ssim_values = ssim_map(reference, test) if "ssim" in metrics else None
    vif_values = (
        dict(zip(regions, vif_terms(reference, test, list(regions.values())), strict=True))
        if "vif" in metrics
        else None
    )
    interior = ssim_interior(reference.shape)
    patch = niqe_patch or niqe_patch_size(*reference.shape[1:])
    niqe_values = None
    results: dict[tuple[str, str], float] = {}
    for metric in metrics:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
        for region_name, region in regions.items():
            if metric == "ssim":
                inside = region & interior
                value = float(ssim_values[inside].mean()) if inside.any() else float("nan")
            elif metric == "vif":
                value = vif_ratio(vif_values[region_name])
            elif metric == "niqe":
                if region_name not in ("whole", "brain"):
                    continue
                if niqe_values is None:
                    niqe_values = niqe_features(test, patch)
                features, valid = niqe_values
                if region_name == "brain" and len(valid):
                    valid = valid & (niqe_coverage(region, patch) >= 0.5)
                value = niqe_from_features(features[valid])
            else:
                value = functions[metric](reference, test, region)
            results[(metric, region_name)] = value
    return results


def mean_std(values) -> tuple[float, float, int]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of the finite values, and their count."""
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan"), 0
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return float(values.mean()), std, int(values.size)
