"""Slicing orientation, resampling to the model's voxel size, and the zero-background check."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from tfsynth.data.brain_mask import background_problem, brain_mask_of, check_zero_background
from tfsynth.data.geometry import TRAINING_ORIENTATION, Frame, axcodes, check_orientation
from tfsynth.errors import TfsynthError
from tfsynth.phantom.cohort import grid_affine

LPS = np.diag([-2.0, -2.0, 3.0, 1.0])
LPS[:3, 3] = [10.0, 20.0, -5.0]


def test_the_training_orientation_is_the_phantom_s():
    assert axcodes(grid_affine(2.0)) == TRAINING_ORIENTATION == "LPS"


def _layouts(data):
    """One LPS volume stored four ways: as is, RAS (as_closest_canonical), axial axis first, and
    coronal-sliced (PSL... any permutation with flips)."""
    image = nib.Nifti1Image(data, LPS)
    ras = nib.as_closest_canonical(image)
    axial_first = nib.Nifti1Image(np.ascontiguousarray(np.transpose(data, (2, 0, 1))), LPS[:, [2, 0, 1, 3]])
    flipped = LPS @ np.array([[0, 0, 1, 0], [-1, 0, 0, 11], [0, 1, 0, 0], [0, 0, 0, 1]], float)
    odd = nib.Nifti1Image(np.ascontiguousarray(np.flip(np.transpose(data, (1, 2, 0)), axis=0)), flipped)
    return {"LPS": image, "RAS": ras, "axial first": axial_first, "odd": odd}


def test_every_layout_reaches_the_same_lps_voxels_and_goes_back_exactly():
    data = np.random.default_rng(0).random((10, 12, 7)).astype(np.float32)
    layouts = _layouts(data)
    assert [axcodes(i.affine) for i in layouts.values()] == ["LPS", "RAS", "SLP", "ASL"]
    for name, image in layouts.items():
        stored = np.asarray(image.dataobj)
        frame = Frame.of(image.affine, image.shape)
        model = frame.forward(stored)
        np.testing.assert_array_equal(model, data, err_msg=name)
        np.testing.assert_allclose(frame.affine, LPS, atol=1e-12, err_msg=name)
        np.testing.assert_array_equal(frame.backward(model), stored, err_msg=name)
        assert frame.reoriented == (name != "LPS") and not frame.resampled


def test_resampling_keeps_the_extent_and_returns_to_the_exact_shape():
    frame = Frame.of(LPS, (10, 12, 7), voxel_size_mm=[1.0, 1.0, 1.0])
    assert frame.resampled and frame.model_shape == (20, 24, 21)
    # Voxel centres: the first voxel of the finer grid sits a quarter/third of an old voxel inside.
    np.testing.assert_allclose(frame.affine @ [0, 0, 0, 1], LPS @ [-0.25, -0.25, -1 / 3, 1])
    smooth = np.fromfunction(lambda x, y, z: np.sin(x / 3) + np.cos(y / 4) + z / 7, (10, 12, 7)).astype(np.float32)
    up = frame.forward(smooth)
    assert up.shape == (20, 24, 21)
    back = frame.backward(up)
    assert back.shape == (10, 12, 7)
    np.testing.assert_allclose(back[2:-2, 2:-2, 2:-2], smooth[2:-2, 2:-2, 2:-2], atol=0.02)
    # Within 1 % per axis nothing is resampled.
    assert not Frame.of(LPS, (10, 12, 7), voxel_size_mm=[2.01, 1.99, 3.0]).resampled
    mask = np.zeros((10, 12, 7), bool)
    mask[3:7, 3:9, 2:5] = True
    # Each voxel becomes 2 x 2 x 3 finer ones; linear interpolation thresholded at 0.5 keeps the volume.
    assert frame.forward_mask(mask).sum() == pytest.approx(12 * mask.sum(), rel=0.1)
    with pytest.raises(TfsynthError, match="does not fit the frame"):
        frame.backward(smooth)


def test_normalized_volumes_are_in_the_unit_range_and_zero_outside_the_brain():
    rng = np.random.default_rng(1)
    volume = np.zeros((10, 12, 7), np.float32)
    volume[2:8, 3:10, 1:6] = rng.uniform(100.0, 900.0, (6, 7, 5))
    for voxel_size in (None, [1.0, 1.0, 1.0]):  # as stored, and resampled (a spline overshoots)
        frame = Frame.of(LPS, volume.shape, voxel_size_mm=voxel_size)
        out = frame.normalized(volume, "t1.nii.gz")
        brain = frame.forward_mask(volume != 0)
        assert out.shape == frame.model_shape and 0.0 <= out.min() and out.max() <= 1.0
        assert not out[~brain].any() and out[brain].max() == pytest.approx(1.0, abs=0.05)
    volume[volume != 0] = 5.0
    with pytest.raises(TfsynthError, match=r"^flat\.nii\.gz: brain intensities are constant"):
        Frame.of(LPS, volume.shape).normalized(volume, "flat.nii.gz")


def test_bad_orientation_codes():
    assert check_orientation("ras") == "RAS"
    for bad in ("LLS", "LP", "XYZ", "LPSA"):
        with pytest.raises(TfsynthError, match="must name each axis once"):
            check_orientation(bad)


def _head(background: float = 0.0, noise: float = 0.0, seed: int = 0):
    """A 'brain' ellipsoid inside a 40^3 grid; outside it ``background`` (+ noise)."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, 40)] * 3, indexing="ij")
    brain = sum(g**2 for g in grid) < 0.6
    volume = np.where(brain, 300 + 50 * rng.random(brain.shape), background).astype(np.float32)
    if noise:
        volume[~brain] += np.abs(rng.normal(0, noise, (~brain).sum())).astype(np.float32)
    return volume, brain


@pytest.mark.parametrize(
    "background, noise, detail",
    [
        (-32768.0, 0.0, "most common border value -32768"),  # DICOM-conversion padding
        (100.0, 0.0, "most common border value 100"),  # a constant offset
        (0.0, 5.0, "no single background value"),  # not skull-stripped: Rician air noise
    ],
)
def test_nonzero_backgrounds_are_refused_naming_the_file_and_the_fix(background, noise, detail):
    volume, brain = _head(background, noise)
    problem = background_problem(volume)
    assert problem and "100% of the border voxels are nonzero" in problem and detail in problem
    with pytest.raises(TfsynthError) as error:
        check_zero_background(volume, "scan-t1n.nii.gz")
    message = str(error.value)
    assert message.startswith("scan-t1n.nii.gz: its background is not 0")
    assert "skull-strip" in message and "--brain-mask FILE" in message and "--background VALUE" in message
    assert "\n" not in message


def test_zero_background_passes_also_when_the_brain_touches_a_face():
    volume, brain = _head()
    assert background_problem(volume) is None
    volume[:, :, :3] = 200.0  # a tightly cropped brain touching one face of the grid
    assert background_problem(volume) is None
    np.testing.assert_array_equal(brain_mask_of(volume, "x.nii"), volume != 0)


def test_background_value_and_brain_mask_options(tmp_path):
    volume, brain = _head(-32768.0)
    np.testing.assert_array_equal(brain_mask_of(volume, "x.nii", background=-32768), brain)
    mask_file = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), LPS), mask_file)
    np.testing.assert_array_equal(brain_mask_of(volume, "x.nii", LPS, mask_file=mask_file), brain)
    with pytest.raises(TfsynthError, match="mask.nii.gz: brain mask affine differs"):
        brain_mask_of(volume, "x.nii", LPS @ np.diag([1, 1, 2, 1]), mask_file=mask_file)
    nib.save(nib.Nifti1Image(brain[:-1].astype(np.uint8), LPS), mask_file)
    with pytest.raises(TfsynthError, match=r"mask.nii.gz: brain mask shape \(39, 40, 40\) differs"):
        brain_mask_of(volume, "x.nii", LPS, mask_file=mask_file)
    with pytest.raises(TfsynthError, match="x.nii: the brain mask is empty"):
        brain_mask_of(np.full((4, 4, 4), 7.0, np.float32), "x.nii", background=7.0)
