"""The GAN's step maths with a one-variable generator and a linear critic (TF-GAN's test style).

The generator is ``fake = w * image`` and the critic's patch map is ``c * image``, so the critic
score of an example is ``c * mean(image)`` and every loss term and every update has a value that
can be written down by hand. Images are 2 x 2 (4 pixels), so the critic's input gradient has
norm ``|c| / sqrt(4) = |c| / 2``.
"""

from __future__ import annotations

from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from tfsynth.models import build_gan, losses
from tfsynth.models.gan import UnifiedGAN
from tfsynth.models.precision import precision_scope, wrap_optimizer
from tfsynth.training.presets import tiny

W0, C0, LR = 0.5, 3.0, 0.1


class OneVariableGenerator(keras.Model):
    """``fake = w * image`` (computed in the policy's dtype); ignores source and target."""

    def __init__(self, w0: float, **kwargs):
        super().__init__(**kwargs)
        self.w = self.add_weight(shape=(), initializer=keras.initializers.Constant(w0), name="w")

    def call(self, inputs, training=False):
        image = inputs["image"] if isinstance(inputs, dict) else inputs[0]
        out = ops.cast(image, self.compute_dtype) * ops.cast(self.w, self.compute_dtype)
        return ops.cast(out, "float32")  # as the real generators: float32 out under any policy


class LinearCritic(keras.Model):
    """Patch map ``c * image`` and constant (zero) contrast logits."""

    def __init__(self, c0: float, num_contrasts: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.num_contrasts = num_contrasts
        self.c = self.add_weight(shape=(), initializer=keras.initializers.Constant(c0), name="c")

    def call(self, images, training=False):
        x = ops.cast(images, self.compute_dtype)
        return ops.cast(self.c, self.compute_dtype) * x, ops.zeros((ops.shape(x)[0], self.num_contrasts))


def weights(**overrides):
    values = dict(
        lambda_adv=1.0, lambda_gp=0.0, lambda_cls=0.0, lambda_rec=0.0, lambda_pix=0.0, lambda_mse=0.0, lambda_ssim=0.0
    )
    return SimpleNamespace(**{**values, "n_critic": 1, **overrides})


def toy_gan(loss_weights, precision="float32"):
    with precision_scope(precision):
        gan = UnifiedGAN(OneVariableGenerator(W0), LinearCritic(C0))
        gan.build((1, 2, 2, 1))
        gan.compile(
            wrap_optimizer(keras.optimizers.SGD(LR), precision),
            wrap_optimizer(keras.optimizers.SGD(LR), precision),
            loss_weights,
        )
    return gan


def batch(image=2.0, target=-1.0):
    """Two 2 x 2 examples. As in StarGAN the critic's real images are the generator's inputs
    (``image``); the paired target image only enters the pixel losses."""
    inputs = {
        "image": tf.fill([2, 2, 2, 1], image),
        "source": tf.constant([0, 1]),
        "target": tf.constant([1, 2]),
    }
    return inputs, tf.fill([2, 2, 2, 1], target)


# With image 2: D(real) = 3 * 2 = 6, fake = 0.5 * 2 = 1, D(fake) = 3.
# Critic: d d_adv / dc = mean(fake) - mean(real) = -1, so SGD raises c (real scored higher).
C1 = C0 - LR * (1.0 - 2.0)


def test_adversarial_terms_have_the_wgan_signs_and_values():
    """Critic: mean D(fake) - mean D(real); generator: -mean D(fake); each update moves its own way."""
    gan = toy_gan(weights())
    logs = {k: float(v) for k, v in gan.train_step(batch()).items()}
    assert logs["d_adv"] == pytest.approx(3.0 - 6.0)
    assert float(gan.discriminator.c) == pytest.approx(C1)
    # The generator step sees the updated critic: g_adv = -C1 * w * 2, d g_adv / dw = -2 C1.
    assert logs["g_adv"] == pytest.approx(-C1 * W0 * 2)
    assert float(gan.generator.w) == pytest.approx(W0 + LR * 2 * C1)
    assert logs["g_loss"] == pytest.approx(logs["g_adv"])


def test_lambda_adv_weighs_only_the_generator_adversarial_term():
    gan = toy_gan(weights(lambda_adv=0.25))
    logs = {k: float(v) for k, v in gan.train_step(batch()).items()}
    assert float(gan.discriminator.c) == pytest.approx(C1)  # the critic's loss is not weighted
    assert logs["g_loss"] == pytest.approx(0.25 * logs["g_adv"])
    assert float(gan.generator.w) == pytest.approx(W0 + LR * 0.25 * 2 * C1)


def test_paired_squared_error_has_its_value_and_gradient():
    """fake = 0.5 * 2 = 1 against the target -1: squared error 4, L1 2; d mse / dw = 2 (fake - target) * image = 8."""
    gan = toy_gan(weights(lambda_adv=0.0, lambda_mse=0.5))
    logs = {k: float(v) for k, v in gan.train_step(batch()).items()}
    assert logs["g_mse"] == pytest.approx(4.0) and logs["g_pix"] == pytest.approx(2.0)
    assert logs["g_loss"] == pytest.approx(0.5 * 4.0)  # the L1, at weight 0, is only logged
    assert float(gan.generator.w) == pytest.approx(W0 - LR * 0.5 * 8.0)


def test_gradient_penalty_has_the_exact_wgan_gp_value():
    """A linear critic has input-gradient norm |c| / 2 everywhere: GP = (3/2 - 1)^2 for any alpha."""
    gan = toy_gan(weights(lambda_gp=10.0))
    inputs, _ = batch()
    real = inputs["image"]
    fake = gan.generator(inputs)
    assert float(gan.gradient_penalty(real, fake)) == pytest.approx(0.25)
    terms = {k: float(v) for k, v in gan.discriminator_step(real, fake, inputs["source"]).items()}
    assert terms["gp"] == pytest.approx(0.25)
    assert terms["d_loss"] == pytest.approx(-3.0 + 10 * 0.25)
    # d/dc: (mean fake - mean real) + 10 * 2 (|c|/2 - 1) / 2 = -1 + 5.
    assert float(gan.discriminator.c) == pytest.approx(C0 - LR * 4.0)


def test_gradient_penalty_is_taken_at_the_interpolate_alpha_real_plus_one_minus_alpha_fake():
    """Critic sum(x^2) / 2 has gradient x: at x_hat = alpha * 2 + (1 - alpha) * 0 over 4 pixels the
    norm is 4 alpha, so alpha 0.25 and 0.5 give (1 - 1)^2 = 0 and (2 - 1)^2 = 1."""

    def critic(x):
        return 0.5 * tf.reduce_sum(tf.square(x), axis=[1, 2, 3])

    real, fake = tf.fill([2, 2, 2, 1], 2.0), tf.zeros([2, 2, 2, 1])
    got = losses.gradient_penalty(critic, real, fake, tf.constant([0.25, 0.5]))
    np.testing.assert_allclose(got.numpy(), [0.0, 1.0], atol=1e-5)


def test_critic_treats_each_example_independently():
    """The critic's scores and each example's gradient penalty do not depend on its batch-mates."""
    keras.utils.set_random_seed(5)
    gan = build_gan(tiny())
    rng = np.random.default_rng(0)
    real = tf.constant(rng.uniform(-1, 1, (3, 32, 32, 1)), tf.float32)
    fake = tf.constant(rng.uniform(-1, 1, (3, 32, 32, 1)), tf.float32)
    together = gan._critic(real).numpy()
    alone = np.concatenate([gan._critic(real[i : i + 1]).numpy() for i in range(3)])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)
    alpha = tf.constant([0.2, 0.5, 0.9])
    gp_together = losses.gradient_penalty(gan._critic, real, fake, alpha).numpy()
    gp_alone = [
        losses.gradient_penalty(gan._critic, real[i : i + 1], fake[i : i + 1], alpha[i : i + 1]).numpy()[0]
        for i in range(3)
    ]
    np.testing.assert_allclose(gp_together, gp_alone, rtol=1e-4, atol=1e-6)


def test_mixed_float16_scales_the_loss_and_updates_like_float32():
    """Under mixed_float16 both optimizers scale the loss (dynamic LossScaleOptimizer, initial scale
    2^15). Here the scaled generator gradient overflows float16 at first: that step is skipped and
    the scale halves, until a step applies exactly the float32 update. Without loss scaling the
    update would be 2^15 times too small."""
    gan = toy_gan(weights(), precision="mixed_float16")
    assert isinstance(gan.g_optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(gan.d_optimizer, keras.optimizers.LossScaleOptimizer)
    assert gan.generator.compute_dtype == "float16" and gan.generator.w.dtype == "float32"
    scale = float(gan.g_optimizer.scale_loss(1.0))
    w = float(gan.generator.w)
    gan.train_step(batch())
    assert float(gan.generator.w) == w and float(gan.g_optimizer.scale_loss(1.0)) == scale / 2  # overflow: skipped
    for _ in range(4):
        logs = gan.train_step(batch())
        if float(gan.generator.w) != w:
            break
    assert all(np.isfinite(float(v)) for v in logs.values())
    c = float(gan.discriminator.c)  # the critic the generator step saw
    assert float(gan.generator.w) - w == pytest.approx(LR * 2 * c, rel=1e-3)
    assert keras.mixed_precision.global_policy().name == "float32"


def test_a_pixel_weight_weighs_the_paired_terms_and_their_gradient():
    """fake = 1 everywhere; target -1 on one pixel of four, 1 elsewhere; that pixel weighs 3.
    Weighted L1 = 3 * 2 / 6 = 1 and squared error 3 * 4 / 6 = 2 (unweighted 0.5 and 1);
    d mse / dw = 3 * 2 (fake - target) * image / 6 = 4."""
    gan = toy_gan(weights(lambda_adv=0.0, lambda_mse=0.5))
    inputs, _ = batch()
    target = tf.tile(tf.constant([[[-1.0], [1.0]], [[1.0], [1.0]]])[None], [2, 1, 1, 1])
    weight = tf.where(target < 0, 3.0, 1.0)
    logs = {k: float(v) for k, v in gan.train_step((inputs, target, weight)).items()}
    assert logs["g_pix"] == pytest.approx(1.0) and logs["g_mse"] == pytest.approx(2.0)
    assert float(gan.generator.w) == pytest.approx(W0 - LR * 0.5 * 4.0)
    unweighted = toy_gan(weights(lambda_adv=0.0, lambda_mse=0.5))
    logs = {k: float(v) for k, v in unweighted.train_step((inputs, target)).items()}
    assert logs["g_pix"] == pytest.approx(0.5) and logs["g_mse"] == pytest.approx(1.0)
