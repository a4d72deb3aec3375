"""The default generator: pair conditioning after the norms, the intensity encoding and lookup table."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfsynth.models import StarGANGenerator, UNetGenerator
from tfsynth.models.layers import intensity_encoding, pair_index, subset_code


def randomised(intensity_bins: int, any_subset: bool = False, seed: int = 2, table_seed: int = 0):
    keras.utils.set_random_seed(seed)
    g = UNetGenerator(
        filters=8, residual_blocks=1, num_contrasts=4, intensity_bins=intensity_bins, any_subset=any_subset
    )
    g((tf.zeros((1, 32, 32, 1)), tf.constant([0]), tf.constant([1])))
    # Random FiLM tables and lookup table (they start at the identity / zero).
    rng = np.random.default_rng(table_seed)
    for v in g.weights:
        if v.path.endswith(("table", "lut")):
            v.assign(rng.normal(0.0, 0.3, v.shape).astype("float32"))
    return g


@pytest.fixture(scope="module")
def unet():
    return randomised(8)


def call(g, image, source, target):
    n = image.shape[0]
    return g({"image": image, "source": tf.fill([n], source), "target": tf.fill([n], target)}).numpy()


def test_shapes_and_dtype_for_any_size_divisible_by_4(unet):
    for h, w in [(32, 32), (36, 44)]:
        out = unet((tf.random.uniform((2, h, w, 1), -1, 1), tf.constant([0, 1]), tf.constant([2, 3])))
        assert out.shape == (2, h, w, 1) and out.dtype == tf.float32


def test_source_changes_the_output_far_from_the_border():
    """The pair modulates features after each instance norm, so it reaches the image interior.

    A label tiled as an input channel reaches it only through the zero-padded border (SPADE, sec. 3).
    Without the intensity table, the FiLMs are the only way in.
    """
    g = randomised(0)
    image = tf.random.uniform((1, 48, 48, 1), -1, 1, seed=5)
    a, b = call(g, image, 0, 2), call(g, image, 1, 2)
    interior = (slice(None), slice(16, 32), slice(16, 32))
    assert np.abs(a[interior] - b[interior]).mean() > 1e-3


def test_generator_without_source_is_a_clear_error(unet):
    with pytest.raises(ValueError, match="source"):
        unet((tf.zeros((1, 32, 32, 1)), tf.constant([1])))


def test_pair_index_is_source_times_k_plus_target():
    np.testing.assert_array_equal(pair_index(tf.constant([0, 1, 3]), tf.constant([1, 0, 2]), 4), [1, 4, 14])


def test_intensity_encoding_is_a_partition_of_unity_that_interpolates_linearly():
    x = tf.constant(np.linspace(-1, 1, 101, dtype="float32").reshape(1, 101, 1, 1))
    enc = intensity_encoding(x, 5).numpy()
    assert enc.shape == (1, 101, 1, 5)
    np.testing.assert_allclose(enc.sum(-1), 1.0, atol=1e-6)
    centres = np.linspace(-1, 1, 5)
    # Weights on the centres reproduce any piecewise-linear function, here x itself and |x|.
    np.testing.assert_allclose((enc * centres).sum(-1), x.numpy()[..., 0], atol=1e-6)
    np.testing.assert_allclose((enc * np.abs(centres)).sum(-1), np.abs(x.numpy()[..., 0]), atol=1e-6)
    assert np.count_nonzero(enc[0, 37, 0]) == 2  # each value mixes its two nearest centres


def test_lookup_table_alone_is_a_per_pair_intensity_mapping():
    """With the convolutional path silenced, the output is tanh(gain * table) interpolated on intensity."""
    g = UNetGenerator(filters=4, residual_blocks=0, intensity_bins=5, lut_gain=2.0)
    rows = np.repeat(np.linspace(-1, 1, 5, dtype="float32"), 4)  # the 5 centres, 4 rows each
    image = tf.constant(rows.reshape(1, 20, 1, 1) * np.ones((1, 1, 16, 1), "float32"))
    g((image, tf.constant([0]), tf.constant([1])))
    g.to_image.kernel.assign(tf.zeros_like(g.to_image.kernel))
    g.to_image.bias.assign(tf.zeros_like(g.to_image.bias))
    inverted = np.array([0.9, 0.5, 0.0, -0.5, -0.9], "float32")
    table = np.zeros((16, 5), "float32")
    table[pair_index(2, 0, 4)] = np.arctanh(inverted) / 2.0
    g.lut.assign(table)
    out = call(g, image, 2, 0)[0, ::4, 0, 0]
    np.testing.assert_allclose(out, inverted, atol=1e-5)
    assert np.allclose(call(g, image, 0, 2), 0.0)  # another pair: its own (zero) table


def test_config_round_trip_gives_the_same_function(unet):
    clone = UNetGenerator.from_config(unet.get_config())
    image = tf.random.uniform((1, 32, 32, 1), -1, 1, seed=6)
    clone((image, tf.constant([0]), tf.constant([1])))
    clone.set_weights(unet.get_weights())
    np.testing.assert_allclose(call(clone, image, 3, 1), call(unet, image, 3, 1), atol=1e-6)


def test_examples_do_not_interact(unet):
    images = tf.random.uniform((3, 32, 32, 1), -1, 1, seed=4)
    together = unet((images, tf.constant([0, 1, 2]), tf.constant([1, 2, 3]))).numpy()
    alone = unet((images[1:2], tf.constant([1]), tf.constant([2]))).numpy()
    np.testing.assert_allclose(together[1:2], alone, atol=1e-5)


def test_reference_generator_ignores_a_given_source():
    g = StarGANGenerator(filters=8, residual_blocks=1)
    image = tf.random.uniform((1, 32, 32, 1), -1, 1, seed=7)
    np.testing.assert_array_equal(
        g((image, tf.constant([0]), tf.constant([2]))), g((image, tf.constant([3]), tf.constant([2])))
    )


@pytest.fixture(scope="module")
def subset_unet():
    return randomised(8, any_subset=True, seed=3, table_seed=1)


def subset_call(g, images, available, target):
    n = images.shape[0]
    return g({"images": images, "available": tf.constant(available), "target": tf.fill([n], target)}).numpy()


def test_subset_code_numbers_the_available_subset_then_the_target():
    available = tf.constant([[1, 0, 0, 0], [0, 1, 1, 0], [1, 1, 0, 1]])
    np.testing.assert_array_equal(subset_code(available, tf.constant([1, 3, 2]), 4), [4 + 1, 6 * 4 + 3, 11 * 4 + 2])


def test_any_subset_generator_ignores_what_is_in_the_missing_channels(subset_unet):
    images = tf.random.uniform((2, 32, 32, 4), -1, 1, seed=8)
    available = [[1, 0, 1, 0], [0, 1, 1, 1]]
    garbage = tf.where(tf.constant(available)[:, None, None, :] > 0, images, 7.0)
    np.testing.assert_array_equal(
        subset_call(subset_unet, images, available, 3), subset_call(subset_unet, garbage, available, 3)
    )
    # Int and float availability are the same condition.
    np.testing.assert_array_equal(
        subset_call(subset_unet, images, available, 3),
        subset_call(subset_unet, images, np.array(available, "float32"), 3),
    )


def test_any_subset_generator_uses_every_available_channel(subset_unet):
    images = tf.random.uniform((1, 32, 32, 4), -1, 1, seed=9)
    other = tf.concat([images[..., :2], -images[..., 2:3], images[..., 3:]], axis=-1)  # changes t2
    with_t2 = [[1, 0, 1, 0]]
    assert (
        np.abs(subset_call(subset_unet, images, with_t2, 3) - subset_call(subset_unet, other, with_t2, 3)).max() > 1e-3
    )
    # Another subset is another condition, with the same pixels.
    assert (
        np.abs(subset_call(subset_unet, images, with_t2, 3) - subset_call(subset_unet, images, [[1, 0, 0, 0]], 3)).max()
        > 1e-3
    )


def test_one_contrast_form_on_the_any_subset_generator_is_its_one_hot_subset(subset_unet):
    image = tf.random.uniform((2, 32, 32, 1), -1, 1, seed=10)
    one_to_one = subset_unet((image, tf.constant([2, 2]), tf.constant([0, 0]))).numpy()
    images = tf.concat([tf.zeros_like(image)] * 2 + [image, tf.zeros_like(image)], axis=-1)
    np.testing.assert_array_equal(one_to_one, subset_call(subset_unet, images, [[0, 0, 1, 0]] * 2, 0))


def test_any_subset_table_with_one_input_is_the_per_pair_table():
    """The convolutional path silenced: one available input maps through lut[code, source] alone."""
    g = UNetGenerator(filters=4, residual_blocks=0, intensity_bins=5, lut_gain=2.0, any_subset=True)
    rows = np.repeat(np.linspace(-1, 1, 5, dtype="float32"), 4)
    image = tf.constant(rows.reshape(1, 20, 1, 1) * np.ones((1, 1, 16, 1), "float32"))
    g((image, tf.constant([0]), tf.constant([1])))
    g.to_image.kernel.assign(tf.zeros_like(g.to_image.kernel))
    g.to_image.bias.assign(tf.zeros_like(g.to_image.bias))
    inverted = np.array([0.9, 0.5, 0.0, -0.5, -0.9], "float32")
    table = np.zeros((64, 4, 5), "float32")
    code = int(subset_code(tf.one_hot([2], 4), tf.constant([0]), 4)[0])
    table[code, 2] = np.arctanh(inverted) / 2.0
    g.lut.assign(table)
    np.testing.assert_allclose(call(g, image, 2, 0)[0, ::4, 0, 0], inverted, atol=1e-5)
    assert np.allclose(call(g, image, 1, 0), 0.0)


def test_subset_form_on_a_one_contrast_generator_is_a_clear_error(unet):
    with pytest.raises(ValueError, match="any_subset"):
        unet({"images": tf.zeros((1, 32, 32, 4)), "available": tf.ones((1, 4)), "target": tf.constant([0])})


def test_any_subset_config_round_trip(subset_unet):
    config = subset_unet.get_config()
    assert config["any_subset"] is True
    assert UNetGenerator(filters=8).get_config()["any_subset"] is False
    clone = UNetGenerator.from_config(config)
    clone((tf.zeros((1, 32, 32, 1)), tf.constant([0]), tf.constant([1])))
    clone.set_weights(subset_unet.get_weights())
    images = tf.random.uniform((1, 32, 32, 4), -1, 1, seed=11)
    np.testing.assert_array_equal(
        subset_call(clone, images, [[1, 1, 0, 1]], 2), subset_call(subset_unet, images, [[1, 1, 0, 1]], 2)
    )
