"""Building blocks shared by the generator and the discriminator (StarGAN, Choi et al. 2018)."""

from __future__ import annotations

import keras
from keras import ops


def instance_norm(name: str | None = None, affine: bool = True) -> keras.layers.Layer:
    """Instance normalisation, with a learned scale and offset per channel when ``affine``.

    ``GroupNormalization(groups=-1)`` puts every channel in its own group, which is
    instance norm (PyTorch ``InstanceNorm2d(affine=True)``, eps 1e-5). It computes its
    statistics in float32 even under mixed precision.
    """
    return keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, center=affine, scale=affine, name=name)


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


def pair_index(source, target, num_contrasts: int):
    """Index ``source * K + target`` of an ordered (source, target) contrast pair; int32 [B]."""
    return ops.cast(source, "int32") * num_contrasts + ops.cast(target, "int32")


def subset_code(available, target, num_contrasts: int):
    """Index ``bits * K + target`` of an (input subset, target) condition; int32 [B].

    ``bits = sum_c available[c] * 2**c`` numbers the subset of available contrasts (0 .. 2**K - 1),
    so there are ``2**K * K`` codes; a single available contrast s has bits ``2**s``.

    Args:
        available: [B, K] 0/1 (any numeric dtype).
        target: int [B].
        num_contrasts: K.
    """
    weights = ops.cast(2 ** ops.arange(num_contrasts), "int32")
    bits = ops.sum(ops.cast(ops.greater(available, 0), "int32") * weights, axis=-1)
    return bits * num_contrasts + ops.cast(target, "int32")


@keras.saving.register_keras_serializable(package="tfsynth")
class PairFiLM(keras.layers.Layer):
    """Feature-wise linear modulation by the (source, target) pair: ``x * (1 + g[p]) + b[p]``.

    Placed after a parameter-free instance norm, it is conditional instance norm (Dumoulin et
    al. 2017; Perez et al. 2018, FiLM): the pair sets each channel's scale and offset. A label
    tiled as input channels cannot do this, because the norm subtracts the constant it adds
    (Park et al. 2019, SPADE, sec. 3). Starts as the identity (g = b = 0).

    Args:
        num_pairs: size of the condition code (K * K pairs for K contrasts, or ``2**K * K``
            subset codes, `subset_code`).

    Call args:
        x: [B, H, W, C]; pair: int [B] condition indices (`pair_index` or `subset_code`).

    Returns:
        [B, H, W, C] in x's dtype.
    """

    def __init__(self, num_pairs: int, **kwargs):
        super().__init__(**kwargs)
        self.num_pairs = num_pairs

    def build(self, input_shape):
        channels = input_shape[-1]
        self.table = self.add_weight(shape=(self.num_pairs, 2 * channels), initializer="zeros", name="table")

    def call(self, x, pair):
        gamma, beta = ops.split(ops.take(ops.cast(self.table, x.dtype), pair, axis=0), 2, axis=-1)
        return x * (1.0 + gamma[:, None, None, :]) + beta[:, None, None, :]

    def get_config(self):
        return {**super().get_config(), "num_pairs": self.num_pairs}


def intensity_encoding(image, bins: int):
    """Piecewise-linear ("hat") encoding of intensities over ``bins`` evenly spaced centres.

    Channel k is ``max(0, 1 - |x - c_k| / h)`` for centres c_k spanning [-1, 1] with spacing h:
    every intensity is a convex mix of its two nearest centres, so a weighted sum of the
    channels is any piecewise-linear function of intensity, a lookup table with linear
    interpolation, which one 1x1 layer represents exactly.

    Args:
        image: [..., 1] in [-1, 1] (e.g. [B, H, W, 1]).
        bins: number of centres (>= 2).

    Returns:
        [..., bins] in [0, 1], summing to 1 over the last axis inside [-1, 1].
    """
    centres = ops.cast(ops.linspace(-1.0, 1.0, bins), image.dtype)
    spacing = 2.0 / (bins - 1)
    return ops.relu(1.0 - ops.abs(image - centres) / spacing)
