"""StarGANGenerator and discriminator: shapes, ranges, conditioning, serialisation."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfsynth.models import Discriminator, StarGANGenerator, UNetGenerator
from tfsynth.models.layers import tile_label


@pytest.fixture(scope="module")
def generator():
    keras.utils.set_random_seed(1)
    return StarGANGenerator(filters=8, residual_blocks=1, num_contrasts=4)


@pytest.mark.parametrize("height,width", [(32, 32), (36, 44), (64, 48)])
def test_shapes_for_any_size_divisible_by_4(generator, height, width):
    image = tf.random.uniform((2, height, width, 1), -1, 1)
    out = generator((image, tf.constant([0, 3])))
    assert out.shape == (2, height, width, 1) and out.dtype == tf.float32
    discriminator = Discriminator(filters=8, layers=3, num_contrasts=4)
    src, cls = discriminator(out)
    assert src.shape == (2, -(-height // 8), -(-width // 8), 1)
    assert cls.shape == (2, 4)


@pytest.mark.parametrize("kind", ["stargan", "unet"])
def test_output_fills_the_tanh_range_and_stays_in_it(kind):
    """With the last conv's weights scaled up the output saturates: it must reach both -1 and 1
    (a sigmoid or a [0, 1] head would not reach -1) and never leave [-1, 1] (a linear head would)."""
    keras.utils.set_random_seed(1)
    if kind == "stargan":
        model = StarGANGenerator(filters=8, residual_blocks=1, num_contrasts=4)
    else:
        model = UNetGenerator(filters=8, residual_blocks=1, num_contrasts=4)
    image = tf.random.uniform((2, 32, 32, 1), -1, 1, seed=2)
    inputs = {"image": image, "source": tf.constant([0, 3]), "target": tf.constant([1, 2])}
    model(inputs)
    head = model.get_layer("to_image") if kind == "stargan" else model.to_image
    head.kernel.assign(head.kernel * 1000.0)
    out = model(inputs).numpy()
    assert out.min() >= -1 and out.max() <= 1
    assert out.min() < -0.99 and out.max() > 0.99


def test_tile_label_is_the_one_hot_code_at_every_pixel():
    like = tf.zeros((3, 5, 7, 2), tf.float16)
    tiled = tile_label(tf.constant([2, 0, 3]), 4, like)
    assert tiled.shape == (3, 5, 7, 4) and tiled.dtype == tf.float16
    tiled = tiled.numpy()
    for b, label in enumerate([2, 0, 3]):
        want = np.eye(4, dtype=np.float16)[label]
        for y in range(5):
            for x in range(7):
                np.testing.assert_array_equal(tiled[b, y, x], want, err_msg=f"example {b} pixel ({y}, {x})")


def test_target_label_changes_the_output(generator):
    image = tf.random.uniform((1, 32, 32, 1), -1, 1, seed=3)
    outs = [generator((image, tf.constant([label]))).numpy() for label in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.abs(outs[i] - outs[j]).max() > 1e-4


def test_examples_do_not_interact(generator):
    """Instance norm, not batch norm: an example's output is independent of its batch-mates."""
    images = tf.random.uniform((3, 32, 32, 1), -1, 1, seed=4)
    together = generator((images, tf.constant([0, 1, 2]))).numpy()
    alone = generator((images[1:2], tf.constant([1]))).numpy()
    np.testing.assert_allclose(together[1:2], alone, atol=1e-5)


def test_config_round_trip(generator):
    clone = StarGANGenerator.from_config(generator.get_config())
    assert (clone.filters, clone.residual_blocks, clone.num_contrasts) == (8, 1, 4)
    d = Discriminator(filters=8, layers=3, num_contrasts=4)
    assert Discriminator.from_config(d.get_config()).get_config()["layers"] == 3
    image = tf.zeros((1, 32, 32, 1))
    clone((image, tf.constant([0])))
    clone.set_weights(generator.get_weights())
    np.testing.assert_allclose(clone((image, tf.constant([2]))), generator((image, tf.constant([2]))), atol=1e-6)


def test_mixed_precision_output_is_float32():
    from tfsynth.models.precision import precision_scope

    with precision_scope("mixed_bfloat16"):
        g = StarGANGenerator(filters=8, residual_blocks=1)
        d = Discriminator(filters=8, layers=3)
    out = g((tf.zeros((1, 32, 32, 1)), tf.constant([0])))
    src, cls = d(out)
    assert out.dtype == src.dtype == cls.dtype == tf.float32
    assert g.body[0].compute_dtype == "bfloat16"
