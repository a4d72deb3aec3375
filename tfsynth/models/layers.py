"""Building blocks shared by the generator and the discriminator (StarGAN, Choi et al. 2018)."""

from __future__ import annotations

import keras
from keras import ops


def instance_norm(name: str | None = None) -> keras.layers.Layer:
    """Instance normalisation with a learned scale and offset per channel.

    ``GroupNormalization(groups=-1)`` puts every channel in its own group, which is
    instance norm (PyTorch ``InstanceNorm2d(affine=True)``, eps 1e-5). It computes its
    statistics in float32 even under mixed precision.
    """
    return keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, name=name)


@keras.saving.register_keras_serializable(package="tfsynth")
class ResidualBlock(keras.layers.Layer):
    """``x + IN(conv3x3(ReLU(IN(conv3x3(x)))))``; keeps shape [B, H, W, C].

    Args:
        filters: channels C of the input and the output.
    """

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv1 = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name="conv1")
        self.norm1 = instance_norm("norm1")
        self.conv2 = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name="conv2")
        self.norm2 = instance_norm("norm2")

    def build(self, input_shape):
        self.conv1.build(input_shape)
        self.norm1.build(input_shape)
        self.conv2.build(input_shape)
        self.norm2.build(input_shape)

    def call(self, x):
        h = ops.relu(self.norm1(self.conv1(x)))
        return x + self.norm2(self.conv2(h))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


def tile_label(target, num_contrasts: int, like):
    """One-hot label tiled over the image plane.

    Args:
        target: int [B] contrast indices.
        num_contrasts: length of the one-hot code.
        like: tensor [B, H, W, C] whose H, W and dtype the result takes.

    Returns:
        [B, H, W, num_contrasts] with 1 in the target's channel, 0 elsewhere.
    """
    onehot = ops.cast(ops.one_hot(ops.cast(target, "int32"), num_contrasts), like.dtype)
    shape = ops.shape(like)
    return ops.broadcast_to(onehot[:, None, None, :], (shape[0], shape[1], shape[2], num_contrasts))
