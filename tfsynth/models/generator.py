"""The label-conditioned generator: StarGAN's encoder / residual bottleneck / decoder."""

from __future__ import annotations

import keras
from keras import ops

from tfsynth.config import UPSAMPLING
from tfsynth.models.layers import (
    PairFiLM,
    ResidualBlock,
    instance_norm,
    intensity_encoding,
    pair_index,
    subset_code,
    tile_label,
)

# The value of a missing contrast channel: the background of an image in [-1, 1].
BACKGROUND = -1.0


def upsampling_conv(filters: int, mode: str, name: str) -> keras.layers.Layer:
    """A 2x upsampling layer [B, H, W, C] -> [B, 2H, 2W, filters] of the kind ``mode`` names."""
    if mode == "transposed":
        return keras.layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False, name=name)
    return keras.Sequential(
        [
            keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_resize"),
            keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv"),
        ],
        name=name,
    )


@keras.saving.register_keras_serializable(package="tfsynth")
class StarGANGenerator(keras.Model):
    """Maps an image of any contrast to the target contrast named by a label.

    7x7 conv F -> two 4x4 stride-2 convs (2F, 4F) -> ``residual_blocks`` residual blocks
    -> two 4x4 stride-2 transposed convs (2F, F) -> 7x7 conv 1 + tanh; instance norm and
    ReLU after every conv but the last. The target label enters as a one-hot code tiled
    over the image plane and concatenated to the image channels.

    Args:
        filters: F, channels of the first conv (StarGAN: 64).
        residual_blocks: residual blocks at 1/4 resolution (StarGAN: 6).
        num_contrasts: length of the label code (4: t1, t1c, t2, flair).
        upsampling: ``"transposed"``: StarGAN's 4x4 stride-2 transposed convs; ``"resize"``:
            2x nearest-neighbour upsampling then a 3x3 conv (Odena et al. 2016), which cannot
            leave the checkerboard pattern that uneven kernel overlap gives transposed convs.

    Call args:
        inputs: ``(image, target)`` or ``{"image": ..., "target": ...}``; image float
            [B, H, W, 1] in [-1, 1] with H, W multiples of 4; target int [B] label indices.

    Returns:
        float32 [B, H, W, 1] in [-1, 1], also under a mixed-precision policy.
    """

    ARCHITECTURE = "StarGAN generator (Choi et al. 2018), target label tiled as input channels"

    def __init__(
        self, filters: int = 64, residual_blocks: int = 6, num_contrasts: int = 4, upsampling: str = "resize", **kwargs
    ):
        super().__init__(**kwargs)
        if upsampling not in UPSAMPLING:
            raise ValueError(f"upsampling must be one of {UPSAMPLING}, got {upsampling!r}")
        self.upsampling = upsampling
        self.filters = filters
        self.residual_blocks = residual_blocks
        self.num_contrasts = num_contrasts

        def conv_norm_relu(layer, name):
            return [layer, instance_norm(f"{name}_norm"), keras.layers.ReLU(name=f"{name}_relu")]

        stem = conv_norm_relu(keras.layers.Conv2D(filters, 7, padding="same", use_bias=False, name="stem"), "stem")
        down = []
        for i, mult in enumerate((2, 4)):
            conv = keras.layers.Conv2D(filters * mult, 4, strides=2, padding="same", use_bias=False, name=f"down{i}")
            down += conv_norm_relu(conv, f"down{i}")
        blocks = [ResidualBlock(filters * 4, name=f"res{i}") for i in range(residual_blocks)]
        up = []
        for i, mult in enumerate((2, 1)):
            up += conv_norm_relu(upsampling_conv(filters * mult, upsampling, f"up{i}"), f"up{i}")
        head = [
            keras.layers.Conv2D(1, 7, padding="same", use_bias=False, name="to_image"),
            # float32 output: the losses, metrics and exported model see full precision.
            keras.layers.Activation("tanh", dtype="float32", name="tanh"),
        ]
        self.body = stem + down + blocks + up + head

    def call(self, inputs):
        image, _, target = _inputs(inputs)  # the reference is told the target only
        x = ops.cast(image, self.compute_dtype)
        x = ops.concatenate([x, tile_label(target, self.num_contrasts, x)], axis=-1)
        for layer in self.body:
            x = layer(x)
        return x

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "residual_blocks": self.residual_blocks,
            "upsampling": self.upsampling,
            "num_contrasts": self.num_contrasts,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _inputs(inputs):
    """``(image, source, target)`` from a dict or a tuple; source is None when not given."""
    if isinstance(inputs, dict):
        return inputs["image"], inputs.get("source"), inputs["target"]
    if len(inputs) == 3:
        return tuple(inputs)
    image, target = inputs
    return image, None, target


@keras.saving.register_keras_serializable(package="tfsynth")
class FiLMResidualBlock(keras.layers.Layer):
    """``x + FiLM(IN(conv3x3(ReLU(FiLM(IN(conv3x3(x)))))))``, FiLM by the contrast pair; [B, H, W, C]."""

    def __init__(self, filters: int, num_pairs: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.num_pairs = num_pairs
        self.conv1 = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name="conv1")
        self.norm1 = instance_norm("norm1", affine=False)
        self.film1 = PairFiLM(num_pairs, name="film1")
        self.conv2 = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name="conv2")
        self.norm2 = instance_norm("norm2", affine=False)
        self.film2 = PairFiLM(num_pairs, name="film2")

    def build(self, input_shape):
        for layer in (self.conv1, self.norm1, self.film1, self.conv2, self.norm2, self.film2):
            layer.build(input_shape)

    def call(self, x, pair):
        h = ops.relu(self.film1(self.norm1(self.conv1(x)), pair))
        return x + self.film2(self.norm2(self.conv2(h)), pair)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "num_pairs": self.num_pairs}


@keras.saving.register_keras_serializable(package="tfsynth")
class StemConv(keras.layers.Layer):
    """First conv of the U-Net: 7x7 over the image channels plus 1x1 over the intensity encoding.

    A 7x7 conv over all C + encoding channels would cost (C + encoding) / C times the images'
    share; the encoding needs no neighbourhood at this layer (its job is a per-voxel intensity
    mapping), so a 1x1 conv keeps its expressiveness for about 1/49 of the cost.

    Args:
        filters: output channels.
        image_channels: C, the leading input channels the 7x7 conv sees (1: one contrast; K: the
            any-subset generator's contrast channels).

    Call args:
        x: [B, H, W, C + encoding], the image channels first.

    Returns:
        [B, H, W, filters].
    """

    def __init__(self, filters: int, image_channels: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.image_channels = image_channels
        self.spatial = keras.layers.Conv2D(filters, 7, padding="same", use_bias=False, name="spatial")
        self.pointwise = keras.layers.Conv2D(filters, 1, use_bias=False, name="pointwise")

    def build(self, input_shape):
        c = self.image_channels
        self.spatial.build((*input_shape[:-1], c))
        if input_shape[-1] > c:
            self.pointwise.build((*input_shape[:-1], input_shape[-1] - c))

    def call(self, x):
        c = self.image_channels
        y = self.spatial(x[..., :c])
        if x.shape[-1] > c:
            y = y + self.pointwise(x[..., c:])
        return y

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "image_channels": self.image_channels}


@keras.saving.register_keras_serializable(package="tfsynth")
class ConvNormFiLM(keras.layers.Layer):
    """conv -> parameter-free instance norm -> FiLM by the contrast pair -> ReLU."""

    def __init__(self, conv: keras.layers.Layer, num_pairs: int, **kwargs):
        super().__init__(**kwargs)
        self.conv = conv
        self.norm = instance_norm("norm", affine=False)
        self.film = PairFiLM(num_pairs, name="film")

    def call(self, x, pair):
        return ops.relu(self.film(self.norm(self.conv(x)), pair))


@keras.saving.register_keras_serializable(package="tfsynth")
class UNetGenerator(keras.Model):
    """Pair-conditioned U-Net: the default generator; with ``any_subset``, any subset of contrasts in.

    Encoder: 7x7 conv F (plus a 1x1 conv of the intensity encoding, `StemConv`), two 4x4 stride-2
    convs (2F, 4F); ``residual_blocks`` residual blocks at
    1/4 resolution; decoder: two 2x upsamplings (``upsampling``), each followed by concatenation
    with the encoder features of that resolution (U-Net skips, Ronneberger et al. 2015; pix2pix)
    and a 3x3 conv (2F, F); a 7x7 conv to one channel. Every conv but the last is followed by
    instance norm, a FiLM of the (source, target) pair, and ReLU: the pair survives the norms.

    The input is the image plus its `intensity_encoding` (``intensity_bins`` channels), and the
    output before the tanh is the network's value plus a per-pair lookup table of the input
    intensity (``sum_k enc_k(x) W[pair, k]``): the per-pair intensity mapping that a lookup
    table fits is one layer here, and the network learns what the neighbourhood adds to it.
    ``W`` is scaled by ``lut_gain`` so that Adam moves it as fast as the tables need.

    With ``any_subset`` the input is all K contrast channels with an availability mask, and the
    condition is the (available subset, target) code `subset_code` (``2**K * K`` entries) instead
    of the pair. Missing channels are ignored by construction: they are set to the background
    (-1) and their intensity encoding is zeroed, so whatever the caller put there cannot reach
    the output. The table becomes per input channel, ``sum_c sum_k a_c enc_k(x_c) W[code, c, k]``:
    with one available contrast s it is the per-pair table of s -> target. The one-contrast call
    form is still accepted (the image goes to its source's channel, the only one available), so
    every 1-to-1 caller works unchanged.

    Args:
        filters: F (default config: 16).
        residual_blocks: blocks at 1/4 resolution.
        num_contrasts: K; the pair code has K * K entries.
        upsampling: ``"resize"`` or ``"transposed"`` (see `upsampling_conv`).
        intensity_bins: hat-encoding centres of the input intensity (0: no encoding, no table).
        lut_gain: scale of the table's weights.
        any_subset: take any subset of the K contrasts as input (see above). False rebuilds the
            1-to-1 generator of older configs and exports unchanged.

    Call args:
        inputs: ``{"image", "source", "target"}`` or ``(image, source, target)``; image float
            [B, H, W, 1] in [-1, 1], H and W multiples of 4; source and target int [B].
            With ``any_subset`` also ``{"images", "available", "target"}``: images float
            [B, H, W, K] in [-1, 1] in canonical contrast order (missing channels: any value),
            available [B, K] 0/1 (float or int), target int [B].

    Returns:
        float32 [B, H, W, 1] in [-1, 1].

    Raises:
        ValueError: no source given (one-contrast form), or the subset form without ``any_subset``.
    """

    ARCHITECTURE = (
        "U-Net (Ronneberger et al. 2015) with a FiLM of the (source, target) pair after every instance norm "
        "(Perez et al. 2018) and a per-pair intensity lookup table on a hat encoding of the input"
    )

    def __init__(
        self,
        filters: int = 16,
        residual_blocks: int = 4,
        num_contrasts: int = 4,
        upsampling: str = "resize",
        intensity_bins: int = 16,
        lut_gain: float = 10.0,
        any_subset: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if upsampling not in UPSAMPLING:
            raise ValueError(f"upsampling must be one of {UPSAMPLING}, got {upsampling!r}")
        self.filters = filters
        self.residual_blocks = residual_blocks
        self.num_contrasts = num_contrasts
        self.upsampling = upsampling
        self.intensity_bins = intensity_bins
        self.lut_gain = lut_gain
        self.any_subset = bool(any_subset)
        # The FiLM and table rows: one per condition code.
        pairs = (2**num_contrasts if self.any_subset else num_contrasts) * num_contrasts
        channels = num_contrasts if self.any_subset else 1

        def block(conv, name):
            return ConvNormFiLM(conv, pairs, name=name)

        self.stem = block(StemConv(filters, channels, name="conv"), "stem")
        self.down = [
            block(
                keras.layers.Conv2D(filters * m, 4, strides=2, padding="same", use_bias=False, name="conv"), f"down{i}"
            )
            for i, m in enumerate((2, 4))
        ]
        self.blocks = [FiLMResidualBlock(filters * 4, pairs, name=f"res{i}") for i in range(residual_blocks)]
        self.up = [upsampling_conv(filters * m, upsampling, f"up{i}") for i, m in enumerate((2, 1))]
        self.merge = [
            block(keras.layers.Conv2D(filters * m, 3, padding="same", use_bias=False, name="conv"), f"merge{i}")
            for i, m in enumerate((2, 1))
        ]
        self.to_image = keras.layers.Conv2D(1, 7, padding="same", dtype="float32", name="to_image")
        if intensity_bins:
            shape = (pairs, num_contrasts, intensity_bins) if self.any_subset else (pairs, intensity_bins)
            self.lut = self.add_weight(shape=shape, initializer="zeros", name="lut")

    def call(self, inputs):
        image, available, pair = self._condition(inputs)
        x = image
        if self.intensity_bins:
            # [B, H, W, C, bins]; a missing channel's encoding is zero, so neither the stem nor the
            # table sees it.
            encoding = intensity_encoding(image[..., None], self.intensity_bins)
            if available is not None:
                encoding = encoding * available[:, None, None, :, None]
            channels = self.num_contrasts if available is not None else 1
            encoding = ops.concatenate([encoding[..., c, :] for c in range(channels)], axis=-1)
            x = ops.concatenate([image, encoding], axis=-1)
        x = self.stem(ops.cast(x, self.compute_dtype), pair)
        skips = [x]
        for layer in self.down:
            x = layer(x, pair)
            skips.append(x)
        for layer in self.blocks:
            x = layer(x, pair)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1]), strict=True):
            x = merge(ops.concatenate([up(x), skip], axis=-1), pair)
        z = self.to_image(x)
        if self.intensity_bins:
            # float32 whatever the policy: Keras would hand a mixed-precision call a bfloat16 copy.
            table = ops.take(ops.cast(self.lut, "float32"), pair, axis=0)
            if self.any_subset:  # [B, C, bins] -> [B, C * bins], the order of the encoding's channels
                table = ops.concatenate([table[:, c, :] for c in range(self.num_contrasts)], axis=-1)
            z = z + self.lut_gain * ops.sum(encoding * table[:, None, None, :], axis=-1, keepdims=True)
        return ops.tanh(z)

    def _condition(self, inputs):
        """The image channels, their availability and the condition code of a call's inputs.

        Returns:
            ``(image float32 [B, H, W, C] in [-1, 1], available float32 [B, C] or None, code int32 [B])``:
            C = 1 and the pair code without ``any_subset``; else C = K, missing channels set to
            the background, and the subset code.
        """
        subset_form = isinstance(inputs, dict) and "images" in inputs
        if subset_form and not self.any_subset:
            raise ValueError("this UNetGenerator takes one contrast: build it with any_subset=True for 'images'")
        if subset_form:
            images, available, target = inputs["images"], inputs["available"], inputs["target"]
        else:
            image, source, target = _inputs(inputs)
            if source is None:
                raise ValueError("UNetGenerator needs the source contrast: pass {'image', 'source', 'target'}")
            if not self.any_subset:
                return ops.cast(image, "float32"), None, pair_index(source, target, self.num_contrasts)
            # The one-contrast form on the any-subset generator: the source is the only input.
            available = ops.one_hot(ops.cast(source, "int32"), self.num_contrasts)
            images = ops.cast(image, "float32") * ops.ones_like(available)[:, None, None, :]
        # Static [B, K] whatever the caller's shapes: the layers need the channel count.
        available = ops.reshape(ops.cast(ops.greater(available, 0), "float32"), (-1, self.num_contrasts))
        images = ops.where(available[:, None, None, :] > 0, ops.cast(images, "float32"), BACKGROUND)
        return images, available, subset_code(available, target, self.num_contrasts)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "residual_blocks": self.residual_blocks,
            "num_contrasts": self.num_contrasts,
            "upsampling": self.upsampling,
            "intensity_bins": self.intensity_bins,
            "lut_gain": self.lut_gain,
            "any_subset": self.any_subset,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
