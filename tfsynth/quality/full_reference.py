"""Full-reference metrics on [0, 1] images: NMAE, PSNR and SSIM, each over a region.

Arguments are ``(reference, test[, mask])``, the real image first; see `tfsynth.metrics`.
"""

from __future__ import annotations

import numpy as np

from tfsynth.quality.regions import as_pair, region_mask

# SSIM as in Wang et al. 2004 and tf.image.ssim: 11x11 Gaussian window, sigma 1.5.
SSIM_SIGMA = 1.5
SSIM_BORDER = 5  # (11 - 1) / 2: pixels whose window leaves the image


def nmae(reference, test, mask=None) -> float:
    """Normalised mean absolute error.

    ``NMAE = mean_R |test - reference| / (max_R reference - min_R reference)``, R the region's
    voxels: the mean absolute error divided by the reference's intensity range within the
    region. Returns NaN for an empty region and inf for a constant non-empty reference with
    nonzero error (0 if the error is also zero).
    """
    reference, test = as_pair(reference, test)
    region = region_mask(mask, reference.shape)
    if not region.any():
        return float("nan")
    error = np.abs(test[region] - reference[region]).mean()
    value_range = reference[region].max() - reference[region].min()
    if value_range == 0:
        return 0.0 if error == 0 else float("inf")
    return float(error / value_range)


def psnr(reference, test, mask=None, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB.

    ``PSNR = 10 log10(data_range^2 / MSE_R)``, MSE over the region's voxels, data range 1 for
    [0, 1] images (the same formula as skimage.metrics.peak_signal_noise_ratio and tf.image.psnr).
    Identical images give ``inf`` (not capped: a perfect prediction is reported as such); an empty
    region gives NaN.
    """
    reference, test = as_pair(reference, test)
    region = region_mask(mask, reference.shape)
    if not region.any():
        return float("nan")
    mse = np.mean((test[region] - reference[region]) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def ssim_map(reference, test) -> np.ndarray:
    """Per-pixel SSIM (Wang et al. 2004) from scikit-image, computed slice by slice.

    Gaussian window sigma 1.5 (11x11, truncated at 3.5 sigma), K1 = 0.01, K2 = 0.03,
    data range 1, population covariances: the settings of Wang et al. and tf.image.ssim.

    Returns:
        float64 array of the input's shape ``[H, W]`` or ``[N, H, W]``.
    """
    from skimage.metrics import structural_similarity

    reference, test = as_pair(reference, test)
    options = dict(data_range=1.0, gaussian_weights=True, sigma=SSIM_SIGMA, use_sample_covariance=False, full=True)
    if reference.ndim == 2:
        return structural_similarity(reference, test, **options)[1]
    return structural_similarity(reference, test, channel_axis=0, **options)[1]


def ssim_interior(shape) -> np.ndarray:
    """Bool mask of ``shape`` without the ``SSIM_BORDER`` pixels whose window leaves the image."""
    interior = np.zeros(shape, dtype=bool)
    interior[..., SSIM_BORDER:-SSIM_BORDER, SSIM_BORDER:-SSIM_BORDER] = True
    return interior


def ssim(reference, test, mask=None) -> float:
    """Structural similarity: the mean of `ssim_map` over the region's pixels.

    Pixels within 5 of the image border (where the 11x11 window leaves the image) are
    excluded from every region, so with no mask this equals skimage's and tf.image.ssim's
    mean SSIM. A masked SSIM is the full map averaged over the region (BraSyn convention),
    not SSIM of a masked image. An empty region gives NaN.
    """
    return ssim_in_regions(reference, test, {"region": mask})["region"]


def ssim_in_regions(reference, test, masks: dict) -> dict[str, float]:
    """`ssim` in several regions from one SSIM map (computed once): ``{name: mask or None}`` -> ``{name: value}``."""
    reference, test = as_pair(reference, test)
    interior = ssim_interior(reference.shape)
    full = None
    values = {}
    for name, mask in masks.items():
        region = region_mask(mask, reference.shape) & interior
        if not region.any():
            values[name] = float("nan")
            continue
        full = ssim_map(reference, test) if full is None else full
        values[name] = float(full[region].mean())
    return values
