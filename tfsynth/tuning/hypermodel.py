"""The Keras Tuner side of a sweep: the hypermodel that trains one `UnifiedGAN` per trial, the
tuner that reports after each trial, and the reference run of the base weights.

Classes are defined inside functions so that importing this module does not import TensorFlow.
"""

from __future__ import annotations

import time
from typing import Any

from tfsynth.config import Config
from tfsynth.tuning.results import METRICS, best_epoch_metrics
from tfsynth.tuning.space import WEIGHT_RANGES, weights_from_hp, with_weights


def hypermodel_class():
    """Defines the HyperModel lazily so importing tfsynth.tuning does not import TensorFlow."""
    import keras
    import keras_tuner as kt
    import tensorflow as tf

    from tfsynth.models import build_gan

    class GANHyperModel(kt.HyperModel):
        """Builds and trains one `UnifiedGAN` per trial with the trial's loss weights.

        Args:
            base: the config every trial starts from; only ``loss`` varies.
            epochs, steps_per_epoch: the per-trial budget; also sets the learning-rate decay.
            fixed: loss weights held at a value (see `weights_from_hp`).
        """

        def __init__(self, base: Config, epochs: int, steps_per_epoch: int, fixed: dict[str, Any] | None = None):
            super().__init__(name="unified_gan")
            self.base = base
            self.fixed = fixed
            self.epochs = epochs
            self.steps_per_epoch = steps_per_epoch

        def build(self, hp):
            config = with_weights(
                self.base, weights_from_hp(hp, self.base.loss, self.fixed), self.epochs, self.steps_per_epoch
            )
            # Same initial weights in every trial, so trials differ by their loss weights only.
            keras.utils.set_random_seed(config.train.seed)
            # The tuner has entered its distribution strategy's scope; build inside it.
            # build_gan calls the model once, which Keras Tuner needs to save weights.
            return build_gan(config, strategy=tf.distribute.get_strategy())

        def fit(self, hp, model, *args, **kwargs):
            from tfsynth.models import warmup_steps
            from tfsynth.training.callbacks import AdversarialWarmup

            config = with_weights(
                self.base, weights_from_hp(hp, self.base.loss, self.fixed), self.epochs, self.steps_per_epoch
            )
            callbacks = [*kwargs.pop("callbacks", []), AdversarialWarmup(warmup_steps(config))]
            start = time.monotonic()
            history = model.fit(*args, callbacks=callbacks, **kwargs)
            seconds = time.monotonic() - start
            # Carried per epoch so the tuner's best-epoch metrics include the trial's wall time.
            history.history["seconds"] = [seconds] * len(history.epoch)
            return history

    return GANHyperModel


def tuner_class(kind: str):
    """A Keras Tuner class of the given kind that rewrites the results table after each trial."""
    import keras_tuner as kt

    base = {"bayesian": kt.BayesianOptimization, "hyperband": kt.Hyperband, "random": kt.RandomSearch}[kind]

    class ReportingTuner(base):
        report = None  # set by run_sweep: a callable taking the tuner

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            if self.report is not None:
                self.report(self)

    ReportingTuner.__name__ = f"Reporting{base.__name__}"
    return ReportingTuner


def run_baseline(hypermodel, base: Config, strategy, train_ds, fit_kwargs, objective: str, epochs: int) -> dict:
    """Trains the base weights with the sweep's budget; returns its row for the results table."""
    import keras
    import keras_tuner as kt

    hp = kt.HyperParameters()
    for name in WEIGHT_RANGES:
        hp.Fixed(name, float(getattr(base.loss, name)))
    hp.Fixed("n_critic", int(base.loss.n_critic))
    keras.backend.clear_session()
    with strategy.scope():
        model = hypermodel.build(hp)
    history = hypermodel.fit(hp, model, train_ds, **fit_kwargs)
    metrics = best_epoch_metrics(history, objective)
    row = {"trial": "baseline", "status": "COMPLETED", **hp.values, "epochs": epochs}
    row.update({name: metrics.get(name) for name in (*METRICS, "seconds")})
    return {"row": row, "history": {name: [float(v) for v in series] for name, series in history.history.items()}}
