"""Missing-contrast completion of BraSyn-layout folders: names, grid, values, per-case errors."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from tfsynth.commands import synthesize
from tfsynth.contrasts import CONTRASTS
from tfsynth.data.brats import find_cases
from tfsynth.data.normalize import percentile_normalize
from tfsynth.errors import TfsynthError
from tfsynth.synthesis import completion


class MeanCompleter:
    """Stands in for `tfsynth.synthesis.local.Synthesizer`: the target is the mean of the given inputs."""

    def __init__(self, metadata=None, fail_after: int | None = None):
        self.metadata = metadata or {}
        self.calls: list[tuple[tuple[str, ...], str, tuple[int, ...]]] = []
        self.fail_after = fail_after

    def complete_normalized(self, images01, target):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("model failed")
        names = tuple(images01)
        self.calls.append((names, target, images01[names[0]].shape))
        assert target not in names
        return np.mean([images01[name] for name in names], axis=0)


SUFFIX = {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f"}


@pytest.fixture()
def brasyn(phantom_cohort, tmp_path):
    """Factory ``{case index: [contrasts to delete]} -> folder``: a copy of the phantom cohort with files removed."""

    def make(drop: dict[int, list[str]]):
        root = tmp_path / "in"
        shutil.copytree(phantom_cohort, root)
        folders = sorted(p for p in root.iterdir() if p.is_dir())
        for index, contrasts in drop.items():
            for contrast in contrasts:
                next(folders[index].glob(f"*-{SUFFIX[contrast]}.nii.gz")).unlink()
        return root

    return make


def expected_mean(folder, missing: str) -> np.ndarray:
    """What `MeanCompleter` must give on the input grid without canvas or resampling."""
    volumes = {
        c: np.asarray(nib.load(next(folder.glob(f"*-{SUFFIX[c]}.nii.gz"))).dataobj, np.float32)
        for c in CONTRASTS
        if c != missing
    }
    brain = np.any([v != 0 for v in volumes.values()], axis=0)
    mean = np.mean([percentile_normalize(v)[0] for v in volumes.values()], axis=0)
    return np.clip(mean, 0, 1) * brain


def test_target_and_name_follow_the_missing_file(brasyn):
    root = brasyn({0: ["flair"], 1: [], 2: ["t1", "t2"]})
    cases = find_cases(root)
    assert completion.completion_target(cases[0]) == "flair"
    assert completion.completion_name(cases[0], "flair") == f"{cases[0].case_id}-t2f.nii.gz"
    with pytest.raises(TfsynthError, match=rf"case {cases[1].case_id}: all four contrasts are present"):
        completion.completion_target(cases[1])
    with pytest.raises(TfsynthError, match=rf"case {cases[2].case_id}: 2 contrasts missing \(t1, t2\)"):
        completion.completion_target(cases[2])


def test_completes_on_the_input_grid_with_an_input_header(brasyn, tmp_path):
    root = brasyn({0: ["flair"], 1: ["t1c"], 2: ["t1"], 3: ["t2"]})
    fake = MeanCompleter({"image_size": None})
    result = completion.complete_directory(fake, root, tmp_path / "out", resample=False)
    assert result.failures == []
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(
        f"{folder.name}-{SUFFIX[c]}.nii.gz" for folder, c in zip(folders, ["flair", "t1c", "t1", "t2"], strict=True)
    )
    for folder, missing in zip(folders, ["flair", "t1c", "t1", "t2"], strict=True):
        written = nib.load(tmp_path / "out" / f"{folder.name}-{SUFFIX[missing]}.nii.gz")
        reference = nib.load(next(folder.glob("*-seg.nii.gz")))
        assert written.shape == reference.shape
        np.testing.assert_array_equal(written.affine, reference.affine)
        assert written.get_data_dtype() == np.float32
        assert written.header["descrip"].tobytes().startswith(f"tfsynth: {missing} synthesised from".encode())
        np.testing.assert_allclose(written.get_fdata(), expected_mean(folder, missing), atol=1e-5)
    # Every call got the three present contrasts, never the target.
    assert {len(names) for names, _, _ in fake.calls} == {3}


def test_canvas_and_batches(brasyn, tmp_path):
    root = brasyn({0: ["t2"]})
    fake = MeanCompleter({"image_size": 64})
    case = find_cases(root)[0]
    path = completion.complete_case(fake, case, tmp_path / "x.nii.gz", resample=False, batch_size=5)
    assert {shape[1:] for _, _, shape in fake.calls} == {(64, 64)}  # slices placed on the model's canvas
    assert max(shape[0] for _, _, shape in fake.calls) == 5
    np.testing.assert_allclose(nib.load(path).get_fdata(), expected_mean(case.folder, "t2"), atol=1e-5)


def test_resampling_to_the_model_voxel_size_comes_back_to_the_input_grid(brasyn, tmp_path):
    root = brasyn({0: ["t1c"]})
    fake = MeanCompleter({"voxel_size_mm": [2.0, 2.0, 2.0]})
    case = find_cases(root)[0]
    path = completion.complete_case(fake, case, tmp_path / "x.nii.gz")
    assert fake.calls[0][2][1:] == (120, 120)  # 4 mm phantom at the model's 2 mm
    written = nib.load(path)
    expected = expected_mean(case.folder, "t1c")
    assert written.shape == expected.shape
    assert np.all(written.get_fdata()[expected == 0] == 0)
    assert np.corrcoef(written.get_fdata().ravel(), expected.ravel())[0, 1] > 0.9


def test_bad_cases_are_reported_and_the_others_go_on(brasyn, tmp_path, monkeypatch, capsys):
    root = brasyn({0: ["flair"], 1: [], 2: ["t1", "t2"], 3: ["t1c"]})
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    truncated = next(folders[3].glob("*-t2w.nii.gz"))
    truncated.write_bytes(truncated.read_bytes()[:300])
    fake = MeanCompleter()
    monkeypatch.setattr("tfsynth.synthesis.local.load_synthesizer", lambda path: fake)
    out = tmp_path / "out"
    code = synthesize.main(["--complete", str(root), "--model", "unused", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == [f"{folders[0].name}-t2f.nii.gz"]  # nothing else, no temp files
    assert f"case {folders[1].name}: all four contrasts are present" in err
    assert f"case {folders[2].name}: 2 contrasts missing (t1, t2)" in err
    assert f"case {folders[3].name}: {truncated}" in err
    assert "3 case(s) failed" in err


def test_an_input_of_one_intensity_is_named_in_its_case_s_error(brasyn, tmp_path, monkeypatch, capsys):
    root = brasyn({0: ["flair"], 1: ["t1"]})
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    flat = next(folders[1].glob("*-t2w.nii.gz"))
    image = nib.load(flat)
    data = np.asarray(image.dataobj)
    nib.save(nib.Nifti1Image(np.where(data != 0, 7, 0).astype(data.dtype), image.affine, image.header), flat)
    monkeypatch.setattr("tfsynth.synthesis.local.load_synthesizer", lambda path: MeanCompleter())
    out = tmp_path / "out"
    code = synthesize.main(["--complete", str(root), "--model", "unused", "--out", str(out), "--quiet"])
    assert code == 1
    assert f"case {folders[1].name}: {flat}: brain intensities are constant" in capsys.readouterr().err
    assert f"{folders[1].name}-t1n.nii.gz" not in {p.name for p in out.iterdir()}


def test_a_model_failure_leaves_no_file_and_existing_outputs_are_kept_without_overwrite(brasyn, tmp_path, capsys):
    root = brasyn({0: ["flair"], 1: ["t2"], 2: ["t1"], 3: ["t1c"]})
    out = tmp_path / "out"
    result = completion.complete_directory(MeanCompleter(fail_after=1), root, out, batch_size=4)
    assert len(result.failures) == 4  # the first call succeeds, every later one fails
    assert "RuntimeError: model failed" in result.failures[-1][1]
    assert list(out.iterdir()) == []
    completion.complete_directory(MeanCompleter(), root, out, batch_size=64)
    assert len(list(out.iterdir())) == 4
    again = completion.complete_directory(MeanCompleter(), root, out, batch_size=64)
    assert again.failures == [] and again.written == [] and len(again.skipped) == 4
    assert "already written, skipped (pass --overwrite to replace)" in capsys.readouterr().err
    assert completion.complete_directory(MeanCompleter(), root, out, overwrite=True).failures == []


def test_fail_fast_and_usage_errors(brasyn, tmp_path, monkeypatch, capsys):
    root = brasyn({0: [], 1: ["t2"]})
    result = completion.complete_directory(MeanCompleter(), root, tmp_path / "out", fail_fast=True)
    assert len(result.failures) == 1 and result.written == []
    monkeypatch.setattr("tfsynth.synthesis.local.load_synthesizer", lambda path: MeanCompleter())
    assert synthesize.main(["--complete", str(tmp_path / "nope"), "--model", "m", "--out", str(tmp_path / "o")]) == 2
    assert "not a directory" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert synthesize.main(["--complete", str(root), "--model", "m", "--out", str(tmp_path / "file")]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert (
        synthesize.main(["--complete", str(root), "--model", "m", "--out", str(tmp_path / "o"), "--batch-size", "0"])
        == 2
    )
    one_input_model = MeanCompleter()
    one_input_model.completes = False
    monkeypatch.setattr("tfsynth.synthesis.local.load_synthesizer", lambda path: one_input_model)
    assert synthesize.main(["--complete", str(root), "--model", "m", "--out", str(tmp_path / "o")]) == 2
    assert "this model has no completion signature" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_stray_files_are_ignored_with_a_warning_and_duplicates_fail_their_case(brasyn, tmp_path):
    root = brasyn({0: ["t2"], 1: ["flair"]})
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    stray = folders[1] / "brainmask.nii.gz"
    stray.write_bytes(b"")
    t1 = next(folders[0].glob("*-t1n.nii.gz"))
    duplicate = t1.with_name(t1.name.removesuffix(".gz"))
    nib.save(nib.load(t1), duplicate)
    lines, warnings = [], []
    result = completion.complete_directory(
        MeanCompleter(), root, tmp_path / "out", report=lines.append, warn=warnings.append
    )
    assert len(warnings) == 1 and stray.name in warnings[0] and "ignored 1 NIfTI file(s)" in warnings[0]
    assert [p.name for p in result.written] == [f"{folders[1].name}-t2f.nii.gz"]  # the stray's case goes on
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{folders[1].name}-t2f.nii.gz"]
    # The duplicate fails its case (nothing written for it); the stray fails nothing.
    duplicates = [line for line in lines if "has two t1 files" in line]
    assert len(duplicates) == 1 and str(duplicate) in duplicates[0]
    assert len(result.failures) == len(lines) and not any(str(stray) in line for line in lines)


def test_an_output_folder_inside_the_input_is_not_read_and_the_input_itself_is_refused(brasyn, tmp_path):
    root = brasyn({0: ["t2"]})
    runs = [completion.complete_directory(MeanCompleter(), root, root / "out", overwrite=True) for _ in range(2)]
    # A re-run sees the same cases (the others have nothing missing), not its own output.
    assert runs[0].failures == runs[1].failures and len(runs[1].written) == 1
    assert not any("also has files" in reason for _, reason in runs[1].failures)
    with pytest.raises(TfsynthError, match="is the input folder itself"):
        completion.complete_directory(MeanCompleter(), root, root / ".")


def test_inputs_stored_in_another_orientation_come_back_in_theirs(brasyn, tmp_path):
    root = brasyn({0: ["t2"]})
    case = find_cases(root)[0]
    for path in case.files.values():  # re-store as RAS with a transposed voxel order
        image = nib.load(path)
        ras = nib.as_closest_canonical(image)
        data = np.transpose(np.asarray(ras.dataobj), (1, 0, 2))
        affine = ras.affine[:, [1, 0, 2, 3]]
        nib.save(nib.Nifti1Image(data, affine), path)
    path = completion.complete_case(MeanCompleter(), find_cases(root)[0], tmp_path / "x.nii.gz", resample=False)
    written = nib.load(path)
    np.testing.assert_array_equal(written.affine, nib.load(case.files["t1"]).affine)
    np.testing.assert_allclose(written.get_fdata(), expected_mean(case.folder, "t2"), atol=1e-5)


def test_output_name_keeps_the_naming_era_and_extension(tmp_path):
    from tfsynth.data.brats import Case

    old = Case(
        "BraTS20_Training_001",
        tmp_path,
        {c: tmp_path / f"x_{c}.nii.gz" for c in ("t1", "t2", "flair")},
        None,
        "brats2020",
    )
    assert completion.completion_name(old, "t1c") == "BraTS20_Training_001_t1ce.nii.gz"
    plain = Case(
        "BraTS-GLI-00001-000", tmp_path, {c: tmp_path / f"x-{c}.nii" for c in ("t1", "t1c", "t2")}, None, "brats2023"
    )
    assert completion.completion_name(plain, "flair") == "BraTS-GLI-00001-000-t2f.nii"


def test_a_request_on_a_case_folder_lists_stray_files_once_and_completes_the_case(brasyn, tmp_path, capsys):
    from tfsynth.clients.volumes import write_completion_output

    class MeanClient:  # stands in for the gRPC / REST client: the mean of the inputs
        description = "a test client"

        def complete(self, images, target, normalized=True):
            return np.mean(list(images.values()), axis=0)

    root = brasyn({0: ["flair"]})
    case = sorted(p for p in root.iterdir() if p.is_dir())[0]
    strays = [case / f"{case.name}_gtv.nii.gz", case / f"{case.name}-t1n_brainmask.nii.gz", case / "mask.nii"]
    for stray in strays:
        stray.write_bytes(b"")
    written = write_completion_output(MeanClient(), case, tmp_path / "out")
    assert written.name == f"{case.name}-t2f.nii.gz" and written.is_file()
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "ignored 3 NIfTI file(s)" in warnings[0]
    assert all(stray.name in warnings[0] for stray in strays)
