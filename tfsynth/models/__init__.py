"""The unified GAN: generator, discriminator, losses, and `build_gan` from a `Config`."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfsynth.config import Config
from tfsynth.contrasts import CONTRASTS
from tfsynth.models.discriminator import Discriminator
from tfsynth.models.gan import UnifiedGAN
from tfsynth.models.generator import StarGANGenerator, UNetGenerator
from tfsynth.models.precision import precision_scope, wrap_optimizer

__all__ = [
    "Discriminator",
    "StarGANGenerator",
    "LinearDecay",
    "UNetGenerator",
    "UnifiedGAN",
    "build_gan",
    "build_generator",
    "warmup_steps",
]


@keras.saving.register_keras_serializable(package="tfsynth")
class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Constant ``initial`` for the first ``decay_start_fraction`` of training, then linear to 0.

    Args:
        initial: learning rate before the decay.
        total_steps: optimizer steps in the whole run.
        decay_start_fraction: where in [0, 1] of the run the decay begins (StarGAN: 0.5).
    """

    def __init__(self, initial: float, total_steps: int, decay_start_fraction: float = 0.5):
        self.initial = float(initial)
        self.total_steps = int(total_steps)
        self.decay_start_fraction = float(decay_start_fraction)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        start = self.decay_start_fraction * self.total_steps
        span = max(self.total_steps - start, 1.0)
        fraction_left = tf.clip_by_value(1.0 - (step - start) / span, 0.0, 1.0)
        return self.initial * fraction_left

    def get_config(self):
        return {
            "initial": self.initial,
            "total_steps": self.total_steps,
            "decay_start_fraction": self.decay_start_fraction,
        }


def build_generator(config: Config) -> keras.Model:
    """The generator ``config.model`` names: the pair-conditioned U-Net (any subset of inputs with
    ``model.any_subset``) or the StarGAN reference."""
    m = config.model
    if m.generator == "stargan":
        return StarGANGenerator(
            m.generator_filters, m.residual_blocks, len(CONTRASTS), upsampling=m.upsampling, name="generator"
        )
    return UNetGenerator(
        m.generator_filters,
        m.residual_blocks,
        len(CONTRASTS),
        upsampling=m.upsampling,
        intensity_bins=m.intensity_bins,
        any_subset=m.any_subset,
        name="generator",
    )


def warmup_steps(config: Config) -> int:
    """StarGANGenerator steps of the supervised warm-up: ``warmup_fraction`` of the run (all of it without
    an adversarial term)."""
    total = config.train.epochs * config.train.steps_per_epoch
    return total if config.loss.lambda_adv == 0 else round(config.train.warmup_fraction * total)


def build_gan(config: Config, strategy: tf.distribute.Strategy | None = None) -> UnifiedGAN:
    """Builds, compiles and builds the optimizers of the unified GAN inside ``strategy``'s scope.

    The models take ``config.train.precision`` as their dtype policy. Learning rates
    decay linearly to 0 over ``epochs * steps_per_epoch`` generator steps (the
    discriminator takes ``n_critic`` steps per generator step).

    Args:
        config: a validated `Config`.
        strategy: a `tf.distribute.Strategy`; the default strategy when None.

    Returns:
        A compiled `UnifiedGAN`, ready for ``fit`` with images of ``config.data.image_size``;
        pass ``tfsynth.training.callbacks.AdversarialWarmup(warmup_steps(config))`` to ``fit`` for the
        config's warm-up.
    """
    config.validate()
    strategy = strategy or tf.distribute.get_strategy()
    m, t, w = config.model, config.train, config.loss
    total_g_steps = t.epochs * t.steps_per_epoch

    def adam(rate, steps):
        schedule = LinearDecay(rate, steps, t.decay_start_fraction)
        return wrap_optimizer(keras.optimizers.Adam(schedule, beta_1=t.beta_1, beta_2=t.beta_2), t.precision)

    with strategy.scope(), precision_scope(t.precision):
        generator = build_generator(config)
        discriminator = Discriminator(
            m.discriminator_filters, m.discriminator_layers, len(CONTRASTS), name="discriminator"
        )
        gan = UnifiedGAN(generator, discriminator, len(CONTRASTS), gp_seed=t.seed, name="unified_gan")
        gan.build((1, config.data.image_size, config.data.image_size, 1))
        gan.compile(
            g_optimizer=adam(t.g_learning_rate, total_g_steps),
            # The critic only trains after the warm-up: its schedule spans the adversarial steps.
            d_optimizer=adam(t.d_learning_rate, max(total_g_steps - warmup_steps(config), 1) * w.n_critic),
            loss_weights=w,
        )
        # Optimizer slots must exist before fit under a strategy (else "You must feed a value for
        # placeholder tensor").
        gan.g_optimizer.build(generator.trainable_variables)
        gan.d_optimizer.build(discriminator.trainable_variables)
    return gan
