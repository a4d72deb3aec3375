"""The built-in phantom cohort: MR physics, BraTS grid and layout, determinism, CLI errors."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest

from tfsynth import phantom as phantom_cli
from tfsynth.contrasts import BRATS_NAMES, CONTRASTS
from tfsynth.data import phantom
from tfsynth.errors import TfsynthError


@pytest.fixture(scope="module")
def subject():
    """One subject at 2 mm: enough pure-tissue voxels for robust tissue means."""
    return phantom.make_subject(seed=3, voxel_size=2.0)


def pure(subject, tissue, fraction=0.8):
    """Voxels mostly of one normal tissue and outside the tumour and edema."""
    return (subject["tissues"][tissue] >= fraction) & (subject["seg"] == 0)


def mean_rel_wm(subject, contrast, region):
    """Mean intensity of a region relative to pure white matter (contrasts have arbitrary scales)."""
    image = subject[contrast]
    assert region.sum() >= 5, "region too small for a stable mean"
    return float(image[region].mean() / image[pure(subject, "wm", 0.9)].mean())


def test_white_matter_brighter_than_grey_in_t1_darker_in_t2(subject):
    gm = pure(subject, "gm")
    assert mean_rel_wm(subject, "t1", gm) < 0.9
    assert mean_rel_wm(subject, "t2", gm) > 1.3


def test_csf_dark_in_flair_bright_in_t2(subject):
    csf = pure(subject, "csf")
    assert mean_rel_wm(subject, "flair", csf) < 0.4
    assert mean_rel_wm(subject, "t2", csf) > 2.5


def test_enhancing_rim_brighter_in_t1c_than_in_t1(subject):
    rim = subject["seg"] == 3
    assert mean_rel_wm(subject, "t1c", rim) > 1.4 * mean_rel_wm(subject, "t1", rim)
    assert mean_rel_wm(subject, "t1c", rim) > 1.3  # hyperintense to white matter after gadolinium


def test_edema_bright_in_flair_and_t2(subject):
    edema = subject["seg"] == 2
    assert mean_rel_wm(subject, "flair", edema) > 1.3
    assert mean_rel_wm(subject, "t2", edema) > 1.5


def test_necrotic_core_dark_in_t1c_bright_in_t2(subject):
    core = subject["seg"] == 1
    assert mean_rel_wm(subject, "t1c", core) < 0.6 * mean_rel_wm(subject, "t1c", subject["seg"] == 3)
    assert mean_rel_wm(subject, "t1c", core) < 1.0
    assert mean_rel_wm(subject, "t2", core) > 2.0


def test_flair_inversion_time_nulls_csf():
    t1_csf = phantom.TISSUE_PARAMS["csf"][1]
    for tr in (6000.0, 9000.0, 1e7):
        ti = phantom.null_inversion_time(t1_csf, tr)
        assert abs(phantom.inversion_recovery(1.0, t1_csf, 2000.0, tr=tr, te=0.0, ti=ti)) < 1e-9
    assert phantom.null_inversion_time(t1_csf, 1e9) == pytest.approx(t1_csf * math.log(2))


def test_segmentation_labels_and_tissue_fractions(subject):
    seg = subject["seg"]
    assert seg.dtype == np.uint8
    assert set(np.unique(seg)) == {0, 1, 2, 3}
    # Enhancing tumour surrounds the core: the core's bounding box lies inside the rim's.
    core, rim = np.argwhere(seg == 1), np.argwhere(seg == 3)
    assert (rim.min(0) <= core.min(0)).all() and (rim.max(0) >= core.max(0)).all()
    total = sum(subject["tissues"][name] for name in phantom.TISSUES)
    brain = subject["brain"]
    assert total[brain].max() <= 1.0 + 1e-5 and total[brain].mean() > 0.9
    assert (total[~brain] == 0).all()
    # Tumour sits in the brain, in the centre of the head rather than at the grid border.
    assert brain[seg > 0].all()


def test_background_exactly_zero_and_brain_positive(subject):
    brain = subject["brain"]
    assert 0.1 < brain.mean() < 0.4
    for contrast in CONTRASTS:
        image = subject[contrast]
        assert image.dtype == np.float32 and np.isfinite(image).all()
        assert (image[~brain] == 0).all()
        assert (image[brain] > 0).all()
    assert (subject["seg"][~brain] == 0).all()


def test_grid_shape_and_affine_follow_brats():
    assert phantom.grid_shape(1.0) == (240, 240, 155)
    assert phantom.grid_shape(2.0) == (120, 120, 78)
    assert phantom.grid_shape(4.0) == (60, 60, 39)
    affine = phantom.grid_affine(2.0)
    assert nib.aff2axcodes(affine) == ("L", "P", "S")
    assert np.allclose(np.abs(np.diag(affine)[:3]), 2.0)
    centre = affine @ np.r_[(np.array(phantom.grid_shape(2.0)) - 1) / 2, 1]
    assert np.allclose(centre[:3], 0.0)


@pytest.mark.parametrize("voxel_size", [1.0, 2.0, 4.0])
def test_subject_shapes(voxel_size, request):
    one = request.getfixturevalue("subject") if voxel_size == 2.0 else phantom.make_subject(0, voxel_size)
    shape = phantom.grid_shape(voxel_size)
    for key in (*CONTRASTS, "seg", "brain", *(f"tissues.{name}" for name in phantom.TISSUES)):
        value = one["tissues"][key.split(".")[1]] if key.startswith("tissues.") else one[key]
        assert value.shape == shape, key
    assert np.allclose(one["affine"], phantom.grid_affine(voxel_size))
    assert set(np.unique(one["seg"])) == {0, 1, 2, 3}


def test_deterministic_per_seed_and_index():
    a = phantom.make_subject(seed=5, voxel_size=4.0)
    b = phantom.make_subject(seed=5, voxel_size=4.0)
    for key in (*CONTRASTS, "seg"):
        np.testing.assert_array_equal(a[key], b[key])
    for other in (phantom.make_subject(seed=6, voxel_size=4.0), phantom.make_subject(seed=5, voxel_size=4.0, index=1)):
        assert not np.array_equal(a["t1"], other["t1"])
        assert not np.array_equal(a["seg"], other["seg"])
        assert not np.array_equal(a["brain"], other["brain"])  # the anatomy itself varies


def test_conftest_cohort_is_brats2023(phantom_cohort):
    cases = sorted(p.name for p in phantom_cohort.iterdir())
    assert cases == [f"BraTS-GLI-{i:05d}-000" for i in range(4)]


@pytest.mark.parametrize("naming", ["brats2020", "brats2023"])
def test_cli_writes_brats_layout(naming, tmp_path, capsys):
    out = tmp_path / "cohort"
    assert phantom_cli.main([str(out), "--subjects", "2", "--seed", "1", "--voxel-size", "4", "--naming", naming]) == 0
    assert "wrote 2 phantom subjects" in capsys.readouterr().out
    folders = sorted(p for p in out.iterdir())
    expected = (
        ["BraTS20_Training_001", "BraTS20_Training_002"]
        if naming == "brats2020"
        else [
            "BraTS-GLI-00000-000",
            "BraTS-GLI-00001-000",
        ]
    )
    assert [p.name for p in folders] == expected
    sep = "_" if naming == "brats2020" else "-"
    suffixes = [*BRATS_NAMES[naming].values(), "seg"]
    names = sorted(p.name for p in folders[0].iterdir())
    assert names == sorted(f"{folders[0].name}{sep}{s}.nii.gz" for s in suffixes)  # no temp leftovers

    reference = phantom.make_subject(seed=1, voxel_size=4.0, index=0)
    for contrast, suffix in BRATS_NAMES[naming].items():
        img = nib.load(folders[0] / f"{folders[0].name}{sep}{suffix}.nii.gz")
        assert img.get_data_dtype() == np.float32
        assert img.shape == (60, 60, 39)
        assert np.allclose(img.affine, phantom.grid_affine(4.0))
        assert np.allclose(img.header.get_zooms(), 4.0)
        np.testing.assert_array_equal(np.asanyarray(img.dataobj), reference[contrast])
    seg = nib.load(folders[0] / f"{folders[0].name}{sep}seg.nii.gz")
    assert seg.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(seg.dataobj), reference["seg"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--subjects", "-1"], "subjects"),
        (["--subjects", "0"], "subjects"),
        (["--naming", "brats2019"], "naming"),
        (["--voxel-size", "0"], "voxel size"),
        (["--voxel-size", "-2"], "voxel size"),
        (["--voxel-size", "nan"], "voxel size"),
        (["--voxel-size", "0.1"], "range"),
        (["--seed", "-3"], "seed"),
    ],
)
def test_cli_bad_arguments_exit_2_and_write_nothing(args, message, tmp_path, capsys):
    out = tmp_path / "cohort"
    assert phantom_cli.main([str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err
    assert not out.exists()


def test_library_rejects_bad_arguments(tmp_path):
    with pytest.raises(TfsynthError, match="naming"):
        phantom.write_cohort(tmp_path, subjects=1, naming="BraTS")
    with pytest.raises(TfsynthError, match="subjects"):
        phantom.write_cohort(tmp_path, subjects=2.5)
    with pytest.raises(TfsynthError, match="voxel size"):
        phantom.make_subject(seed=0, voxel_size="big")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(TfsynthError, match="not a directory"):
        phantom.write_cohort(tmp_path / "file", subjects=1)
