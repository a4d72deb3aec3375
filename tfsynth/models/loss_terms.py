"""The weighted loss terms of the unified GAN, listed once.

Each `Term` names its tracker (the metric ``fit`` logs), the `tfsynth.config.LossWeights` field
that weighs it, whether only the adversarial phase computes it, its Keras Tuner search range
(log scale; None: not searched) and how to compute it from a `GeneratorStep`. `UnifiedGAN`
sums ``weight * value`` over `GENERATOR_TERMS` and tracks every one; `tfsynth.tuning.space`
searches `search_ranges()`. A new generator term is one entry here and one weight in
`LossWeights`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import tensorflow as tf

from tfsynth.models import losses


@dataclasses.dataclass
class GeneratorStep:
    """What a generator term may read, for one replica's batch.

    Attributes:
        fake: the generator's output, float32 [B, H, W, 1] in [-1, 1].
        target_image: the co-registered real target, [B, H, W, 1] in [-1, 1].
        target: int [B] target contrast labels.
        pixel_weight: [B, H, W, 1] weights of the paired terms, or None.
        critic: ``fake`` through the critic: ``(src [B, h, w, 1], cls [B, K])``; None in the warm-up.
        cycle: a callable returning ``(reconstruction, original)`` [B, H, W, 1] (a second generator pass).
    """

    fake: tf.Tensor
    target_image: tf.Tensor
    target: tf.Tensor
    pixel_weight: tf.Tensor | None
    critic: tuple | None
    cycle: Callable[[], tuple]


@dataclasses.dataclass(frozen=True)
class Term:
    """One weighted generator loss term.

    Attributes:
        metric: tracker name, logged by ``fit``.
        weight: the `LossWeights` field that weighs it.
        compute: `GeneratorStep` -> this replica's share of the global-batch mean (scalar).
        adversarial: computed only in the adversarial phase (it needs the critic or the cycle).
        search: (low, high) log-scale range a loss-weight sweep draws the weight from, or None.
        optional: not computed at weight 0 (it costs a pass the step does not need otherwise).
    """

    metric: str
    weight: str
    compute: Callable[[GeneratorStep], tf.Tensor]
    adversarial: bool = False
    search: tuple[float, float] | None = None
    optional: bool = False


# Log-scale ranges about a decade either way of StarGAN's weights (adv 1, cls 1, rec 10, gp 10):
# wide enough to find another regime, narrow enough that a few trials cover it. lambda_adv reaches
# down to 0.01 (on paired data the adversarial term is a small correction). The squared error's
# range is ten times the L1's: at errors of a few hundredths its gradient 2 * lambda * error is
# then about the L1's lambda.
GENERATOR_TERMS: tuple[Term, ...] = (
    Term("g_adv", "lambda_adv", lambda s: losses.replica_mean(-losses.critic_score(s.critic[0])), True, (0.01, 1.0)),
    Term(
        "g_cls",
        "lambda_cls",
        lambda s: losses.replica_mean(losses.classification(s.critic[1], s.target)),
        True,
        (0.1, 10.0),
    ),
    # The cycle costs a second generator pass; paired data makes it optional (weight 0).
    Term("g_rec", "lambda_rec", lambda s: losses.replica_mean(losses.l1(*s.cycle())), True, (1.0, 100.0), True),
    Term(
        "g_pix",
        "lambda_pix",
        lambda s: losses.replica_mean(losses.l1(s.fake, s.target_image, s.pixel_weight)),
        False,
        (1.0, 300.0),
    ),
    Term(
        "g_mse",
        "lambda_mse",
        lambda s: losses.replica_mean(losses.squared_error(s.fake, s.target_image, s.pixel_weight)),
        False,
        (10.0, 3000.0),
    ),
    Term("g_ssim", "lambda_ssim", lambda s: losses.replica_mean(losses.dssim(s.fake, s.target_image)), optional=True),
)
# The critic's terms (`UnifiedGAN.discriminator_step`): Wasserstein, classification, gradient penalty.
CRITIC_METRICS = ("d_loss", "d_adv", "d_cls", "gp")
# The critic's searched weight (the classification weight is shared with g_cls).
CRITIC_SEARCH = {"lambda_gp": (1.0, 100.0)}
TRAIN_METRICS = (*CRITIC_METRICS, "g_loss", *(term.metric for term in GENERATOR_TERMS))


def search_ranges() -> dict[str, tuple[float, float]]:
    """``{LossWeights field: (low, high)}`` of every searched weight, generator terms first."""
    return {**{t.weight: t.search for t in GENERATOR_TERMS if t.search}, **CRITIC_SEARCH}


def generator_loss(step: GeneratorStep, weights, adversarial: bool) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """The weighted sum of `GENERATOR_TERMS` and each term's value (0 where not computed).

    Args:
        step: the batch's tensors.
        weights: a `tfsynth.config.LossWeights` (or any object with the terms' weight attributes).
        adversarial: the phase; in the warm-up the adversarial terms are skipped.

    Returns:
        ``(loss, {metric: value})``, scalars (this replica's share of the global-batch mean).
    """
    values, loss = {}, tf.constant(0.0)
    for term in GENERATOR_TERMS:
        weight = float(getattr(weights, term.weight))
        if (term.adversarial and not adversarial) or (term.optional and not weight):
            values[term.metric] = tf.constant(0.0)
            continue
        values[term.metric] = term.compute(step)
        loss += weight * values[term.metric]
    return loss, values
