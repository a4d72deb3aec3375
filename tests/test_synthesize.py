"""NIfTI-to-NIfTI synthesis: exact grid round trip, naming, canvas handling, bad inputs."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from tfsynth.commands import synthesize
from tfsynth.commands.arguments import paths_after_targets
from tfsynth.errors import TfsynthError
from tfsynth.synthesis.batch import synthesize_files
from tfsynth.synthesis.volumes import (
    SourceOptions,
    VolumeSynthesizer,
    case_id_of,
    output_name,
    synthesize_case,
    to_canvas,
)


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
    # Existing outputs are not overwritten silently: the written case is skipped with a note.
    assert synthesize.main(argv + ["--naming", "{case}_{contrast}_from_{source}.nii.gz", str(inputs / good)]) == 0
    assert f"note: case {good}: {good}_t1c_from_t2.nii.gz already written, skipped" in capsys.readouterr().err


def test_stray_files_are_listed_once_and_a_bad_case_fails_alone(tiny_model, phantom_cohort, tmp_path, capsys):
    inputs = tmp_path / "cases"
    cases = sorted(phantom_cohort.iterdir())[:3]
    for case in cases:
        (inputs / case.name).mkdir(parents=True)
        for file in case.iterdir():
            (inputs / case.name / file.name).symlink_to(file)
    # Files of no contrast in two cases (BraTS-MEN-RT's target volume, a brain mask) ...
    strays = [inputs / cases[0].name / f"{cases[0].name}_gtv.nii.gz", inputs / cases[1].name / "t1_brainmask.nii.gz"]
    for stray in strays:
        stray.symlink_to(next(cases[0].glob("*-t1n.nii.gz")))
    # ... and a case that cannot be used: two T2 files.
    t2 = next((inputs / cases[2].name).glob("*-t2w.nii.gz"))
    nib.save(nib.load(t2), t2.with_name(t2.name.removesuffix(".gz")))
    out = tmp_path / "out"
    argv = ["--model", str(tiny_model), "--source", "t2", "--target", "t1c", "--out", str(out), "--quiet", str(inputs)]
    assert synthesize.main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    ignored = [line for line in err if "ignored 2 NIfTI file(s)" in line]
    assert len(ignored) == 1 and ignored[0].startswith("warning: ") and all(s.name in ignored[0] for s in strays)
    assert sum(f"case {cases[2].name}: " in line and "has two t2 files" in line for line in err) == 1
    assert sorted(p.name for p in out.iterdir()) == [f"{cases[0].name}-t1c.nii.gz", f"{cases[1].name}-t1c.nii.gz"]
    assert err[-1] == f"1 case(s) failed: {cases[2].name}"


def test_synthesize_files_reports_each_case_and_fail_fast_stops_at_the_first_failure(
    tiny_model, phantom_cohort, tmp_path
):
    """The library under the command: which case wrote which files, which failed and why."""
    inputs = tmp_path / "cases"
    cases = sorted(phantom_cohort.iterdir())[:2]
    for case in cases:
        (inputs / case.name).mkdir(parents=True)
        for file in case.iterdir():
            (inputs / case.name / file.name).symlink_to(file)
    first = inputs / cases[0].name
    next(first.glob("*-t2w.nii.gz")).unlink()  # the first case (in order) cannot be synthesised
    errors = []

    def run(out, **options):
        return synthesize_files(
            tiny_model, [inputs], "t2", ["t1c", "flair"], out, on_error=lambda *e: errors.append(e), **options
        )

    done = run(tmp_path / "out")
    assert list(done.failures) == [cases[0].name] and "has no t2 file" in done.failures[cases[0].name]
    assert errors == [(cases[0].name, done.failures[cases[0].name])]
    written = done.written[cases[1].name]
    assert [p.name for p in written] == [f"{cases[1].name}-t1c.nii.gz", f"{cases[1].name}-t2f.nii.gz"]
    assert all(p.is_file() for p in written) and list(done.written) == [cases[1].name]
    stopped = run(tmp_path / "stopped", fail_fast=True)
    assert list(stopped.failures) == [cases[0].name] and stopped.written == {}
    with pytest.raises(TfsynthError, match="is the source contrast"):
        synthesize_files(tiny_model, [inputs], "t2", ["t2w"], tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_output_names():
    assert output_name("brats2023", "BraTS-GLI-00001-000", "flair", "t1") == "BraTS-GLI-00001-000-t2f.nii.gz"
    assert output_name("brats2020", "BraTS20_Training_001", "t1c", "t1") == "BraTS20_Training_001_t1ce.nii.gz"
    assert output_name("canonical", "p1", "t1c", "t2") == "p1-t1c.nii.gz"
    for bad in ("{case}.nii.gz", "{case}-{contrast}-{x}.nii.gz", "{case}/{contrast}.nii.gz", "{case}-{contrast}.png"):
        with pytest.raises(TfsynthError, match="--naming"):
            output_name(bad, "p1", "t1c", "t2")
    with pytest.raises(TfsynthError, match="source contrast is not known"):
        output_name("{case}_{contrast}_from_{source}.nii.gz", "p1", "t1c", None)
    assert output_name("brats2023", "p1", "t1c", None) == "p1-t1c.nii.gz"


def test_case_ids_of_file_names():
    from pathlib import Path

    assert case_id_of(Path("d/BraTS-GLI-00001-000-t2w.nii.gz")) == ("BraTS-GLI-00001-000", "t2")
    assert case_id_of("BraTS20_Training_001_t1ce.nii") == ("BraTS20_Training_001", "t1c")
    assert case_id_of("scan.nii.gz") == ("scan", None)
    assert case_id_of("BraTS20_Training_001_seg.nii.gz") == ("BraTS20_Training_001_seg", None)


def test_canvas_crops_like_training_but_never_crops_brain():
    stack = np.zeros((2, 70, 66), np.float32)
    brain = np.zeros(stack.shape, bool)
    brain[:, 20:50, 20:46] = True
    stack[brain] = 0.5
    canvas, original = to_canvas(stack, brain, 64)
    assert canvas.shape == (2, 64, 64) and original == (70, 66)
    from tfsynth.data.normalize import undo_crop_or_pad

    np.testing.assert_array_equal(undo_crop_or_pad(canvas, original), stack)
    brain[:, 1:69] = True  # the brain would not fit a 64 crop: leave the slices whole
    canvas, original = to_canvas(stack, brain, 64)
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


def _layouts_of(path, tmp_path):
    """The same phantom head stored as BraTS LPS, as RAS (nibabel.as_closest_canonical) and with
    the axial axis first; returns {name: file}."""
    image = nib.load(path)
    data = np.asarray(image.dataobj, dtype=np.float32)
    files = {}
    variants = {
        "lps": image,
        "ras": nib.as_closest_canonical(image),
        "axialfirst": nib.Nifti1Image(
            np.ascontiguousarray(np.transpose(data, (2, 0, 1))), image.affine[:, [2, 0, 1, 3]]
        ),
    }
    for name, variant in variants.items():
        files[name] = tmp_path / "layouts" / name / f"{name}_t1.nii.gz"
        files[name].parent.mkdir(parents=True)
        variant = nib.Nifti1Image(np.asarray(variant.dataobj, dtype=np.float32), variant.affine)
        variant.set_qform(variant.affine, code=1)
        variant.set_sform(variant.affine, code=1)
        nib.save(variant, files[name])
    return files


def test_the_same_head_in_any_orientation_gives_the_same_synthesis(tiny_model, phantom_cohort, tmp_path):
    files = _layouts_of(sorted(phantom_cohort.glob("*/*-t1n.nii.gz"))[0], tmp_path)
    results = {}
    for name, path in files.items():
        out = tmp_path / "out" / name
        assert synthesize.main(_argv(tiny_model, out, path)) == 0
        written = nib.load(out / f"{name}-t2w.nii.gz")
        source = nib.load(path)
        assert written.shape == source.shape
        np.testing.assert_array_equal(written.affine, source.affine)  # on the input's own grid
        results[name] = nib.as_closest_canonical(written).get_fdata(dtype=np.float32)
    assert np.any(results["lps"] > 0)
    np.testing.assert_array_equal(results["ras"], results["lps"])
    np.testing.assert_array_equal(results["axialfirst"], results["lps"])


class _Recorder:
    """A stand-in network that returns its input and records the slice stacks it was given."""

    def __init__(self, metadata):
        self.metadata = metadata
        self.calls = []

    def synthesize_normalized(self, images, sources, targets):
        self.calls.append(images.shape)
        return images


def test_inputs_are_resampled_to_the_model_voxel_size_and_back(phantom_cohort, tmp_path, capsys):
    """A 2 mm volume for a 4 mm model is synthesised on the 4 mm grid (the scale the model learnt)
    and written back on the 2 mm grid; --no-resample synthesises 2 mm slices and warns."""
    from scipy import ndimage

    source = nib.load(sorted(phantom_cohort.glob("*/*-t1n.nii.gz"))[0])  # 60 x 60 x 39 at 4 mm
    coarse = np.asarray(source.dataobj, dtype=np.float32)
    fine = ndimage.zoom(coarse, 2, order=1, grid_mode=True, mode="nearest") * ndimage.zoom(coarse > 0, 2, order=0)
    affine = source.affine @ np.diag([0.5, 0.5, 0.5, 1.0])
    affine[:3, 3] = (source.affine @ [-0.25, -0.25, -0.25, 1])[:3]
    path = tmp_path / "fine_t1.nii.gz"
    nib.save(nib.Nifti1Image(fine.astype(np.float32), affine), path)
    metadata = {"image_size": 64, "voxel_size_mm": [4.0, 4.0, 4.0]}
    outputs = {}
    for resample in (True, False):
        recorder = _Recorder(metadata)
        engine = VolumeSynthesizer(recorder, batch_size=1000)
        out = {"t2": tmp_path / f"out-{resample}.nii.gz"}
        options = SourceOptions(resample=resample)
        synthesize_case(engine, path, "t1", ["t2"], out, options)
        outputs[resample] = nib.load(out["t2"])
        assert outputs[resample].shape == (120, 120, 78)
        np.testing.assert_array_equal(outputs[resample].affine, nib.load(path).affine)
        shape = recorder.calls[0]
        if resample:
            assert shape[1:] == (64, 64) and 30 <= shape[0] <= 39  # 4 mm slices on the 64 canvas
        else:
            assert shape[1:] == (120, 120) and shape[0] > 60  # 2 mm slices, the brain does not fit 64
    assert "--no-resample is set" in capsys.readouterr().err
    # The identity "network" returns the normalised input: resampling down and back keeps it close.
    from tfsynth.data.normalize import percentile_normalize

    expected = percentile_normalize(fine)[0]
    got = outputs[True].get_fdata()
    assert np.corrcoef(got[fine > 0], expected[fine > 0])[0, 1] > 0.95
    np.testing.assert_allclose(outputs[False].get_fdata(), expected, atol=1e-6)


def test_nonzero_background_is_refused_or_handled_by_an_option(tiny_model, phantom_cohort, tmp_path, capsys):
    source = nib.load(sorted(phantom_cohort.glob("*/*-t1n.nii.gz"))[0])
    data = np.asarray(source.dataobj, dtype=np.float32)
    padded = np.where(data != 0, data, -32768).astype(np.float32)  # DICOM-conversion padding
    path = tmp_path / "padded_t1.nii.gz"
    nib.save(nib.Nifti1Image(padded, source.affine), path)
    out = tmp_path / "out"
    assert synthesize.main(_argv(tiny_model, out, path)) == 1
    err = capsys.readouterr().err
    assert "padded_t1.nii.gz: its background is not 0" in err and "-32768" in err and "--brain-mask" in err
    assert list(out.iterdir()) == []
    assert synthesize.main(_argv(tiny_model, out, path) + ["--background", "-32768"]) == 0
    with_value = nib.load(out / "padded-t2w.nii.gz").get_fdata()
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image((data != 0).astype(np.uint8), source.affine), mask)
    masked_out = tmp_path / "masked"
    assert synthesize.main(_argv(tiny_model, masked_out, path) + ["--brain-mask", str(mask)]) == 0
    np.testing.assert_array_equal(nib.load(masked_out / "padded-t2w.nii.gz").get_fdata(), with_value)
    assert np.all(with_value[data == 0] == 0) and np.count_nonzero(with_value) > 0.5 * np.count_nonzero(data)
    # The header says what the file is.
    descrip = nib.load(out / "padded-t2w.nii.gz").header["descrip"].tobytes().rstrip(b"\0").decode()
    assert descrip.startswith("tfsynth: t2 synthesised from t1 by tfsynth ")
    # Usage errors: both options, or one mask for several inputs.
    assert synthesize.main(_argv(tiny_model, out, path) + ["--background", "0", "--brain-mask", str(mask)]) == 2
    assert "not both" in capsys.readouterr().err
    assert synthesize.main(_argv(tiny_model, out, path, phantom_cohort) + ["--brain-mask", str(mask)]) == 2
    assert "--brain-mask belongs to one input volume" in capsys.readouterr().err


def test_both_target_forms_are_accepted_also_before_the_inputs():
    parser = synthesize.build_parser()
    common = ["--model", "m", "--source", "t1", "--out", "o"]
    for argv in (
        [*common, "in.nii.gz", "--target", "t2", "flair"],
        [*common, "in.nii.gz", "--target", "t2", "--target", "flair"],
        [*common, "--target", "t2", "flair", "in.nii.gz", "b.nii"],
        [*common, "--target", "t2", "--target", "flair", "in.nii.gz", "b.nii"],
    ):
        args = parser.parse_args(argv)
        inputs = paths_after_targets(args, "inputs")
        assert args.target == ["t2", "flair"], argv
        assert inputs[0] == "in.nii.gz" and inputs[-1] in ("in.nii.gz", "b.nii"), argv
