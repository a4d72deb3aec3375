"""The built-in phantom cohort: MR physics, BraTS grid and layout, determinism, CLI errors."""

from __future__ import annotations

import math
import re

import nibabel as nib
import numpy as np
import pytest

from tfsynth.commands import phantom as phantom_cli
from tfsynth.contrasts import BRATS_NAMES, CONTRASTS
from tfsynth.errors import TfsynthError
from tfsynth.phantom import cohort as phantom_cohort
from tfsynth.phantom.acquisition import Acquisition


@pytest.fixture(scope="module")
def subject():
    """One subject at 2 mm: enough pure-tissue voxels for robust tissue means."""
    return phantom_cohort.make_subject(seed=3, voxel_size=2.0)


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
    t1_csf = phantom_cohort.TISSUE_PARAMS["csf"][1]
    for tr in (6000.0, 9000.0, 1e7):
        ti = phantom_cohort.null_inversion_time(t1_csf, tr)
        assert abs(phantom_cohort.inversion_recovery(1.0, t1_csf, 2000.0, tr=tr, te=0.0, ti=ti)) < 1e-9
    assert phantom_cohort.null_inversion_time(t1_csf, 1e9) == pytest.approx(t1_csf * math.log(2))


def test_segmentation_labels_and_tissue_fractions(subject):
    seg = subject["seg"]
    assert seg.dtype == np.uint8
    assert set(np.unique(seg)) == {0, 1, 2, 3}
    # Enhancing tumour surrounds the core: the core's bounding box lies inside the rim's.
    core, rim = np.argwhere(seg == 1), np.argwhere(seg == 3)
    assert (rim.min(0) <= core.min(0)).all() and (rim.max(0) >= core.max(0)).all()
    total = sum(subject["tissues"][name] for name in phantom_cohort.TISSUES)
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
    assert phantom_cohort.grid_shape(1.0) == (240, 240, 155)
    assert phantom_cohort.grid_shape(2.0) == (120, 120, 78)
    assert phantom_cohort.grid_shape(4.0) == (60, 60, 39)
    affine = phantom_cohort.grid_affine(2.0)
    assert nib.aff2axcodes(affine) == ("L", "P", "S")
    assert np.allclose(np.abs(np.diag(affine)[:3]), 2.0)
    centre = affine @ np.r_[(np.array(phantom_cohort.grid_shape(2.0)) - 1) / 2, 1]
    assert np.allclose(centre[:3], 0.0)


@pytest.mark.parametrize("voxel_size", [1.0, 2.0, 4.0])
def test_subject_shapes(voxel_size, request):
    one = request.getfixturevalue("subject") if voxel_size == 2.0 else phantom_cohort.make_subject(0, voxel_size)
    shape = phantom_cohort.grid_shape(voxel_size)
    for key in (*CONTRASTS, "seg", "brain", *(f"tissues.{name}" for name in phantom_cohort.TISSUES)):
        value = one["tissues"][key.split(".")[1]] if key.startswith("tissues.") else one[key]
        assert value.shape == shape, key
    assert np.allclose(one["affine"], phantom_cohort.grid_affine(voxel_size))
    assert set(np.unique(one["seg"])) == {0, 1, 2, 3}


def test_deterministic_per_seed_and_index():
    a = phantom_cohort.make_subject(seed=5, voxel_size=4.0)
    b = phantom_cohort.make_subject(seed=5, voxel_size=4.0)
    for key in (*CONTRASTS, "seg"):
        np.testing.assert_array_equal(a[key], b[key])
    for other in (
        phantom_cohort.make_subject(seed=6, voxel_size=4.0),
        phantom_cohort.make_subject(seed=5, voxel_size=4.0, index=1),
    ):
        assert not np.array_equal(a["t1"], other["t1"])
        assert not np.array_equal(a["seg"], other["seg"])
        assert not np.array_equal(a["brain"], other["brain"])  # the anatomy itself varies


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

    reference = phantom_cohort.make_subject(seed=1, voxel_size=4.0, index=0)
    for contrast, suffix in BRATS_NAMES[naming].items():
        img = nib.load(folders[0] / f"{folders[0].name}{sep}{suffix}.nii.gz")
        assert img.get_data_dtype() == np.float32
        assert img.shape == (60, 60, 39)
        assert np.allclose(img.affine, phantom_cohort.grid_affine(4.0))
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
        phantom_cohort.write_cohort(tmp_path, subjects=1, naming="BraTS")
    with pytest.raises(TfsynthError, match="subjects"):
        phantom_cohort.write_cohort(tmp_path, subjects=2.5)
    with pytest.raises(TfsynthError, match="voxel size"):
        phantom_cohort.make_subject(seed=0, voxel_size="big")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(TfsynthError, match="not a directory"):
        phantom_cohort.write_cohort(tmp_path / "file", subjects=1)


# --------------------------------------------------------------------------- acquisition options


def test_default_acquisition_reproduces_the_cohort_before_the_options():
    """Values of seed 5 at 4 mm as generated before acquisition options existed."""
    default = phantom_cohort.make_subject(seed=5, voxel_size=4.0)
    explicit = phantom_cohort.make_subject(seed=5, voxel_size=4.0, acquisition=Acquisition())
    for key in (*CONTRASTS, "seg"):
        np.testing.assert_array_equal(default[key], explicit[key])
    params = default["params"]
    assert params["t1"] == pytest.approx({"tr": 491.63080040339986, "te": 10.147305062545783}, rel=1e-12)
    assert params["t2"] == pytest.approx({"tr": 4797.144763641356, "te": 104.15323478400262}, rel=1e-12)
    assert params["flair"] == pytest.approx(
        {"tr": 9255.271599587319, "te": 104.38433992003372, "ti": 2502.4236590588025}, rel=1e-12
    )
    assert params["gd_mm"] == pytest.approx(0.16159879779840913, rel=1e-12)
    means = {"t1": 204.21241111197233, "t1c": 168.10735273668934, "t2": 268.9891175224462, "flair": 144.97825975850967}
    for contrast, mean in means.items():
        assert default[contrast][default["brain"]].astype(np.float64).mean() == pytest.approx(mean, rel=1e-5)


def test_longer_t2_echo_time_darkens_t2_as_the_signal_equation_says(subject):
    longer = phantom_cohort.make_subject(seed=3, voxel_size=2.0, acquisition=Acquisition(t2_te=150.0))
    for contrast in ("t1", "t1c", "flair"):  # same random draws: only the T2 image changes
        np.testing.assert_array_equal(longer[contrast], subject[contrast])
    delta_te = longer["params"]["t2"]["te"] - subject["params"]["t2"]["te"]
    assert delta_te == pytest.approx(50.0, rel=0.06)  # the +-5 % jitter scales the nominal 50 ms
    wm, csf = pure(subject, "wm", 0.9), pure(subject, "csf")
    t2_wm, t2_csf = phantom_cohort.TISSUE_PARAMS["wm"][2], phantom_cohort.TISSUE_PARAMS["csf"][2]
    # S ~ exp(-TE/T2): white matter (T2 69 ms) loses exp(-dTE/T2), CSF (2 s) hardly anything.
    darkening = float(longer["t2"][wm].mean() / subject["t2"][wm].mean())
    assert darkening == pytest.approx(math.exp(-delta_te / t2_wm), rel=0.05)
    contrast_gain = mean_rel_wm(longer, "t2", csf) / mean_rel_wm(subject, "t2", csf)
    assert contrast_gain == pytest.approx(math.exp(delta_te * (1 / t2_wm - 1 / t2_csf)), rel=0.1)


def test_explicit_flair_inversion_time_overrides_csf_nulling(subject):
    early = phantom_cohort.make_subject(seed=3, voxel_size=2.0, acquisition=Acquisition(flair_ti=1000.0))
    assert early["params"]["flair"]["ti"] == pytest.approx(1000.0, rel=0.021)
    for contrast in ("t1", "t1c", "t2"):
        np.testing.assert_array_equal(early[contrast], subject[contrast])
    csf = pure(subject, "csf")
    # At TI 1000 ms CSF's magnetisation is still strongly inverted: bright in magnitude, not nulled.
    assert mean_rel_wm(subject, "flair", csf) < 0.4
    assert mean_rel_wm(early, "flair", csf) > 3.0


def test_gadolinium_dose_raises_rim_enhancement(subject):
    def enhancement(one):
        rim = one["seg"] == 3
        return mean_rel_wm(one, "t1c", rim) / mean_rel_wm(one, "t1", rim)

    none = phantom_cohort.make_subject(seed=3, voxel_size=2.0, acquisition=Acquisition(gd_mm=(0.0, 0.0)))
    high = phantom_cohort.make_subject(seed=3, voxel_size=2.0, acquisition=Acquisition(gd_mm=(0.6, 0.8)))
    assert none["params"]["gd_mm"] == 0.0 and 0.6 <= high["params"]["gd_mm"] <= 0.8
    assert enhancement(none) == pytest.approx(1.0, abs=0.1)  # without gadolinium T1c is a second T1
    assert enhancement(subject) > 1.4
    assert enhancement(high) > enhancement(subject) + 0.5


def test_snr_and_bias_strength_set_noise_and_shading():
    def white_matter(snr, bias):
        one = phantom_cohort.make_subject(seed=3, voxel_size=4.0, acquisition=Acquisition(snr=snr, bias_strength=bias))
        return one["t1"][pure(one, "wm", 0.9)], one["t1"][one["brain"]]

    clean, _ = white_matter((1e4, 1e4), (0.0, 0.0))
    assert clean.std() / clean.mean() < 0.01  # no noise, no bias: pure white matter is uniform
    noisy, brain = white_matter((10.0, 10.0), (0.0, 0.0))
    # SNR = mean brain signal / noise std; at SNR 10 Rician noise is close to Gaussian.
    assert noisy.std() / brain.mean() == pytest.approx(0.1, rel=0.15)
    shaded, _ = white_matter((1e4, 1e4), (0.3, 0.3))
    assert shaded.std() / shaded.mean() > 10 * clean.std() / clean.mean()


def test_tissue_relaxation_scales_move_the_flair_null_with_csf(subject):
    scaled = phantom_cohort.make_subject(seed=3, voxel_size=2.0, acquisition=Acquisition(tissue_t1_scale=0.8))
    # Same draws, so the same TR and TI jitter: TI follows the nulling TI of the scaled CSF T1.
    tr, t1_csf = subject["params"]["flair"]["tr"], phantom_cohort.TISSUE_PARAMS["csf"][1]
    expected = phantom_cohort.null_inversion_time(0.8 * t1_csf, tr) / phantom_cohort.null_inversion_time(t1_csf, tr)
    assert scaled["params"]["flair"]["ti"] / subject["params"]["flair"]["ti"] == pytest.approx(expected, rel=1e-9)
    assert mean_rel_wm(scaled, "flair", pure(subject, "csf")) < 0.4  # CSF still nulled
    assert not np.array_equal(scaled["t1"], subject["t1"])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"t2_te": 6000.0}, "t2_te: TE 6000 ms must be shorter than TR 5000 ms"),
        ({"t1_tr": 0.0}, "t1_tr: must be positive"),
        ({"flair_te": -5.0}, "flair_te: must be positive"),
        ({"flair_ti": 9500.0}, "flair_ti: TI 9500 ms must be shorter than TR 9000 ms"),
        ({"flair_tr": float("nan")}, "flair_tr: nan is not a finite number"),
        ({"t1_te": "10"}, "t1_te: '10' is not a number"),
        ({"gd_mm": (-0.1, 0.2)}, "gd_mm: a concentration in mM must be >= 0"),
        ({"gd_mm": (0.5, 0.2)}, "gd_mm: low 0.5 is above high 0.2"),
        ({"snr": (0.0, 10.0)}, "snr: a signal-to-noise ratio must be positive"),
        ({"snr": 30.0}, "snr: expected (low, high)"),
        ({"bias_strength": (0.1, 2.0)}, "bias_strength: 2 is above 1"),
        ({"tissue_t2_scale": 0.0}, "tissue_t2_scale: must be positive"),
    ],
)
def test_bad_acquisition_values_raise_one_clear_error(options, message):
    with pytest.raises(TfsynthError, match="^" + re.escape(f"acquisition {message}")):
        Acquisition(**options)


def test_library_rejects_a_non_acquisition(tmp_path):
    with pytest.raises(TfsynthError, match="acquisition must be"):
        phantom_cohort.make_subject(seed=0, voxel_size=4.0, acquisition={"t2_te": 120.0})
    with pytest.raises(TfsynthError, match="acquisition must be"):
        phantom_cohort.write_cohort(tmp_path / "out", subjects=1, acquisition={"t2_te": 120.0})
    assert list(tmp_path.iterdir()) == []


def test_cli_passes_acquisition_options_through(tmp_path, capsys):
    options = {
        "--t1-tr": ["600"], "--t1-te": ["15"], "--t2-tr": ["4000"], "--t2-te": ["120"],
        "--flair-tr": ["8000"], "--flair-te": ["130"], "--flair-ti": ["2300"], "--gd-mm": ["0.3", "0.5"],
        "--snr": ["12", "18"], "--bias-strength": ["0.1", "0.2"], "--tissue-t1-scale": ["0.9"],
        "--tissue-t2-scale": ["1.1"],
    }  # fmt: skip
    argv = [str(tmp_path / "cohort"), "--subjects", "1", "--seed", "2", "--voxel-size", "4"]
    argv += [item for flag, values in options.items() for item in (flag, *values)]
    assert phantom_cli.main(argv) == 0
    assert "custom acquisition" in capsys.readouterr().out
    acquisition = Acquisition(
        t1_tr=600, t1_te=15, t2_tr=4000, t2_te=120, flair_tr=8000, flair_te=130, flair_ti=2300,
        gd_mm=(0.3, 0.5), snr=(12, 18), bias_strength=(0.1, 0.2), tissue_t1_scale=0.9, tissue_t2_scale=1.1,
    )  # fmt: skip
    assert phantom_cli.acquisition_from_args(phantom_cli.build_parser().parse_args(argv)) == acquisition
    expected = phantom_cohort.make_subject(seed=2, voxel_size=4.0, acquisition=acquisition)
    default = phantom_cohort.make_subject(seed=2, voxel_size=4.0)
    folder, files = phantom_cohort.case_files(tmp_path / "cohort", 0, "brats2023")
    for contrast in CONTRASTS:
        written = np.asanyarray(nib.load(files[contrast]).dataobj)
        np.testing.assert_array_equal(written, expected[contrast])
        assert not np.array_equal(written, default[contrast])


def test_cli_help_names_units_and_defaults(capsys):
    with pytest.raises(SystemExit):
        phantom_cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for expected in ("--t2-te MS", "echo time, ms (default 100)", "--gd-mm LOW HIGH", "mM", "(default 20 40)",
                     "--bias-strength LOW HIGH", "(default 0.05 0.12)", "nulls CSF"):  # fmt: skip
        assert expected in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--t2-te", "6000"], "acquisition t2_te: TE 6000 ms must be shorter than TR 5000 ms"),
        (["--snr", "40", "20"], "acquisition snr: low 40 is above high 20"),
        (["--gd-mm", "-1", "0.2"], "acquisition gd_mm"),
        (["--flair-ti", "0"], "acquisition flair_ti: must be positive"),
    ],
)
def test_cli_bad_acquisition_exits_2_with_one_line_and_writes_nothing(args, message, tmp_path, capsys):
    out = tmp_path / "cohort"
    assert phantom_cli.main([str(out), "--subjects", "1", "--voxel-size", "4", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not out.exists()
