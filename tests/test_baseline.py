"""The intensity-mapping baseline: recovers known mappings, persists exactly, fits prepared data."""

from __future__ import annotations

import numpy as np
import pytest

from tfsynth.baselines.lookup_table import IntensityMappingBaseline
from tfsynth.data.tfrecord import iter_prepared_slices
from tfsynth.errors import TfsynthError


def _subject(rng, shape=(3, 32, 32)):
    t1 = rng.uniform(0.05, 1.0, shape).astype(np.float32)
    t1[:, :4] = 0  # background
    brain = t1 > 0
    t2 = np.where(brain, 1.0 - t1, 0.0)  # inverse contrast
    flair = np.where(brain, (t1 - 0.5) ** 2 * 4, 0.0)  # non-monotone
    return {"t1": t1, "t2": t2, "flair": flair, "brain": brain}


def test_recovers_nonlinear_mappings_and_zero_background():
    rng = np.random.default_rng(0)
    baseline = IntensityMappingBaseline().fit_arrays([_subject(rng) for _ in range(3)])
    test = _subject(rng)
    predicted = baseline.predict(test["t1"], "t1n", "t2w")  # BraTS 2023 aliases work
    assert np.abs(predicted - test["t2"]).max() < 0.01
    predicted = baseline.predict(test["t1"], "t1", "flair", brain=test["brain"])
    assert np.abs(predicted - test["flair"])[test["brain"]].mean() < 0.01
    assert np.all(predicted[:, :4] == 0)
    assert predicted.dtype == np.float32 and predicted.shape == test["t1"].shape


def test_conditional_mean_and_empty_bins():
    baseline = IntensityMappingBaseline(bins=4)
    # Source in bin 0 twice (targets 0.2 and 0.4), bin 3 once (target 1.0); bins 1, 2 empty.
    baseline.accumulate({"t1": np.array([0.1, 0.1, 0.9]), "t2": np.array([0.2, 0.4, 1.0])}, np.ones(3, bool))
    centres, values = baseline.table("t1", "t2")
    np.testing.assert_allclose(centres, [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_allclose(values, [0.3, 0.3 + 0.7 / 3, 0.3 + 1.4 / 3, 1.0])  # interpolated across the gap
    assert baseline.has_pair("t2", "t1") and not baseline.has_pair("t1", "flair")
    with pytest.raises(TfsynthError, match="no training voxels with both t1 and flair"):
        baseline.predict(np.zeros((2, 2)), "t1", "flair")
    with pytest.raises(TfsynthError, match="unknown contrast"):
        baseline.predict(np.zeros((2, 2)), "t1", "pd")


def test_save_load_round_trip_and_combine(tmp_path):
    rng = np.random.default_rng(1)
    subjects = [_subject(rng) for _ in range(2)]
    first = IntensityMappingBaseline().fit_arrays(subjects[:1])
    second = IntensityMappingBaseline().fit_arrays(subjects[1:])
    both = IntensityMappingBaseline().fit_arrays(subjects)
    combined = IntensityMappingBaseline.combine([first, second])
    np.testing.assert_allclose(combined.sums, both.sums)
    path = both.save(tmp_path / "baseline.json")
    loaded = IntensityMappingBaseline.load(path)
    x = rng.uniform(0, 1, (2, 8, 8))
    np.testing.assert_array_equal(loaded.predict(x, "t2", "t1"), both.predict(x, "t2", "t1"))
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(TfsynthError, match="bad.json"):
        IntensityMappingBaseline.load(tmp_path / "bad.json")
    with pytest.raises(TfsynthError, match="not found"):
        IntensityMappingBaseline.load(tmp_path / "missing.json")


def test_fit_prepared_uses_train_split(prepared_data, tmp_path):
    baseline = IntensityMappingBaseline().fit_prepared(prepared_data, "train")
    slices = list(iter_prepared_slices(prepared_data, "train"))
    assert {s["case_id"] for s in slices} and all(s["images"].shape == (32, 32, 4) for s in slices)
    brain_voxels = sum(int((s["brain"] > 0).sum()) for s in slices)
    assert baseline.counts[0, 1].sum() == brain_voxels  # every brain voxel of t1 -> t1c counted
    # On its own training slices the table beats predicting the mean target (it explains variance).
    images = np.stack([s["images"] for s in slices])
    brain = np.stack([s["brain"] > 0 for s in slices])
    predicted = baseline.predict(images[..., 0], "t1", "t2", brain)
    target = images[..., 2]
    assert np.mean((predicted - target)[brain] ** 2) < 0.8 * np.var(target[brain])
    with pytest.raises(TfsynthError, match="not a prepared directory"):
        IntensityMappingBaseline().fit_prepared(tmp_path)
