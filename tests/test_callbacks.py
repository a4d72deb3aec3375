"""EpochTensorBoard: the epoch logs Keras' TensorBoard writes, without its per-batch summary calls."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfsynth.training.callbacks import EpochTensorBoard


class _CountingSummary:
    """tf.summary with a count of ``scalar`` calls."""

    def __init__(self):
        self.scalar_calls = 0

    def scalar(self, *args, **kwargs):
        self.scalar_calls += 1
        return tf.summary.scalar(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(tf.summary, name)


def _fit(log_dir, steps: int, callback_class=EpochTensorBoard) -> tuple[int, set]:
    """Fits a one-layer model for one epoch of ``steps``; the callback's scalar calls and the tags written."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    callback = callback_class(str(log_dir))
    counting = _CountingSummary()
    callback._summary_module = counting
    x = np.ones((steps * 2, 3), np.float32)
    model.fit(x, x[:, :1], batch_size=2, epochs=1, verbose=0, callbacks=[callback])
    tags = set()
    for event_file in log_dir.rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags.update(value.tag for value in event.summary.value)
    return counting.scalar_calls, tags


def test_summary_calls_do_not_grow_with_steps(tmp_path):
    few, tags = _fit(tmp_path / "few", steps=2)
    many, _ = _fit(tmp_path / "many", steps=12)
    assert few == many, "per-batch summary calls are back"
    assert "epoch_loss" in tags


def test_only_epoch_updates():
    with pytest.raises(ValueError, match="epoch"):
        EpochTensorBoard("logs", update_freq=10)
