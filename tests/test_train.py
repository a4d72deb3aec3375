"""`tfsynth.training.train`: the run directory, resume after kill -9, bad input, the phantom default."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from helpers import TINY

from tfsynth.commands import train as train_command
from tfsynth.config import Config
from tfsynth.errors import TfsynthError
from tfsynth.training import train as train_module


def tiny_config(**train) -> Config:
    values = json.loads(json.dumps(TINY))
    values["train"].update(train)
    return Config.from_dict(values)


@pytest.fixture(scope="module")
def finished_run(prepared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    summary = train_module.train(
        tiny_config(), prepared_data, out, strategy=tf.distribute.get_strategy(), checkpoint_every=2, verbose=0
    )
    return out, summary


def test_run_directory_contents(finished_run):
    out, summary = finished_run
    assert Config.from_json_file(out / "config.json").to_dict() == tiny_config().to_dict()
    assert summary["steps"] == 6
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    for name in ("d_loss", "gp", "g_pix", "val_psnr", "val_ssim"):
        assert name in rows[0]
    latest = tf.train.latest_checkpoint(str(out / "checkpoints"))
    assert latest.endswith("ckpt-6")
    assert "val_psnr" in (out / "report.md").read_text()
    assert (out / "saved_model" / "saved_model.pb").is_file()


def test_tensorboard_has_scalars_and_image_grids(finished_run):
    out, _ = finished_run
    tags = set()
    for event_file in (out / "logs").rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags.update(value.tag for value in event.summary.value)
    assert {"epoch_g_pix", "epoch_gp", "epoch_d_cls"} <= tags
    assert "source | synthesized | real target" in tags


def _files(directory):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(directory.iterdir()) if p.is_file()}


def test_same_command_on_a_finished_run_does_nothing_more(finished_run, prepared_data):
    """It resumes at the last step and trains no further: no checkpoint rewritten, no history row
    added, the report left as it was."""
    out, _ = finished_run
    checkpoints, history = _files(out / "checkpoints"), (out / "history.csv").read_text()
    report = (out / "report.md").read_text()
    lines = []
    summary = train_module.train(
        tiny_config(),
        prepared_data,
        out,
        strategy=tf.distribute.get_strategy(),
        export=False,
        verbose=0,
        log=lines.append,
    )
    assert summary["steps"] == 6
    assert any(line.startswith(f"resuming {out} at step 6") for line in lines), lines
    assert _files(out / "checkpoints") == checkpoints
    assert (out / "history.csv").read_text() == history
    assert (out / "report.md").read_text() == report


def test_report_states_every_setting_and_final_metric(finished_run):
    out, summary = finished_run
    report = (out / "report.md").read_text()
    config = tiny_config()
    for key, value in dataclasses.asdict(config.loss).items():
        assert f"{key} {value}" in report, key
    t = config.train
    assert f"{t.epochs} epochs x {t.steps_per_epoch} steps, batch {t.batch_size}" in report
    assert f"generator steps done: {summary['steps']}" in report and f"seed {t.seed}" in report
    for name, value in summary["final"].items():
        assert f"| {name} | {value:.4f} |" in report, name
    assert "val_psnr" in summary["final"] and "g_pix" in summary["final"]


class Killed(Exception):
    """Stands in for ``kill -9`` between two checkpoints."""


def test_resume_after_a_kill_equals_an_uninterrupted_run(finished_run, prepared_data, tmp_path, monkeypatch):
    """Killed at step 3 (last checkpoint at step 2) and run again, the run ends with the same weights
    and optimizer state as the uninterrupted one: same batches in the same order, same step count."""
    from tfsynth.training import callbacks

    class DiesAtStep3(callbacks.StepCheckpoint):
        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(batch, logs)
            if int(self.step.numpy()) == 3:
                raise Killed

    out = tmp_path / "run"
    kwargs = dict(strategy=tf.distribute.get_strategy(), checkpoint_every=2, export=False, verbose=0)
    with monkeypatch.context() as patch:
        patch.setattr(callbacks, "StepCheckpoint", DiesAtStep3)
        with pytest.raises(Killed):
            train_module.train(tiny_config(), prepared_data, out, **kwargs)
    assert tf.train.latest_checkpoint(str(out / "checkpoints")).endswith("ckpt-2")
    lines = []
    assert train_module.train(tiny_config(), prepared_data, out, log=lines.append, **kwargs)["steps"] == 6
    assert any(line.startswith(f"resuming {out} at step 2") for line in lines), lines

    reference, _ = finished_run
    resumed = tf.train.load_checkpoint(str(out / "checkpoints"))
    uninterrupted = tf.train.load_checkpoint(str(reference / "checkpoints"))
    names = [name for name, _ in tf.train.list_variables(str(reference / "checkpoints"))]
    assert any("optimizer" in name for name in names) and len(names) > 20
    for name in names:
        if name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH"):
            continue
        want, got = uninterrupted.get_tensor(name), resumed.get_tensor(name)
        if isinstance(want, bytes):  # a saved tf.data iterator: position in the same stream
            assert got == want, name
        else:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_different_config_on_an_existing_run_is_refused(finished_run, prepared_data):
    out, _ = finished_run
    with pytest.raises(TfsynthError, match="different config.*train.batch_size"):
        train_module.train(tiny_config(batch_size=2), prepared_data, out)


def _cli(*args):
    return [sys.executable, "-m", "tfsynth.train", *map(str, args)]


def test_kill_9_then_restart_continues_from_the_checkpoint(prepared_data, tmp_path):
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(TINY))
    out = tmp_path / "run"
    command = _cli(
        "--data",
        prepared_data,
        "--out",
        out,
        "--config",
        config_file,
        "--epochs",
        1,
        "--steps-per-epoch",
        60,
        "--checkpoint-every",
        3,
        "--no-export",
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while tf.train.latest_checkpoint(str(out / "checkpoints")) is None:
            assert process.poll() is None, "training ended before its first checkpoint"
            assert time.time() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed_at = int(tf.train.latest_checkpoint(str(out / "checkpoints")).rsplit("-", 1)[1])
    assert 0 < killed_at < 60

    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resuming {out} at step {killed_at}" in result.stdout
    summary = json.loads(result.stdout[result.stdout.index("{\n") :])
    assert summary["steps"] == 60  # not 60 + killed_at: it continued, did not restart


@pytest.mark.parametrize(
    "change, message",
    [
        ({"data": {"image_size": 30}}, "image_size must be a multiple of 4"),
        ({"loss": {"lambda_pix": -1}}, "loss.lambda_pix has an invalid value"),
        ({"train": {"epochz": 3}}, "unknown key config.train.epochz"),
        ({"data": {"image_size": 64}}, "prepared at image_size 32"),
    ],
)
def test_bad_config_is_one_clear_error_before_any_work(prepared_data, tmp_path, capsys, change, message):
    config_file = tmp_path / "bad.json"
    values = json.loads(json.dumps(TINY))
    for section, entries in change.items():
        values[section].update(entries)
    config_file.write_text(json.dumps(values))
    out = tmp_path / "run"
    assert train_command.main(["--data", str(prepared_data), "--out", str(out), "--config", str(config_file)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_image_size_comes_from_the_manifest_unless_the_config_sets_one(prepared_data, tmp_path):
    """prepared_data is at 32x32 while the default config says 80: --data alone must not be refused."""
    import argparse

    from tfsynth.config import Config

    assert Config().data.image_size != 32
    flags = dict(data=str(prepared_data), config=None, epochs=None, steps_per_epoch=None)
    flags.update(batch_size=None, precision=None, seed=None)
    assert train_command.build_config(argparse.Namespace(**flags)).data.image_size == 32
    config_file = tmp_path / "no_size.json"
    config_file.write_text(json.dumps({"train": {"epochs": 1}}))
    flags["config"] = str(config_file)
    assert train_command.build_config(argparse.Namespace(**flags)).data.image_size == 32
    config_file.write_text(json.dumps({"data": {"image_size": 64}}))
    assert train_command.build_config(argparse.Namespace(**flags)).data.image_size == 64  # the user's choice


def test_preset_names_the_base_config_and_excludes_a_config_file(prepared_data, tmp_path, capsys):
    import argparse

    flags = dict(data=str(prepared_data), config=None, preset="completion", epochs=3, steps_per_epoch=None)
    flags.update(batch_size=None, precision=None, seed=None)
    config = train_command.build_config(argparse.Namespace(**flags))
    assert config.model.any_subset and config.train.epochs == 3  # the preset, then the flags
    flags["preset"] = None
    assert not train_command.build_config(argparse.Namespace(**flags)).model.any_subset
    config_file = tmp_path / "c.json"
    config_file.write_text("{}")
    out = tmp_path / "run"
    argv = ["--data", str(prepared_data), "--out", str(out), "--config", str(config_file), "--preset", "completion"]
    assert train_command.main(argv) == 2
    assert "--config or --preset" in capsys.readouterr().err
    assert not out.exists()


def test_data_dir_without_manifest_is_refused(tmp_path, capsys):
    (tmp_path / "notprepared").mkdir()
    out = tmp_path / "run"
    assert train_command.main(["--data", str(tmp_path / "notprepared"), "--out", str(out)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    assert not out.exists()


def test_no_data_builds_the_phantom_cohort_in_the_run_and_reuses_it(tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "PHANTOM_SUBJECTS", 4)
    monkeypatch.setattr(train_module, "PHANTOM_VOXEL_MM", 4.0)
    out = tmp_path / "run"
    config = tiny_config(epochs=1, steps_per_epoch=1)
    train_module.train(config, None, out, strategy=tf.distribute.get_strategy(), export=False, verbose=0)
    manifest = out / "data" / "manifest.json"
    assert json.loads(manifest.read_text())["image_size"] == 32
    stamp = manifest.stat().st_mtime_ns
    # What a second run of the same command asks for: the cohort it already built.
    assert train_module.ensure_phantom_data(out, config, log=print) == out / "data"
    assert manifest.stat().st_mtime_ns == stamp


def test_any_subset_run_trains_on_subsets_and_exports_completion(prepared_data, tmp_path, monkeypatch):
    """What train hands the pipeline and the exporter; that an any-subset generator exports the
    completion signatures is tests/test_completion.py's job."""
    from tfsynth.data import pipeline
    from tfsynth.savedmodel import io as savedmodel_io

    asked, exported = [], []
    make_dataset = pipeline.make_dataset
    monkeypatch.setattr(
        pipeline,
        "make_dataset",
        lambda *a, **k: asked.append((k.get("subset_sizes"), k.get("tumor_weight", 1.0))) or make_dataset(*a, **k),
    )
    monkeypatch.setattr(
        savedmodel_io, "write_saved_model", lambda generator, path, metadata: exported.append(generator)
    )
    values = tiny_config(epochs=1, steps_per_epoch=2).to_dict()
    values["model"]["any_subset"] = True
    values["data"]["subset_sizes"] = [0.2, 0.3, 0.5]
    values["loss"]["tumor_weight"] = [3.0, 3.0, 1.0]  # the training batches carry a weight map; validation's do not
    train_module.train(Config.from_dict(values), prepared_data, tmp_path / "run", verbose=0)
    assert ([0.2, 0.3, 0.5], [3.0, 3.0, 1.0]) in asked  # the training stream; validation stays one to one
    assert len(exported) == 1 and exported[0].any_subset
