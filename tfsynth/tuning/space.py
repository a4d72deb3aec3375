"""The search space of a loss-weight sweep: which weights, over which ranges, and how a trial's
Keras Tuner hyperparameters become a `Config`."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from tfsynth.config import Config, LossWeights
from tfsynth.errors import TfsynthError
from tfsynth.models.loss_terms import search_ranges

# The searched weights and their log-scale ranges, as the loss terms declare them.
WEIGHT_RANGES: dict[str, tuple[float, float]] = search_ranges()
N_CRITIC_CHOICES = (1, 2, 3, 5)


def weights_from_hp(hp, base: LossWeights, fixed: dict[str, float] | None = None) -> LossWeights:
    """Draws the loss weights from a Keras Tuner ``HyperParameters`` (log-scale floats).

    Args:
        hp: the trial's hyperparameters.
        base: defaults (clipped into range), so a tuner that starts from defaults starts
            from the user's config.
        fixed: weights held at a value instead of searched (``hp.Fixed``).
    """
    fixed = fixed or {}
    values: dict[str, Any] = {}
    for name, (low, high) in WEIGHT_RANGES.items():
        if name in fixed:
            values[name] = hp.Fixed(name, float(fixed[name]))
        else:
            default = min(max(float(getattr(base, name)), low), high)
            values[name] = hp.Float(name, low, high, sampling="log", default=default)
    if "n_critic" in fixed:
        values["n_critic"] = hp.Fixed("n_critic", int(fixed["n_critic"]))
    else:
        default = base.n_critic if base.n_critic in N_CRITIC_CHOICES else N_CRITIC_CHOICES[-1]
        values["n_critic"] = hp.Choice("n_critic", list(N_CRITIC_CHOICES), default=default)
    return dataclasses.replace(base, **values)


def check_fixed(fixed: dict[str, Any] | None) -> dict[str, Any]:
    """Validates held weights: known names, a weight >= 0, an integer n_critic >= 1."""
    checked: dict[str, Any] = {}
    for name, value in (fixed or {}).items():
        if name not in (*WEIGHT_RANGES, "n_critic"):
            raise TfsynthError(f"cannot fix {name!r}: tunable weights are {', '.join((*WEIGHT_RANGES, 'n_critic'))}")
        if name == "n_critic":
            if isinstance(value, bool) or not float(value).is_integer() or value < 1:
                raise TfsynthError(f"n_critic must be an integer >= 1, got {value!r}")
            checked[name] = int(value)
        else:
            if isinstance(value, bool) or not math.isfinite(float(value)) or value < 0:
                raise TfsynthError(f"{name} must be a finite number >= 0, got {value!r}")
            checked[name] = float(value)
    return checked


def with_weights(
    config: Config, weights: LossWeights, epochs: int | None = None, steps_per_epoch: int | None = None
) -> Config:
    """A copy of ``config`` with other loss weights and, optionally, another training budget."""
    train = dataclasses.replace(
        config.train,
        epochs=epochs or config.train.epochs,
        steps_per_epoch=steps_per_epoch or config.train.steps_per_epoch,
    )
    return dataclasses.replace(config, loss=dataclasses.replace(weights), train=train)
