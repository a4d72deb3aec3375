"""NIfTI-to-NIfTI synthesis: exact grid round trip, naming, canvas handling, bad inputs."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from tfsynth import synthesize
from tfsynth.errors import TfsynthError


@pytest.fixture(scope="module")
def tiny_model(tiny_saved_model):
    """A tiny untrained generator exported as a serving SavedModel with a 64x64 canvas."""
    return tiny_saved_model(64)


@pytest.fixture()
def oblique_t1(phantom_cohort, tmp_path):
    """A phantom T1 volume re-saved with an oblique affine, distinct qform/sform codes and an odd size."""
    source = sorted(phantom_cohort.glob("*/*-t1n.nii.gz"))[0]
    data = np.asarray(nib.load(source).dataobj, dtype=np.float32)[:, :-3, :]  # 60 x 57 x 39
    affine = np.array([[3.9, 0.4, 0.0, -118.0], [-0.3, 3.95, 0.2, -130.5], [0.0, -0.1, 4.1, -72.25], [0, 0, 0, 1]])
    image = nib.Nifti1Image(data.astype(np.int16), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=2)
    image.header["descrip"] = b"oblique test volume"
    image.header.set_xyzt_units("mm", "sec")
    path = tmp_path / "inputs" / "patient7_t1.nii.gz"
    path.parent.mkdir()
    nib.save(image, path)
    return path


def test_round_trip_preserves_grid_and_header_exactly(tiny_model, oblique_t1, tmp_path):
    out = tmp_path / "out"
    code = synthesize.main(
        [
            "--model",
            str(tiny_model),
            "--source",
            "t1",
            "--target",
            "t2",
            "flair",
            "--out",
            str(out),
            "--quiet",
            str(oblique_t1),
        ]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "patient7-t2f.nii.gz",
        "patient7-t2w.nii.gz",
    ]  # BraTS-style suffix stripped
    source = nib.load(oblique_t1)
    source_data = np.asarray(source.dataobj)
    for name in ("patient7-t2w.nii.gz", "patient7-t2f.nii.gz"):
        result = nib.load(out / name)
        assert result.shape == source.shape
        assert result.get_data_dtype() == np.float32
        np.testing.assert_array_equal(result.affine, source.affine)
        for coded in ("get_qform", "get_sform"):
            matrix, code = getattr(result, coded)(coded=True)
            expected, expected_code = getattr(source, coded)(coded=True)
            assert int(code) == int(expected_code)
            np.testing.assert_allclose(matrix, expected, atol=1e-6)
        assert result.header.get_zooms() == source.header.get_zooms()
        assert result.header.get_xyzt_units() == source.header.get_xyzt_units()
        data = np.asarray(result.dataobj)
        assert np.all(np.isfinite(data)) and data.min() >= 0 and data.max() <= 1
        assert np.all(data[source_data == 0] == 0)  # background stays background
        assert np.count_nonzero(data) > 0.5 * np.count_nonzero(source_data)


def test_brats_folders_naming_templates_and_continue_on_failure(tiny_model, phantom_cohort, tmp_path, capsys):
    inputs = tmp_path / "cases"
    for case in sorted(phantom_cohort.iterdir())[:2]:
        (inputs / case.name).mkdir(parents=True)
        for file in case.iterdir():
            (inputs / case.name / file.name).symlink_to(file)
    # One case lacks the source contrast: it fails, the other is written, exit status 1.
    broken = sorted(inputs.iterdir())[1]
    next(broken.glob("*-t2w.nii.gz")).unlink()
    out = tmp_path / "out"
    argv = ["--model", str(tiny_model), "--source", "t2w", "--target", "t1c", "--out", str(out), "--quiet"]
    code = synthesize.main(argv + ["--naming", "{case}_{contrast}_from_{source}.nii.gz", str(inputs)])
    assert code == 1
    good = sorted(inputs.iterdir())[0].name
    assert [p.name for p in out.iterdir()] == [f"{good}_t1c_from_t2.nii.gz"]
    err = capsys.readouterr().err
    assert f"case {broken.name}" in err and "has no t2 file" in err and "1 case(s) failed" in err
    # Existing outputs are not overwritten silently.
    assert synthesize.main(argv + ["--naming", "{case}_{contrast}_from_{source}.nii.gz", str(inputs / good)]) == 1
    assert "output exists" in capsys.readouterr().err


def test_output_names():
    assert synthesize.output_name("brats2023", "BraTS-GLI-00001-000", "flair", "t1") == "BraTS-GLI-00001-000-t2f.nii.gz"
    assert (
        synthesize.output_name("brats2020", "BraTS20_Training_001", "t1c", "t1") == "BraTS20_Training_001_t1ce.nii.gz"
    )
    assert synthesize.output_name("canonical", "p1", "t1c", "t2") == "p1-t1c.nii.gz"
    for bad in ("{case}.nii.gz", "{case}-{contrast}-{x}.nii.gz", "{case}/{contrast}.nii.gz", "{case}-{contrast}.png"):
        with pytest.raises(TfsynthError, match="--naming"):
            synthesize.output_name(bad, "p1", "t1c", "t2")
    with pytest.raises(TfsynthError, match="source contrast is not known"):
        synthesize.output_name("{case}_{contrast}_from_{source}.nii.gz", "p1", "t1c", None)
    assert synthesize.output_name("brats2023", "p1", "t1c", None) == "p1-t1c.nii.gz"


def test_case_ids_of_file_names():
    from pathlib import Path

    assert synthesize.case_id_of(Path("d/BraTS-GLI-00001-000-t2w.nii.gz")) == ("BraTS-GLI-00001-000", "t2")
    assert synthesize.case_id_of("BraTS20_Training_001_t1ce.nii") == ("BraTS20_Training_001", "t1c")
    assert synthesize.case_id_of("scan.nii.gz") == ("scan", None)
    assert synthesize.case_id_of("BraTS20_Training_001_seg.nii.gz") == ("BraTS20_Training_001_seg", None)


def test_canvas_crops_like_training_but_never_crops_brain():
    stack = np.zeros((2, 70, 66), np.float32)
    brain = np.zeros(stack.shape, bool)
    brain[:, 20:50, 20:46] = True
    stack[brain] = 0.5
    canvas, original = synthesize.to_canvas(stack, brain, 64)
    assert canvas.shape == (2, 64, 64) and original == (70, 66)
    from tfsynth.data.normalize import undo_crop_or_pad

    np.testing.assert_array_equal(undo_crop_or_pad(canvas, original), stack)
    brain[:, 1:69] = True  # the brain would not fit a 64 crop: leave the slices whole
    canvas, original = synthesize.to_canvas(stack, brain, 64)
    assert canvas is stack and original is None


def _argv(model, out, *extra):
    return ["--model", str(model), "--source", "t1", "--target", "t2", "--out", str(out), "--quiet", *map(str, extra)]


def test_bad_inputs_give_clear_errors_and_no_files(tiny_model, oblique_t1, tmp_path, capsys):
    out = tmp_path / "out"
    # Usage errors: exit 2, nothing created.
    bad_target = ["--model", str(tiny_model), "--source", "t1", "--out", str(out), str(oblique_t1), "--target", "pd"]
    assert synthesize.main(bad_target) == 2
    assert "unknown contrast 'pd'" in capsys.readouterr().err
    empty_model = tmp_path / "no_model"
    empty_model.mkdir()
    assert synthesize.main(_argv(empty_model, out, oblique_t1)) == 2
    assert "no SavedModel found" in capsys.readouterr().err
    assert synthesize.main(_argv(tiny_model, out, tmp_path / "missing.nii.gz")) == 2
    assert "no such file" in capsys.readouterr().err
    assert not out.exists()
    # Per-case errors: reported by name, exit 1, no output files at all.
    not_nifti = tmp_path / "notes_t1.nii.gz"
    not_nifti.write_text("this is not a NIfTI file")
    four_d = tmp_path / "series_t1.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((20, 20, 8, 2), np.float32), np.eye(4)), four_d)
    assert synthesize.main(_argv(tiny_model, out, not_nifti, four_d)) == 1
    err = capsys.readouterr().err
    assert "case notes" in err and "cannot read NIfTI header" in err
    assert "case series" in err and "3-D" in err
    assert list(out.iterdir()) == []
    # --fail-fast stops after the first failure.
    assert synthesize.main(_argv(tiny_model, out, not_nifti, oblique_t1) + ["--fail-fast"]) == 1
    assert list(out.iterdir()) == []
