"""Evaluation on the tiny phantom cohort with a tiny exported generator."""

from __future__ import annotations

import csv
import json
import re
import shutil

import numpy as np
import pytest

from tfsynth.commands import evaluate
from tfsynth.contrasts import CONTRASTS
from tfsynth.errors import TfsynthError
from tfsynth.evaluation.baseline_source import resolve_baseline
from tfsynth.evaluation.patients import load_brats_patients, load_prepared_patients
from tfsynth.evaluation.report import summary_markdown
from tfsynth.evaluation.run import evaluate_model
from tfsynth.evaluation.scoring import evaluate_patients, model_wins, summarize


@pytest.fixture(scope="module")
def tiny_model(tiny_saved_model):
    """A tiny untrained generator exported as a serving SavedModel (32x32 canvas)."""
    return tiny_saved_model(32)


def test_prepared_patients_group_slices_by_case(prepared_data):
    patients = load_prepared_patients(prepared_data, "test")
    assert len(patients) == 1
    patient = patients[0]
    assert set(patient.images) == set(CONTRASTS)
    n = len(patient.slice_indices)
    assert all(image.shape == (n, 32, 32) for image in patient.images.values())
    assert patient.brain.shape == (n, 32, 32) and patient.tumor is not None
    assert np.all(np.diff(patient.slice_indices) > 0)


def test_brats_folder_scores_the_slices_prepare_keeps_and_never_crops_brain(phantom_cohort, prepared_data):
    """The tiny cohort's brain (60x60 slices) does not fit the 32x32 canvas: ``prepare`` crops it (and
    evaluate says so); a BraTS folder keeps whole slices (and says so); both score the same slices."""
    from tfsynth.data.normalize import crop_or_pad

    prepared = {p.case_id: p for p in load_prepared_patients(prepared_data, "test")}
    case_id = next(iter(prepared))
    from_folder = {p.case_id: p for p in load_brats_patients(phantom_cohort, 32)}
    assert set(prepared) < set(from_folder)
    a, b = prepared[case_id], from_folder[case_id]
    np.testing.assert_array_equal(b.slice_indices, a.slice_indices)  # one slice-selection rule
    assert b.brain.shape[1:] == (60, 60) and b.images["t2"].shape == b.brain.shape
    np.testing.assert_allclose(crop_or_pad(b.images["t2"], 32), a.images["t2"], atol=1e-6)
    assert b.brain.sum() > a.brain.sum()  # the cropped brain voxels are scored from the folder
    assert any("does not fit the 32x32 canvas" in note for note in b.notes)
    assert any("prepare cropped" in note and "brain voxels" in note for note in a.notes)
    # With a canvas the brain fits in, the folder's slices are those of the canvas, no notes.
    fits = {p.case_id: p for p in load_brats_patients(phantom_cohort, 64)}[case_id]
    assert fits.brain.shape[1:] == (64, 64) and fits.notes == [] and fits.brain.sum() == b.brain.sum()


def test_a_brats_contrast_of_one_intensity_is_named(phantom_cohort, tmp_path):
    import nibabel as nib

    root = tmp_path / "cohort"
    shutil.copytree(phantom_cohort, root)
    flat = sorted(root.glob("*/*-t1c.nii.gz"))[0]
    image = nib.load(flat)
    data = np.asarray(image.dataobj)
    nib.save(nib.Nifti1Image(np.where(data != 0, 3, 0).astype(data.dtype), image.affine, image.header), flat)
    with pytest.raises(TfsynthError, match=f"^{re.escape(str(flat))}: brain intensities are constant"):
        load_brats_patients(root, 32)


def test_brats_folder_is_resampled_to_the_model_voxel_size(phantom_cohort):
    """The 4 mm cohort for a 2 mm model: twice the slices in each direction, a note, same brain volume."""
    native = load_brats_patients(phantom_cohort, None)[0]
    fine = load_brats_patients(phantom_cohort, None, voxel_size_mm=[2.0, 2.0, 2.0])[0]
    assert native.brain.shape[1:] == (60, 60) and fine.brain.shape[1:] == (120, 120)
    assert any("resampled from 4, 4, 4 mm to 2, 2, 2 mm" in note for note in fine.notes) and native.notes == []
    assert fine.brain.sum() == pytest.approx(8 * native.brain.sum(), rel=0.05)
    assert len(fine.slice_indices) == pytest.approx(2 * len(native.slice_indices), abs=3)


def test_summary_bolds_only_the_cells_the_model_wins():
    cell = {"std": 0.1, "n": 2}
    summary = {
        "model": {"brain": {"psnr": {"t1": {"t2": {"mean": 20.0, **cell}, "flair": {"mean": 15.0, **cell}}}}},
        "baseline": {"brain": {"psnr": {"t1": {"t2": {"mean": 18.0, **cell}, "flair": {"mean": 16.0, **cell}}}}},
        "identity": {"brain": {"psnr": {"t1": {"t2": {"mean": 10.0, **cell}, "flair": {"mean": 10.0, **cell}}}}},
    }
    info = {"model": "m", "data": "d", "data_kind": "k", "patients": 2, "patient_ids": ["a", "b"]}
    info.update(baseline="b", niqe_patch=96, created="now")
    table = summary_markdown(summary, info)
    model_row = next(line for line in table.splitlines() if line.startswith("| T1 | model |"))
    assert "**20.00 ± 0.10**" in model_row and "**15.00" not in model_row and "15.00 ± 0.10" in model_row
    assert "**" not in next(line for line in table.splitlines() if line.startswith("| T1 | baseline |"))
    summary["model"]["brain"]["nmae"] = {"t1": {"t2": {"mean": 0.05, **cell}}}  # lower is better
    summary["baseline"]["brain"]["nmae"] = {"t1": {"t2": {"mean": 0.04, **cell}}}
    assert not model_wins(summary, "brain", "nmae", "t1", "t2")
    assert model_wins(summary, "brain", "psnr", "t1", "t2")


def test_evaluate_model_on_prepared_data(prepared_data, tiny_model, tmp_path):
    """The library function under ``tfsynth evaluate``: the report, the notes it logs, and the
    command refusing to overwrite it."""
    out = tmp_path / "report"
    notes = []
    returned = evaluate_model(tiny_model, prepared_data, out, log=notes.append)
    assert any("prepare cropped" in note for note in notes)  # the tiny cohort does not fit 32x32
    assert json.loads((out / "summary.json").read_text())["info"]["data_kind"] == "prepared, test split"
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    methods = {r["method"] for r in rows}
    assert methods == {"model", "baseline", "identity"}
    pairs = {(r["source"], r["target"]) for r in rows}
    assert len(pairs) == 12
    assert {r["region"] for r in rows} == {"whole", "brain", "tumor", "nontumor"}
    for row in rows:
        for metric in ("nmae", "psnr", "ssim", "vif"):
            assert np.isfinite(float(row[metric])), row
        if row["region"] in ("whole", "brain"):
            assert np.isfinite(float(row["niqe"])), row
    summary = json.loads((out / "summary.json").read_text())["summary"]
    assert summary["model"]["brain"]["psnr"] == returned["model"]["brain"]["psnr"]
    for method in ("model", "baseline", "identity"):
        table = summary[method]["brain"]["psnr"]
        assert sorted(table) == sorted(CONTRASTS) and all(len(row) == 3 for row in table.values())
    # The baseline (fitted on the train split) must beat the identity on a phantom.
    base = np.mean([c["mean"] for row in summary["baseline"]["brain"]["psnr"].values() for c in row.values()])
    ident = np.mean([c["mean"] for row in summary["identity"]["brain"]["psnr"].values() for c in row.values()])
    assert base > ident
    markdown = (out / "summary.md").read_text()
    assert "### PSNR (dB)" in markdown and "| T1 | baseline |" in markdown and "train split" in markdown
    figures = {p.name for p in (out / "figures").iterdir()}
    assert "t1_to_t2.png" in figures and "box_psnr.png" in figures and len(figures) == 12 + 5
    assert (out / "baseline.json").is_file()
    # No temporary directories are left beside the report.
    assert [p.name for p in tmp_path.iterdir()] == ["report"]
    # A second run refuses to overwrite.
    assert evaluate.main(["--model", str(tiny_model), "--data", str(prepared_data), "--out", str(out), "--quiet"]) == 2


def test_leave_one_out_baseline_for_a_bare_folder(phantom_cohort, prepared_data, tmp_path):
    """Without training data each patient's baseline is fitted on the other patients only (the
    patient's own voxels would make the baseline look better than it is)."""
    from tfsynth.baselines.lookup_table import IntensityMappingBaseline

    patients = load_brats_patients(phantom_cohort, 32)[:3]
    baselines, description = resolve_baseline(None, phantom_cohort, tmp_path, patients)
    assert "leave-one-patient-out" in description
    assert set(baselines) == {p.case_id for p in patients}
    for held_out in patients:
        others = IntensityMappingBaseline()
        for patient in patients:
            if patient is not held_out:
                others.accumulate(patient.images, patient.brain)
        np.testing.assert_array_equal(baselines[held_out.case_id].counts, others.counts)
        np.testing.assert_allclose(baselines[held_out.case_id].sums, others.sums)
    baselines, description = resolve_baseline(str(prepared_data), phantom_cohort, tmp_path, patients)
    assert "train split" in description
    train_fit = IntensityMappingBaseline().fit_prepared(prepared_data, "train")
    assert all(np.array_equal(b.counts, train_fit.counts) for b in baselines.values())


def test_bad_inputs_are_clear_errors(prepared_data, tiny_model, tmp_path, capsys):
    out = tmp_path / "report"
    empty = tmp_path / "empty_model"
    empty.mkdir()
    assert evaluate.main(["--model", str(empty), "--data", str(prepared_data), "--out", str(out), "--quiet"]) == 2
    assert "error:" in capsys.readouterr().err
    missing = tmp_path / "nope"
    assert evaluate.main(["--model", str(tiny_model), "--data", str(missing), "--out", str(out), "--quiet"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not out.exists()
    # The arguments are checked before the model is loaded (which takes seconds).
    with pytest.raises(TfsynthError, match="--max-patients must be >= 1"):
        evaluate_model(empty, prepared_data, out, max_patients=0)


class IdentitySynthesizer:
    """Returns its input: the model rows must equal the identity rows."""

    def synthesize_normalized(self, images, source, target):
        return np.asarray(images, np.float32)


class OracleSynthesizer:
    """Returns the patient's real target slices: a perfect model."""

    def __init__(self, patient):
        self.patient = patient

    def synthesize_normalized(self, images, source, target):
        stack = self.patient.images[source].reshape(len(self.patient.slice_indices), -1)
        rows = [int(np.flatnonzero((stack == image.reshape(-1)).all(axis=1))[0]) for image in images]
        return self.patient.images[target][rows]


@pytest.fixture(scope="module")
def test_patient_and_baseline(prepared_data):
    from tfsynth.baselines.lookup_table import IntensityMappingBaseline

    (patient,) = load_prepared_patients(prepared_data, "test")
    return patient, {patient.case_id: IntensityMappingBaseline().fit_prepared(prepared_data, "train")}


def _by_key(rows, method):
    return {(r["source"], r["target"], r["region"]): r for r in rows if r["method"] == method}


def test_an_oracle_scores_perfectly(test_patient_and_baseline):
    patient, baselines = test_patient_and_baseline
    rows, _ = evaluate_patients(OracleSynthesizer(patient), [patient], baselines)
    model = _by_key(rows, "model")
    assert len({(s, t) for s, t, _ in model}) == 12 and {"brain", "tumor"} <= {r for *_, r in model}
    for key, row in model.items():
        assert row["nmae"] == 0.0 and row["psnr"] == float("inf"), key
        assert row["ssim"] == pytest.approx(1.0, abs=1e-6) and row["vif"] == pytest.approx(1.0, abs=1e-6), key
    identity = _by_key(rows, "identity")
    assert all(np.isfinite(r["psnr"]) and r["nmae"] > 0 for r in identity.values())


def test_an_identity_synthesizer_scores_as_the_identity_rows(test_patient_and_baseline):
    patient, baselines = test_patient_and_baseline
    rows, _ = evaluate_patients(IdentitySynthesizer(), [patient], baselines)
    model, identity = _by_key(rows, "model"), _by_key(rows, "identity")
    assert set(model) == set(identity) and len(model) >= 12 * 3
    for key in model:
        for metric in ("nmae", "psnr", "ssim", "vif", "niqe"):
            np.testing.assert_equal(model[key][metric], identity[key][metric], err_msg=f"{key} {metric}")
    # and the per-pair summary of one patient is those values
    summary = summarize(rows)
    cell = summary["model"]["brain"]["psnr"]["t1"]["t2"]
    assert cell["n"] == 1 and cell["mean"] == identity[("t1", "t2", "brain")]["psnr"]
    # VIF, unlike PSNR, is not symmetric in its images: it tells t1 -> t2 from t2 -> t1.
    assert summary["model"]["brain"]["vif"]["t1"]["t2"]["mean"] == identity[("t1", "t2", "brain")]["vif"]
    assert identity[("t1", "t2", "brain")]["vif"] != identity[("t2", "t1", "brain")]["vif"]
