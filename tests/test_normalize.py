"""Percentile normalisation inside the brain, and centre crop/pad with its inverse."""

from __future__ import annotations

import numpy as np
import pytest

from tfsynth.data.normalize import (
    NormParams,
    crop_info,
    crop_or_pad,
    denormalize,
    percentile_normalize,
    undo_crop_or_pad,
)
from tfsynth.errors import TfsynthError


def brain_volume(seed=0):
    rng = np.random.default_rng(seed)
    vol = np.zeros((20, 20, 8), np.float32)
    vol[4:16, 3:17, 1:7] = rng.normal(500, 80, (12, 14, 6))
    vol[10, 10, 4] = 1e5  # a hot outlier the window must clip
    return vol


def test_percentile_window_is_computed_inside_the_brain():
    vol = brain_volume()
    out, params = percentile_normalize(vol)
    brain = vol != 0
    lo, hi = np.percentile(vol[brain], [0.5, 99.5])
    assert params == NormParams(pytest.approx(lo), pytest.approx(hi))
    assert lo > 100  # the zero background did not pull the low percentile down
    assert out.dtype == np.float32 and out.min() == 0 and out.max() == 1
    assert np.all(out[~brain] == 0)
    assert out[10, 10, 4] == 1  # outlier clipped
    inside = brain & (vol > lo) & (vol < hi)
    np.testing.assert_allclose(denormalize(out, params)[inside], vol[inside], rtol=1e-5)
    assert np.all(denormalize(out, params, mask=brain)[~brain] == 0)


def test_explicit_mask_and_percentiles():
    vol = brain_volume()
    mask = np.zeros(vol.shape, bool)
    mask[4:10] = True
    out, params = percentile_normalize(vol, mask=mask, low=5, high=95)
    assert np.all(out[~mask] == 0)
    assert params.lo == pytest.approx(np.percentile(vol[mask], 5))


def test_degenerate_volumes():
    with pytest.raises(TfsynthError, match="no brain voxels"):
        percentile_normalize(np.zeros((4, 4, 4)))
    const = np.zeros((4, 4, 4))
    const[1:3, 1:3, 1:3] = 7
    with pytest.raises(TfsynthError, match="constant"):
        percentile_normalize(const)


@pytest.mark.parametrize("hw", [(30, 26), (31, 33), (32, 32), (10, 50), (7, 7)])
@pytest.mark.parametrize("size", [8, 32])
def test_crop_or_pad_round_trip(hw, size):
    stack = np.random.default_rng(1).random((3,) + hw).astype(np.float32)
    out = crop_or_pad(stack, size)
    assert out.shape == (3, size, size) and out.dtype == stack.dtype
    np.testing.assert_array_equal(crop_or_pad(stack[1], size), out[1])
    back = undo_crop_or_pad(out, hw)
    assert back.shape == stack.shape
    info = crop_info(hw, size)
    keep = tuple(slice(c, c + min(n, size)) for c, n in zip(info["crop_start"], hw, strict=True))
    # Everything inside the kept window survives exactly; cropped borders come back as 0.
    np.testing.assert_array_equal(back[(slice(None),) + keep], stack[(slice(None),) + keep])
    assert back.sum() == pytest.approx(stack[(slice(None),) + keep].sum(), rel=1e-5)


def test_crop_or_pad_is_centred():
    img = np.zeros((6, 6))
    img[2:4, 2:4] = 1
    padded = crop_or_pad(img, 10)
    assert np.argwhere(padded).tolist() == [[4, 4], [4, 5], [5, 4], [5, 5]]
    cropped = crop_or_pad(padded, 4)
    assert np.argwhere(cropped).tolist() == [[1, 1], [1, 2], [2, 1], [2, 2]]
    assert crop_info((6, 12), 8) == {"original_hw": [6, 12], "crop_start": [0, 2], "pad_before": [1, 0]}
