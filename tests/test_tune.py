"""Keras Tuner sweeps: a resumable two-trial sweep under MirroredStrategy whose best config trains."""

from __future__ import annotations

import json
import math

import keras_tuner as kt
import pytest
from helpers import TINY as TINY_RUN

from tfsynth.commands import tune
from tfsynth.config import Config, LossWeights
from tfsynth.errors import TfsynthError
from tfsynth.tuning.results import read_results, sort_rows, write_results
from tfsynth.tuning.space import N_CRITIC_CHOICES, WEIGHT_RANGES, weights_from_hp
from tfsynth.tuning.sweep import run_sweep

pytestmark = pytest.mark.slow

# The training tests' tiny model, with a shorter run and the default n_critic.
TINY = {
    "data": TINY_RUN["data"],
    "model": TINY_RUN["model"],
    "train": {"batch_size": 4, "epochs": 1, "steps_per_epoch": 2},
}
# n_critic is held at 1: each value of n_critic is a new train_step trace, the slow part here.
SWEEP = dict(epochs=1, steps_per_epoch=2, tuner="random", objective="val_psnr", fixed={"n_critic": 1})


@pytest.fixture(scope="module")
def sweep(prepared_data, tmp_path_factory, two_cpu_strategy):
    """A one-trial sweep, then the same sweep resumed with max_trials=2.

    Returns (out_dir, first result, second result, builds during the second run, trial 0 mtimes).
    """

    import tfsynth.models

    out = tmp_path_factory.mktemp("sweep") / "out"
    strategy = two_cpu_strategy
    base = Config.from_dict(TINY)
    first = run_sweep(prepared_data, out, base=base, max_trials=1, strategy=strategy, **SWEEP)
    trial0 = out / "tuner" / "trial_0"
    before = {p.name: p.stat().st_mtime_ns for p in trial0.iterdir()}

    builds = []
    real_build = tfsynth.models.build_gan

    def counting_build(config, strategy=None):
        builds.append(config)
        return real_build(config, strategy)

    tfsynth.models.build_gan = counting_build
    try:
        second = run_sweep(prepared_data, out, base=base, max_trials=2, strategy=strategy, **SWEEP)
    finally:
        tfsynth.models.build_gan = real_build
    after = {p.name: p.stat().st_mtime_ns for p in trial0.iterdir()}
    return out, first, second, builds, (before, after)


def test_sweep_writes_every_trial_and_resumes(sweep):
    out, first, second, builds, (before, after) = sweep
    assert [row["trial"] for row in first.rows] == ["0"]
    assert sorted(row["trial"] for row in second.rows) == ["0", "1"]
    # Resuming ran exactly one new trial, built under the strategy, and left trial 0 alone.
    assert len(builds) == 1
    assert "checkpoint.weights.h5" in before and before == after
    for row in second.rows:
        assert row["status"] == "COMPLETED"
        assert all(math.isfinite(row[name]) for name in ("val_l1", "val_psnr", "val_ssim", "seconds"))
        assert row["n_critic"] == 1 and row["epochs"] == 1
        for name, (low, high) in WEIGHT_RANGES.items():
            assert low <= row[name] <= high
    # Best first; the markdown table has the same rows.
    assert second.rows[0]["val_psnr"] >= second.rows[1]["val_psnr"]
    assert second.best_trial == second.rows[0]["trial"]
    table = (out / "results.md").read_text().splitlines()
    assert table[2].startswith("| trial | status | lambda_adv | lambda_cls")
    assert len([line for line in table if line.startswith("| 0 |") or line.startswith("| 1 |")]) == 2
    assert not list(out.glob(".tmp-*"))


def test_best_config_is_the_best_trial_on_the_base_config(sweep, prepared_data):

    out, _, second, _, _ = sweep
    text = (out / "best_config.json").read_text()
    assert set(json.loads(text)) == {"data", "model", "loss", "train"}
    config = Config.from_json_file(out / "best_config.json")
    best = second.rows[0]
    assert config.loss.lambda_pix == pytest.approx(best["lambda_pix"]) and config.loss.n_critic == 1
    # The sweep budget trained the trials; the best config keeps the base's training schedule.
    assert config.model == Config.from_dict(TINY).model and config.train == Config.from_dict(TINY).train


def test_resume_with_other_settings_is_refused(sweep, prepared_data):
    out = sweep[0]
    settings = (out / "sweep.json").read_text()
    with pytest.raises(TfsynthError, match="started with different objective"):
        run_sweep(prepared_data, out, base=Config.from_dict(TINY), max_trials=3, **{**SWEEP, "objective": "val_l1"})
    assert (out / "sweep.json").read_text() == settings


def test_bad_input_is_one_clear_error(prepared_data, tmp_path, capsys):
    base = Config.from_dict(TINY)
    with pytest.raises(TfsynthError, match="not a prepared directory"):
        run_sweep(tmp_path, tmp_path / "out", base=base)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(TfsynthError, match="not a sweep directory"):
        run_sweep(prepared_data, foreign, base=base)
    with pytest.raises(TfsynthError, match="prepared at image_size 32, but data.image_size is 64"):
        run_sweep(prepared_data, tmp_path / "out", base=Config.from_dict({**TINY, "data": {"image_size": 64}}))
    with pytest.raises(TfsynthError, match="cannot fix 'lambda_foo'"):
        run_sweep(prepared_data, tmp_path / "out", base=base, fixed={"lambda_foo": 1.0})
    with pytest.raises(TfsynthError, match="max_trials must be >= 1"):
        run_sweep(prepared_data, tmp_path / "out", base=base, max_trials=0)
    assert not (tmp_path / "out").exists()

    assert tune.main(["--data", str(prepared_data), "--out", str(tmp_path / "out"), "--fix", "n_critic"]) == 2
    assert tune.main(["--data", str(prepared_data), "--out", str(tmp_path / "out"), "--fix", "n_critic=0"]) == 2
    err = capsys.readouterr().err
    assert "error: --fix 'n_critic': expected NAME=NUMBER" in err
    assert "error: n_critic must be an integer >= 1, got 0" in err
    assert not (tmp_path / "out").exists()


def test_weights_are_drawn_on_log_scales_around_the_base():
    hp = kt.HyperParameters()
    weights = weights_from_hp(
        hp,
        LossWeights(lambda_adv=0.001, lambda_cls=1000.0, lambda_pix=10.0, lambda_mse=100.0, n_critic=4),
        fixed={"lambda_gp": 10},
    )
    # Defaults are the base weights clipped into range (lambda_adv 0.001 -> 0.01); n_critic 4 is not a choice -> 5.
    assert weights == LossWeights(
        lambda_adv=0.01, lambda_gp=10.0, lambda_cls=10.0, lambda_rec=10.0, lambda_pix=10.0, lambda_mse=100.0, n_critic=5
    )
    space = {p.name: p for p in hp.space}
    assert isinstance(space["lambda_gp"], kt.engine.hyperparameters.Fixed)
    for name in ("lambda_adv", "lambda_cls", "lambda_rec", "lambda_pix", "lambda_mse"):
        assert space[name].sampling == "log"
        assert (space[name].min_value, space[name].max_value) == WEIGHT_RANGES[name]
    assert list(space["n_critic"].values) == list(N_CRITIC_CHOICES)


def test_results_table_round_trip_sorts_by_objective(tmp_path):
    def row(trial, l1, status="COMPLETED"):
        return {
            "trial": trial,
            "status": status,
            "lambda_adv": 0.1,
            "lambda_cls": 1.0,
            "lambda_rec": 10.0,
            "lambda_pix": 10.0,
            "lambda_mse": 100.0,
            "lambda_gp": 10.0,
            "n_critic": 5,
            "epochs": 2,
            "val_l1": l1,
            "val_psnr": 20.0,
            "val_ssim": 0.5,
            "seconds": 3.25,
        }

    rows = [row("0", 0.2), row("1", None, status="FAILED"), row("2", 0.1), row("3", float("nan"))]
    ordered = sort_rows(rows, "val_l1")
    assert [r["trial"] for r in ordered] == ["2", "0", "1", "3"]
    write_results(ordered, tmp_path, "val_l1")
    back = read_results(tmp_path)
    assert [r["trial"] for r in back] == ["2", "0", "1", "3"]
    assert back[0] == ordered[0] and back[2]["val_l1"] is None and math.isnan(back[3]["val_l1"])
    assert "(val_l1, minimised)" in (tmp_path / "results.md").read_text()
