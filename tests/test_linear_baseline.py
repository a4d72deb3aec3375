"""The per-target linear-regression baseline on several inputs: exact fits, subsets, persistence, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfsynth.baselines.linear_regression import LinearRegressionBaseline
from tfsynth.errors import TfsynthError


def subject(rng, shape=(3, 16, 16), contrasts=("t1", "t1c", "t2", "flair")):
    """Random inputs with flair = 0.1 + 0.2 t1 + 0.5 t2 exactly and t1c noisy, background 0 outside a square."""
    brain = np.zeros(shape, bool)
    brain[:, 3:13, 3:13] = True
    t1, t2, t1c = (rng.uniform(0.1, 0.9, shape) * brain for _ in range(3))
    images = {"t1": t1, "t1c": t1c, "t2": t2, "flair": (0.1 + 0.2 * t1 + 0.5 * t2) * brain}
    return {c: images[c] for c in contrasts}, brain


def flat(baseline, sources, target) -> list[float]:
    weights, intercept = baseline.coefficients(sources, target)
    return [*weights.values(), intercept]


def test_recovers_a_linear_relation_with_intercept():
    rng = np.random.default_rng(0)
    baseline = LinearRegressionBaseline()
    for _ in range(3):
        baseline.accumulate(*subject(rng))
    weights, intercept = baseline.coefficients(["t2", "t1"], "t2f")
    assert weights == pytest.approx({"t1": 0.2, "t2": 0.5}, abs=1e-9)
    assert intercept == pytest.approx(0.1, abs=1e-9)
    images, brain = subject(rng)
    predicted = baseline.predict({"t1": images["t1"], "t2": images["t2"]}, "flair", brain)
    np.testing.assert_allclose(predicted, images["flair"], atol=1e-6)
    assert np.all(predicted[~brain] == 0)


def test_matches_numpy_least_squares_on_the_brain_voxels():
    rng = np.random.default_rng(1)
    images, brain = subject(rng)
    baseline = LinearRegressionBaseline().fit_arrays([{**images, "brain": brain}])
    x = np.stack([images["t1c"][brain], images["flair"][brain], np.ones(brain.sum())], axis=1)
    expected = np.linalg.lstsq(x, images["t1"][brain], rcond=None)[0]
    weights, intercept = baseline.coefficients(["flair", "t1c"], "t1")
    np.testing.assert_allclose([weights["t1c"], weights["flair"], intercept], expected, atol=1e-10)


def test_each_fit_uses_only_subjects_with_all_its_contrasts_and_combine_is_exact():
    rng = np.random.default_rng(2)
    full = [subject(rng) for _ in range(2)]
    partial = subject(rng, contrasts=("t1", "t2"))
    one = LinearRegressionBaseline().fit_arrays([{**i, "brain": b} for i, b in full])
    both = LinearRegressionBaseline().fit_arrays([{**i, "brain": b} for i, b in [*full, partial]])
    # t1 -> t2 gains the partial subject's voxels; (t1, t1c) -> t2 cannot use them (no t1c).
    assert flat(both, ["t1", "t1c"], "t2") == pytest.approx(flat(one, ["t1", "t1c"], "t2"), abs=1e-12)
    assert flat(both, ["t1"], "t2") != pytest.approx(flat(one, ["t1"], "t2"), abs=1e-6)
    halves = [LinearRegressionBaseline().fit_arrays([{**i, "brain": b}]) for i, b in [*full, partial]]
    combined = LinearRegressionBaseline.combine(halves)
    for key, moment in both.moments.items():
        np.testing.assert_allclose(combined.moments[key], moment)


def test_default_brain_is_the_nonzero_voxels_and_outputs_are_clipped():
    baseline = LinearRegressionBaseline()
    a = np.zeros((1, 8, 8))
    a[0, 2:6, 2:6] = np.linspace(0.1, 1.0, 16).reshape(4, 4)
    baseline.accumulate({"t1": a, "t2": 2.0 * a})  # t2 = 2 t1 over the brain: predictions above 1 clip
    out = baseline.predict({"t1": a}, "t2")
    assert out.max() == 1.0 and out.dtype == np.float32
    assert np.all(out[a == 0] == 0)
    np.testing.assert_allclose(out[a > 0], np.clip(2 * a[a > 0], 0, 1), atol=1e-6)


def test_errors():
    rng = np.random.default_rng(3)
    baseline = LinearRegressionBaseline().fit_arrays([{**subject(rng, contrasts=("t1", "t2"))[0]}])
    with pytest.raises(TfsynthError, match="no training voxels with t1 and flair"):
        baseline.coefficients(["t1"], "flair")
    with pytest.raises(TfsynthError, match="the target t2 is among the inputs"):
        baseline.coefficients(["t1", "t2w"], "t2")
    with pytest.raises(TfsynthError, match="no input contrast"):
        baseline.predict({}, "t2")
    with pytest.raises(TfsynthError, match="unknown contrast"):
        baseline.coefficients(["pd"], "t2")
    with pytest.raises(TfsynthError, match="differ in shape"):
        baseline.accumulate({"t1": np.ones((2, 4, 4)), "t2": np.ones((2, 4, 5))})


def test_save_load_round_trip_and_bad_files(tmp_path):
    rng = np.random.default_rng(4)
    baseline = LinearRegressionBaseline().fit_arrays([{**i, "brain": b} for i, b in [subject(rng) for _ in range(2)]])
    path = baseline.save(tmp_path / "linear.json")
    loaded = LinearRegressionBaseline.load(path)
    assert flat(loaded, ["t1c", "t2"], "t1") == pytest.approx(flat(baseline, ["t1c", "t2"], "t1"))
    with pytest.raises(TfsynthError, match="not found"):
        LinearRegressionBaseline.load(tmp_path / "missing.json")
    (tmp_path / "garbage.json").write_text("{")
    with pytest.raises(TfsynthError, match="garbage.json: unreadable"):
        LinearRegressionBaseline.load(tmp_path / "garbage.json")
    (tmp_path / "lut.json").write_text(json.dumps({"format": "tfsynth-intensity-baseline", "format_version": 1}))
    with pytest.raises(TfsynthError, match="lut.json: not a tfsynth-linear-baseline v1 file"):
        LinearRegressionBaseline.load(tmp_path / "lut.json")
    values = baseline.to_dict()
    values["moments"]["t1+t1c+t2+flair"] = [[1.0]]
    (tmp_path / "shape.json").write_text(json.dumps(values))
    with pytest.raises(TfsynthError, match="must be a 5x5 matrix"):
        LinearRegressionBaseline.load(tmp_path / "shape.json")


def test_fit_prepared_uses_the_split(prepared_data, tmp_path):
    baseline = LinearRegressionBaseline().fit_prepared(prepared_data, "train")
    assert set(baseline.moments) == {"t1+t1c+t2+flair"}
    weights, _ = baseline.coefficients(["t1", "t1c", "t2"], "flair")
    assert set(weights) == {"t1", "t1c", "t2"}
    with pytest.raises(TfsynthError, match="not a prepared directory"):
        LinearRegressionBaseline().fit_prepared(tmp_path)
