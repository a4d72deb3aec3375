"""Training and tuning choose their distribution strategy the same way (tfsynth.training.distribute)."""

from __future__ import annotations

import json

import pytest
import tensorflow as tf

from tfsynth.training import distribute, train
from tfsynth.tuning import sweep
from tfsynth.tuning.sweep import run_sweep


class Chosen(Exception):
    """Raised by a stand-in strategy class to show which one was chosen."""


def _stand_in(name):
    def make(*args, **kwargs):
        raise Chosen(name)

    return make


def test_tf_config_selects_multi_worker_else_mirrored(monkeypatch):
    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy", _stand_in("multi-worker"))
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", _stand_in("mirrored"))
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker"}}))
    with pytest.raises(Chosen, match="multi-worker"):
        distribute.select_strategy()
    monkeypatch.delenv("TF_CONFIG")
    with pytest.raises(Chosen, match="mirrored"):
        distribute.select_strategy()


def test_the_tuner_and_the_trainer_use_the_same_choice(prepared_data, tmp_path, monkeypatch):
    """Both default to `select_strategy` (the tuner used to ignore TF_CONFIG)."""
    from helpers import TINY

    from tfsynth.config import Config

    def chosen():
        raise Chosen("select_strategy")

    monkeypatch.setattr(train, "select_strategy", chosen)
    monkeypatch.setattr(sweep, "select_strategy", chosen)
    config = Config.from_dict(json.loads(json.dumps(TINY)))
    with pytest.raises(Chosen):
        train.train(config, prepared_data, tmp_path / "run", export=False, verbose=0)
    with pytest.raises(Chosen):
        run_sweep(prepared_data, tmp_path / "sweep", base=config, max_trials=1, epochs=1, steps_per_epoch=1)
