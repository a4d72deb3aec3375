"""The BraSyn evaluation protocol: scaling and scores, subsets, summaries, the report and the command."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tfsynth.baselines.linear_regression import LinearRegressionBaseline
from tfsynth.commands import evaluate
from tfsynth.errors import TfsynthError
from tfsynth.evaluation import completion as evaluate_completion
from tfsynth.evaluation.brasyn import SCORES, brasyn_scale, brasyn_scores, input_subsets
from tfsynth.evaluation.brasyn_report import summarize_completion, summary_markdown
from tfsynth.evaluation.patients import Patient, load_prepared_patients


class MeanCompleter:
    """Stands in for `tfsynth.synthesis.local.Synthesizer`: the target is the mean of the given inputs."""

    def __init__(self):
        self.calls = []

    def complete_normalized(self, images01, target):
        self.calls.append((tuple(images01), target))
        return np.mean(list(images01.values()), axis=0)


def test_brasyn_scale_uses_the_image_own_percentiles_floored_at_zero():
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 5, (4, 20, 20))
    scaled = brasyn_scale(image)
    hi = np.percentile(image, 99.5)
    assert scaled.min() == 0 and scaled.max() == 1
    np.testing.assert_allclose(scaled, np.clip(image, 0, hi) / hi)  # lower percentile < 0 -> 0
    np.testing.assert_allclose(brasyn_scale(3 * image + 0.0), scaled)
    assert np.all(brasyn_scale(np.full((2, 8, 8), 7.0)) == 0)


def test_brasyn_scores_regions_and_invariance_to_scale():
    rng = np.random.default_rng(1)
    real = np.zeros((2, 32, 32))
    real[:, 6:26, 6:26] = rng.uniform(0.2, 1.0, (2, 20, 20))
    brain = real > 0
    tumor = np.zeros(real.shape, np.uint8)
    tumor[:, 10:16, 10:16] = 2
    perfect = brasyn_scores(real, 4.0 * real, brain, tumor)  # each image is scaled on its own
    assert perfect["psnr"] == np.inf and perfect["nmae"] == 0
    assert perfect["ssim_tumor"] == pytest.approx(1) and perfect["ssim_healthy"] == pytest.approx(1)
    noisy = real + brain * rng.normal(0, 0.4, real.shape) * (tumor > 0)  # errors only inside the tumour
    scores = brasyn_scores(real, noisy, brain, tumor)
    assert scores["ssim_tumor"] < 0.7 and scores["ssim_healthy"] > scores["ssim_tumor"] + 0.2
    assert set(scores) == set(SCORES)
    no_seg = brasyn_scores(real, noisy, brain, None)
    assert np.isnan(no_seg["ssim_tumor"]) and no_seg["ssim_healthy"] == no_seg["ssim_brain"]


def test_input_subsets():
    four = ["t1", "t1c", "t2", "flair"]
    assert input_subsets(four, "t2", [1, 2, 3]) == [
        ("t1",),
        ("t1c",),
        ("flair",),
        ("t1", "t1c"),
        ("t1", "flair"),
        ("t1c", "flair"),
        ("t1", "t1c", "flair"),
    ]
    assert input_subsets(four, "t1", [3]) == [("t1c", "t2", "flair")]
    assert input_subsets(["t1", "t2"], "t1", [2, 3]) == []


def test_summary_picks_the_best_single_input_per_score():
    rows = []
    for patient, shift in (("a", 0.0), ("b", 1.0)):
        for inputs, psnr, nmae in (("t1", 20, 0.1), ("t2", 25, 0.2), ("t1+t2+t1c", 30, 0.05)):
            row = {"patient": patient, "target": "flair", "inputs": inputs, "n_inputs": inputs.count("+") + 1}
            row.update({"method": "model", "psnr": psnr + shift, "nmae": nmae, "ssim_tumor": float("nan")})
            row.update({"ssim_healthy": 0.8, "ssim_brain": 0.8})
            rows.append(row)
    summary = summarize_completion(rows)
    assert summary["best_single"]["flair"]["psnr"]["inputs"] == "t2"
    assert summary["best_single"]["flair"]["nmae"]["inputs"] == "t1"  # lower is better
    assert summary["by_size"]["model"]["flair"]["1"]["psnr"]["mean"] == pytest.approx(23)
    assert summary["by_size"]["model"]["flair"]["3"]["psnr"]["std"] == pytest.approx(np.std([30, 31], ddof=1))
    assert "ssim_tumor" not in summary["by_size"]["model"]["flair"]["1"]  # all NaN: no cell


def test_report_says_which_input_sizes_no_patient_had_and_marks_one_patient_cells():
    # A BraSyn folder: every case lacks one contrast, so at most two inputs besides a dropped target.
    rows = []
    for patient, inputs in (("a", "t1"), ("b", "t1"), ("b", "t1+t2")):
        row = {"patient": patient, "target": "flair", "inputs": inputs, "n_inputs": inputs.count("+") + 1}
        row.update({"method": "model", "psnr": 20.0 + len(patient), "nmae": 0.1, "ssim_tumor": 0.5})
        row.update({"ssim_healthy": 0.8, "ssim_brain": 0.8})
        rows.append(row)
    info = {"model": "m", "data": "d", "data_kind": "BraTS folder", "patients": 2, "patient_ids": ["a", "b"]}
    info.update({"baseline": "train", "input_sizes": [1, 2, 3], "created": "now"})
    text = summary_markdown(summarize_completion(rows), info)
    assert "no patient has the 4 contrasts that 3 input(s) and a dropped target need" in text
    assert "## 2 input(s): model vs" in text and "21.00 (1 patient)" in text and "21.00 ± 0.00" in text


@pytest.fixture(scope="module")
def patients(prepared_data):
    return load_prepared_patients(prepared_data, "test")


def test_report_scores_every_subset_against_the_linear_baseline(patients, prepared_data, tmp_path):
    linear = LinearRegressionBaseline().fit_prepared(prepared_data, "train")
    fake = MeanCompleter()
    info = {"model": "fake", "data": str(prepared_data), "data_kind": "prepared", "baseline": "train"}
    out = tmp_path / "report"
    summary = evaluate_completion.evaluate_completion_report(
        fake, patients, out, {p.case_id: linear for p in patients}, info
    )
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(patients) * 4 * 7 * 2
    assert {r["method"] for r in rows} == {"model", "linear"}
    assert {tuple(names) for names, _ in fake.calls} >= {("t1", "t1c", "t2"), ("flair",)}
    assert all(target not in names for names, target in fake.calls)
    # The linear rows are the baseline's own predictions on the same inputs.
    patient = patients[0]
    expected = brasyn_scores(
        patient.images["t2"],
        linear.predict({c: patient.images[c] for c in ("t1", "flair")}, "t2", patient.brain),
        patient.brain,
        patient.tumor,
    )
    row = next(r for r in rows if r["method"] == "linear" and r["target"] == "t2" and r["inputs"] == "t1+flair")
    assert float(row["psnr"]) == pytest.approx(expected["psnr"])
    text = (out / "summary.md").read_text()
    assert "## 3 input(s): model vs linear regression vs the model's best single input" in text
    assert "| FLAIR | SSIM, tumour |" in text and "1 input(s) | 2 input(s) | 3 input(s)" in text
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "complete_flair.png",
        "complete_t1.png",
        "complete_t1c.png",
        "complete_t2.png",
        "quality_vs_inputs.png",
    ]
    assert LinearRegressionBaseline.load(out / "linear_baseline.json").moments.keys() == linear.moments.keys()
    assert json.loads((out / "summary.json").read_text())["info"]["input_sizes"] == [1, 2, 3]
    assert set(summary["best_single"]) == {"t1", "t1c", "t2", "flair"}
    with pytest.raises(TfsynthError, match="already exists"):
        evaluate_completion.evaluate_completion_report(fake, patients, out, {}, info)
    with pytest.raises(TfsynthError, match="--input-sizes must be numbers from 1 to 3"):
        evaluate_completion.evaluate_completion_report(fake, patients, tmp_path / "r2", {}, info, sizes=[4])
    assert not (tmp_path / "r2").exists()


def test_nothing_to_score_is_an_error(tmp_path):
    lonely = Patient("p", {"t1": np.ones((1, 16, 16))}, np.ones((1, 16, 16), bool), None, np.array([0]))
    with pytest.raises(TfsynthError, match="no patient has a target and 1/2/3 other contrast"):
        evaluate_completion.evaluate_completion_report(MeanCompleter(), [lonely], tmp_path / "r", {}, {})


def test_linear_baseline_sources(patients, prepared_data, tmp_path):
    per_patient, source = evaluate_completion.resolve_linear_baseline(None, tmp_path, tmp_path, patients + patients)
    assert "leave-one-patient-out" in source
    with pytest.raises(TfsynthError, match="only one patient"):
        evaluate_completion.resolve_linear_baseline(None, tmp_path, tmp_path, patients[:1])
    fitted, source = evaluate_completion.resolve_linear_baseline(str(prepared_data), tmp_path, tmp_path, patients)
    assert source == f"the train split of {prepared_data}"
    path = fitted[patients[0].case_id].save(tmp_path / "linear.json")
    loaded, source = evaluate_completion.resolve_linear_baseline(str(path), tmp_path, tmp_path, patients)
    assert source == str(path)
    from tfsynth.baselines.lookup_table import IntensityMappingBaseline

    lut = IntensityMappingBaseline().fit_prepared(prepared_data).save(tmp_path / "lut.json")
    with pytest.raises(TfsynthError, match="not a tfsynth-linear-baseline"):
        evaluate_completion.resolve_linear_baseline(str(lut), tmp_path, tmp_path, patients)


def test_evaluate_command_protocol_brasyn(prepared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("tfsynth.synthesis.local.load_synthesizer", lambda path: MeanCompleter())
    out = tmp_path / "report"
    argv = ["--model", "m", "--data", str(prepared_data), "--out", str(out), "--quiet", "--protocol", "brasyn"]
    assert evaluate.main([*argv, "--input-sizes", "3"]) == 0
    with open(out / "metrics.csv") as handle:
        assert {row["n_inputs"] for row in csv.DictReader(handle)} == {"3"}
    assert "model, 3 input(s): mean PSNR over 4 targets" in capsys.readouterr().out
    assert evaluate.main([*argv, "--input-sizes", "0", "--overwrite"]) == 2
    assert "--input-sizes must be numbers from 1 to 3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.main([*argv[:-1], "cyclegan"])
    defaults = evaluate.build_parser().parse_args(argv[:6])
    assert defaults.protocol == "paper" and defaults.input_sizes == [1, 2, 3]
