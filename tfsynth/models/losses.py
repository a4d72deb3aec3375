"""Per-example loss terms of the unified GAN.

Every function returns a float32 vector [B] (one value per example of the replica's
batch). `replica_mean` turns it into this replica's share of the global-batch mean,
which is what gradients under `tf.distribute` must see (the replica
gradients are summed, so each replica divides by the GLOBAL batch size).
"""

from __future__ import annotations

import tensorflow as tf


def replica_mean(per_example: tf.Tensor) -> tf.Tensor:
    """Sum over this replica's examples divided by the global batch size; scalar."""
    return tf.nn.compute_average_loss(per_example)


def critic_score(src: tf.Tensor) -> tf.Tensor:
    """Mean Wasserstein critic score of each example; [B, h, w, 1] -> [B]."""
    return tf.reduce_mean(tf.cast(src, tf.float32), axis=[1, 2, 3])


def classification(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Softmax cross-entropy of contrast logits [B, K] against int labels [B] -> [B]."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32)
    )


def l1(a: tf.Tensor, b: tf.Tensor, weight: tf.Tensor | None = None) -> tf.Tensor:
    """Mean absolute difference of each example; [B, H, W, C] x2 -> [B].

    With ``weight`` (broadcastable to ``a``, non-negative, not all zero in an example), the
    weighted mean ``sum(weight |a - b|) / sum(weight)`` per example.
    """
    return _pixel_mean(tf.abs(tf.cast(a, tf.float32) - tf.cast(b, tf.float32)), weight)


def squared_error(a: tf.Tensor, b: tf.Tensor, weight: tf.Tensor | None = None) -> tf.Tensor:
    """Mean squared difference of each example; [B, H, W, C] x2 -> [B]; ``weight`` as in `l1`.

    Its minimiser is the conditional mean of the target, the L1's the conditional median;
    PSNR scores the mean.
    """
    return _pixel_mean(tf.square(tf.cast(a, tf.float32) - tf.cast(b, tf.float32)), weight)


def _pixel_mean(values: tf.Tensor, weight: tf.Tensor | None) -> tf.Tensor:
    """Per-example mean of ``values`` [B, H, W, C], weighted by ``weight`` if given."""
    if weight is None:
        return tf.reduce_mean(values, axis=[1, 2, 3])
    weight = tf.broadcast_to(tf.cast(weight, tf.float32), tf.shape(values))
    return tf.reduce_sum(weight * values, axis=[1, 2, 3]) / tf.reduce_sum(weight, axis=[1, 2, 3])


def gradient_penalty(critic, real: tf.Tensor, fake: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): ``(||d critic(x_hat) / d x_hat||_2 - 1)^2`` per example.

    Args:
        critic: maps images [B, H, W, 1] to per-example scores [B].
        real, fake: float32 [B, H, W, 1].
        alpha: float32 [B] interpolation weights in [0, 1].

    Returns:
        float32 [B].
    """
    alpha = alpha[:, None, None, None]
    x_hat = alpha * real + (1.0 - alpha) * fake
    with tf.GradientTape() as tape:
        tape.watch(x_hat)
        # Examples do not interact inside the critic, so the gradient of the sum is
        # each example's own gradient.
        score = tf.reduce_sum(critic(x_hat))
    grad = tf.cast(tape.gradient(score, x_hat), tf.float32)
    norm = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=[1, 2, 3]) + 1e-12)
    return tf.square(norm - 1.0)


def dssim(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Structural dissimilarity ``(1 - SSIM) / 2`` of each example (Wang et al. 2004; Zhao et al.
    2017 use it as a loss); images in [-1, 1], compared in [0, 1]; [B, H, W, 1] x2 -> [B]."""
    a01 = (tf.cast(a, tf.float32) + 1.0) / 2.0
    b01 = (tf.cast(b, tf.float32) + 1.0) / 2.0
    return (1.0 - tf.image.ssim(a01, b01, max_val=1.0)) / 2.0
