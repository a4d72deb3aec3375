"""The label-conditioned generator: StarGAN's encoder / residual bottleneck / decoder."""

from __future__ import annotations

import keras
from keras import ops

from ..config import UPSAMPLING
from .layers import ResidualBlock, instance_norm, tile_label


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
class Generator(keras.Model):
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
        if isinstance(inputs, dict):
            image, target = inputs["image"], inputs["target"]
        else:
            image, target = inputs
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
