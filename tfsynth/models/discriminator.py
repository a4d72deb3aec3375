"""The dual-head PatchGAN critic: a real/fake patch map and contrast logits."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfsynth")
class Discriminator(keras.Model):
    """StarGAN's discriminator, made independent of the image size.

    ``layers`` 4x4 stride-2 convs (F, 2F, 4F, ...) with LeakyReLU(0.01) and no
    normalisation (WGAN-GP penalises per-sample gradients, which batch statistics would
    mix). Heads: ``src``, a 3x3 conv to one channel (Wasserstein critic score per patch);
    ``cls``, a 1x1 conv to ``num_contrasts`` channels averaged over the remaining plane.
    StarGAN's cls head is a conv whose kernel spans the whole remaining plane, which ties
    the weights to one image size; the averaged 1x1 conv works for any H, W.

    Args:
        filters: F, channels of the first conv (StarGAN: 64).
        layers: number of stride-2 convs (StarGAN: 6 at 128x128); the patch map is
            ceil(H / 2**layers) x ceil(W / 2**layers).
        num_contrasts: number of classification logits.

    Call args:
        image: float [B, H, W, 1] in [-1, 1].

    Returns:
        ``(src, cls)``: float32 [B, h, w, 1] critic scores and float32 [B, num_contrasts] logits.
    """

    def __init__(self, filters: int = 64, layers: int = 5, num_contrasts: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.layers_count = layers
        self.num_contrasts = num_contrasts
        self.body = []
        for i in range(layers):
            # StarGAN doubles the width at every level; cap it as PatchGAN does (8F).
            width = filters * min(2**i, 8)
            self.body += [
                keras.layers.Conv2D(width, 4, strides=2, padding="same", name=f"conv{i}"),
                keras.layers.LeakyReLU(negative_slope=0.01, name=f"lrelu{i}"),
            ]
        self.src_head = keras.layers.Conv2D(1, 3, padding="same", use_bias=False, dtype="float32", name="src")
        self.cls_head = keras.layers.Conv2D(num_contrasts, 1, use_bias=False, dtype="float32", name="cls")

    def call(self, image):
        x = ops.cast(image, self.compute_dtype)
        for layer in self.body:
            x = layer(x)
        src = self.src_head(x)
        cls = ops.mean(self.cls_head(x), axis=(1, 2))
        return src, cls

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "layers": self.layers_count,
            "num_contrasts": self.num_contrasts,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
