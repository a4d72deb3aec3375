"""Visual information fidelity (Sheikh & Bovik 2006), pixel domain, multi-scale, as the LIVE
reference code ``vifp_mscale.m`` computes it; see `vif`."""

from __future__ import annotations

import numpy as np

from tfsynth.quality.regions import as_pair, region_mask

VIF_SIGMA_NSQ = 2.0  # HVS noise variance of the reference code, for 8-bit intensities
VIF_SCALES = 4


def _gaussian_window(size: int) -> np.ndarray:
    # 1-D factor of MATLAB fspecial('gaussian', size, size / 5) (the 2-D window is its outer product).
    sigma = size / 5.0
    axis = np.arange(size) - (size - 1) / 2.0
    window = np.exp(-(axis**2) / (2 * sigma**2))
    return window / window.sum()


def _valid_filter(stack: np.ndarray, window: np.ndarray) -> np.ndarray:
    """MATLAB ``filter2(w, x, 'valid')`` per slice of ``stack [N, H, W]`` for the separable window ``w``."""
    import scipy.ndimage

    half = len(window) // 2
    out = scipy.ndimage.correlate1d(stack, window, axis=1, mode="constant")[:, half : stack.shape[1] - half]
    return scipy.ndimage.correlate1d(out, window, axis=2, mode="constant")[:, :, half : stack.shape[2] - half]


def vif_terms(reference, test, masks) -> list[tuple[float, float]]:
    """The numerator and denominator sums of pixel-domain VIF (see `vif`), one pair per region mask.

    Args:
        reference, test: ``[H, W]`` or ``[N, H, W]`` in [0, 1].
        masks: a list of region masks of the images' shape (None = the whole image).
    """
    reference, test = as_pair(reference, test)
    regions = np.stack([region_mask(mask, reference.shape) for mask in masks]).astype(np.float64)
    # The reference code works on 8-bit intensities; its noise variance 2 assumes that scale.
    ref, dist = reference * 255.0, test * 255.0
    if ref.ndim == 2:
        ref, dist, regions = ref[None], dist[None], regions[:, None]
    sums = np.zeros((len(masks), 2))
    for scale in range(1, VIF_SCALES + 1):
        size = 2 ** (VIF_SCALES - scale + 1) + 1
        window = _gaussian_window(size)
        if scale > 1:
            if min(ref.shape[1:]) < size:
                break
            ref = _valid_filter(ref, window)[:, ::2, ::2]
            dist = _valid_filter(dist, window)[:, ::2, ::2]
            regions = np.stack([_valid_filter(region, window)[:, ::2, ::2] for region in regions])
        if min(ref.shape[1:]) < size:
            break  # the image is too small for this and coarser scales: they add nothing
        mu1, mu2 = _valid_filter(ref, window), _valid_filter(dist, window)
        sigma1_sq = np.maximum(_valid_filter(ref * ref, window) - mu1 * mu1, 0.0)
        sigma2_sq = np.maximum(_valid_filter(dist * dist, window) - mu2 * mu2, 0.0)
        sigma12 = _valid_filter(ref * dist, window) - mu1 * mu2
        # The reference code's guards, in its order.
        g = sigma12 / (sigma1_sq + 1e-10)
        sv_sq = sigma2_sq - g * sigma12
        flat_ref = sigma1_sq < 1e-10
        g[flat_ref] = 0
        sv_sq[flat_ref] = sigma2_sq[flat_ref]
        sigma1_sq[flat_ref] = 0
        flat_dist = sigma2_sq < 1e-10
        g[flat_dist] = 0
        sv_sq[flat_dist] = 0
        negative = g < 0
        sv_sq[negative] = sigma2_sq[negative]
        g[negative] = 0
        sv_sq = np.maximum(sv_sq, 1e-10)
        num_map = np.log10(1 + g**2 * sigma1_sq / (sv_sq + VIF_SIGMA_NSQ))
        den_map = np.log10(1 + sigma1_sq / VIF_SIGMA_NSQ)
        for k, region in enumerate(regions):
            # A map pixel belongs to the region when at least half its window's weight lies inside it.
            inside = _valid_filter(region, window) >= 0.5
            sums[k] += num_map[inside].sum(), den_map[inside].sum()
    return [(float(num), float(den)) for num, den in sums]


def vif(reference, test, mask=None) -> float:
    """Visual information fidelity, pixel domain, multi-scale (vifp; Sheikh & Bovik 2006).

    A transcription of the LIVE reference ``vifp_mscale.m``: 4 scales with Gaussian windows of
    size ``N = 2^(5-s) + 1`` (17, 9, 5, 3), sigma ``N/5``, 'valid' filtering, dyadic subsampling
    between scales, HVS noise variance 2 on the 8-bit scale (the [0, 1] inputs are multiplied by
    255). ``VIF = sum_s sum_px log10(1 + g^2 s1^2 / (sv^2 + 2)) / sum_s sum_px log10(1 + s1^2 / 2)``.
    Identical images give 1 (up to 1e-10 guards), noise and blur push it towards 0, contrast
    enhancement above 1.

    Masked: a map pixel counts when >= half of its window weight lies in the region (the region
    mask goes through the same filtering and subsampling). A stack pools the sums over slices.
    Scales for which the image is smaller than the window are skipped (tiny test images).
    Returns NaN when the denominator is 0 (empty region or flat reference).
    """
    return vif_ratio(vif_terms(reference, test, [mask])[0])


def vif_ratio(terms: tuple[float, float]) -> float:
    """VIF from its ``(numerator, denominator)`` sums; NaN when the denominator is 0."""
    num, den = terms
    return num / den if den > 0 else float("nan")
