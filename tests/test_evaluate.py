"""Evaluation on the tiny phantom cohort with a tiny exported generator."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tfsynth import evaluate
from tfsynth.contrasts import CONTRASTS


@pytest.fixture(scope="module")
def tiny_model(tiny_saved_model):
    """A tiny untrained generator exported as a serving SavedModel (32x32 canvas)."""
    return tiny_saved_model(32)


def test_prepared_patients_group_slices_by_case(prepared_data):
    patients = evaluate.load_prepared_patients(prepared_data, "test")
    assert len(patients) == 1
    patient = patients[0]
    assert set(patient.images) == set(CONTRASTS)
    n = len(patient.slice_indices)
    assert all(image.shape == (n, 32, 32) for image in patient.images.values())
    assert patient.brain.shape == (n, 32, 32) and patient.tumor is not None
    assert np.all(np.diff(patient.slice_indices) > 0)


def test_brats_folder_matches_prepared_slices(phantom_cohort, prepared_data):
    prepared = {p.case_id: p for p in evaluate.load_prepared_patients(prepared_data, "test")}
    case_id = next(iter(prepared))
    from_folder = {p.case_id: p for p in evaluate.load_brats_patients(phantom_cohort, 32)}
    assert set(prepared) < set(from_folder)
    a, b = prepared[case_id], from_folder[case_id]
    # prepare keeps slices with enough brain; every kept slice must be identical here.
    rows = np.searchsorted(b.slice_indices, a.slice_indices)
    np.testing.assert_array_equal(b.slice_indices[rows], a.slice_indices)
    np.testing.assert_allclose(b.images["t2"][rows], a.images["t2"], atol=1e-6)


def test_evaluate_cli_on_prepared_data(prepared_data, tiny_model, tmp_path):
    out = tmp_path / "report"
    code = evaluate.main(["--model", str(tiny_model), "--data", str(prepared_data), "--out", str(out), "--quiet"])
    assert code == 0
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
    patients = evaluate.load_brats_patients(phantom_cohort, 32)[:2]
    baselines, description = evaluate.resolve_baseline(None, phantom_cohort, tmp_path, patients)
    assert "leave-one-patient-out" in description
    a, b = (baselines[p.case_id] for p in patients)
    assert a is not b and a.counts.sum() > 0
    baselines, description = evaluate.resolve_baseline(str(prepared_data), phantom_cohort, tmp_path, patients)
    assert "train split" in description


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
