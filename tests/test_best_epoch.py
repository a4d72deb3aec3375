"""The exported weights are the best epoch's by validation PSNR (`BestEpoch`, ``train.export_epoch``)."""

from __future__ import annotations

import json
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import TINY

from tfsynth.config import Config
from tfsynth.errors import TfsynthError
from tfsynth.models import build_gan
from tfsynth.savedmodel.io import generator_from_saved_model
from tfsynth.training import callbacks
from tfsynth.training import train as train_module


def _one_weight_model():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    return model, model.layers[0].kernel


def _epochs(callback, kernel, scores, first_epoch=0):
    """Runs epochs whose weights are the epoch number and whose validation PSNR is ``scores``."""
    for epoch, score in enumerate(scores, start=first_epoch):
        kernel.assign([[float(epoch + 1)]])
        callback.on_epoch_end(epoch, {"val_psnr": score} if score is not None else {})


def test_keeps_the_highest_scoring_epoch_and_carries_it_across_a_restart(tmp_path):
    model, kernel = _one_weight_model()
    _epochs(callbacks.BestEpoch(tmp_path / "best", model), kernel, [20.0, 23.0, 22.0, None])
    best = callbacks.best_epoch(tmp_path / "best")
    assert (best["epoch"], best["score"]) == (2, 23.0)

    # A restarted run knows the best so far: a lower score later saves nothing, a higher one does.
    restarted = callbacks.BestEpoch(tmp_path / "best", model)
    _epochs(restarted, kernel, [22.5], first_epoch=4)
    assert callbacks.best_epoch(tmp_path / "best")["epoch"] == 2
    _epochs(restarted, kernel, [float("nan"), 23.5], first_epoch=5)
    assert callbacks.best_epoch(tmp_path / "best")["epoch"] == 7

    fresh, fresh_kernel = _one_weight_model()
    assert callbacks.restore_best_epoch(tmp_path / "best", fresh)["score"] == 23.5
    assert float(fresh_kernel.numpy()[0, 0]) == 7.0


def test_no_validation_scores_means_no_best_checkpoint(tmp_path):
    model, kernel = _one_weight_model()
    _epochs(callbacks.BestEpoch(tmp_path / "best", model), kernel, [None, None])
    assert callbacks.best_epoch(tmp_path / "best") is None
    assert callbacks.restore_best_epoch(tmp_path / "best", model) is None


def _config(export_epoch: str) -> Config:
    values = json.loads(json.dumps(TINY))
    values["train"]["export_epoch"] = export_epoch
    return Config.from_dict(values)


class FirstEpochBest(callbacks.BestEpoch):
    """Validation PSNR that falls after the first epoch, as a run that overfits would see it."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, {**(logs or {}), "val_psnr": 30.0 - epoch})


def _weights(generator):
    return [np.asarray(v) for v in generator.weights]


def test_export_epoch_last_takes_the_last_weights_even_beside_a_best_checkpoint(tmp_path):
    """The selection `train` makes before exporting (its end-to-end path is the "best" run below)."""
    model, kernel = _one_weight_model()
    _epochs(callbacks.BestEpoch(tmp_path / train_module.BEST_DIR, model), kernel, [25.0, 20.0])  # epoch 1 best
    steps = _config("last").train.steps_per_epoch
    gan = types.SimpleNamespace(generator=model, g_optimizer=types.SimpleNamespace(iterations=tf.Variable(2 * steps)))
    selected = train_module._select_export_weights(gan, tmp_path, _config("last"))
    assert selected == {"epoch": 2, "selected_by": "last"} and float(kernel.numpy()[0, 0]) == 2.0
    selected = train_module._select_export_weights(gan, tmp_path, _config("best"))
    assert selected == {"epoch": 1, "selected_by": "val_psnr", "val_psnr": 25.0} and float(kernel.numpy()[0, 0]) == 1.0


def test_train_exports_the_best_epoch(prepared_data, tmp_path, monkeypatch):
    monkeypatch.setattr(callbacks, "BestEpoch", FirstEpochBest)
    out = tmp_path / "run"
    config = _config("best")
    summary = train_module.train(config, prepared_data, out, strategy=tf.distribute.get_strategy(), verbose=0)

    exported = _weights(generator_from_saved_model(out / "saved_model"))
    # The last weights, restored as a resumed run restores them (the optimizers hold every variable).
    gan = build_gan(config)
    checkpoint = tf.train.Checkpoint(
        generator=gan.generator,
        discriminator=gan.discriminator,
        g_optimizer=gan.g_optimizer,
        d_optimizer=gan.d_optimizer,
    )
    checkpoint.restore(tf.train.latest_checkpoint(str(out / "checkpoints"))).assert_existing_objects_matched()
    last = gan.generator
    metadata = json.loads((out / "saved_model" / "metadata.json").read_text())
    report = (out / "report.md").read_text()
    assert summary["exported"] == {"epoch": 1, "selected_by": "val_psnr", "val_psnr": 30.0}
    best = build_gan(config).generator
    callbacks.restore_best_epoch(out / train_module.BEST_DIR, best)
    assert all(np.array_equal(a, b) for a, b in zip(exported, _weights(best), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(exported, _weights(last), strict=True))
    assert "exported: epoch 1 of 2 (highest validation PSNR, 30.00 dB)" in report
    assert metadata["training"]["exported"] == summary["exported"]


def test_unknown_export_epoch_is_refused():
    with pytest.raises(TfsynthError, match="train.export_epoch must be 'best' or 'last', got 'first'"):
        _config("first")
