"""The request preprocessing of the serving graph, in TensorFlow: percentile normalisation and the canvas.

The same conventions as training's `tfsynth.data.normalize` (0.5 / 99.5 brain percentiles with
numpy's linear interpolation; centre crop / pad to the training canvas), as graph ops, so a C++
or Go client of TF Serving gets what the Python API gets.
"""

from __future__ import annotations

import tensorflow as tf

from tfsynth.data.normalize import HIGH_PERCENTILE, LOW_PERCENTILE


def crop_size(size, min_canvas: int):
    """Size after `tfsynth.data.normalize.crop_or_pad`'s crop to the canvas (no crop without a canvas)."""
    return tf.minimum(size, min_canvas) if min_canvas else size


def canvas_size(size, min_canvas: int):
    """Padded size: at least ``min_canvas``, rounded up to a multiple of 4 (two stride-2 levels)."""
    return tf.maximum((size + 3) // 4 * 4, min_canvas + (-min_canvas) % 4)


def normalize_masked(image):
    """`percentile_normalize` of one contrast, 0 where it is 0 (the background stays background)."""
    return percentile_normalize(image) * tf.cast(tf.not_equal(image, 0.0), tf.float32)


def percentile_normalize(image):
    """In-graph `percentile_normalize` over the whole tensor: brain = nonzero voxels.

    lo / hi are numpy's linear-interpolation percentiles computed in float64 (as
    ``np.percentile`` does), then ``clip((x - lo) * float32(1 / (hi - lo)), 0, 1)``.
    """
    brain = tf.boolean_mask(image, tf.not_equal(image, 0.0))
    n = tf.size(brain)
    with tf.control_dependencies(
        [tf.debugging.Assert(n > 0, ["image has no nonzero (brain) voxels: nothing to normalise"])]
    ):
        lo = percentile(brain, LOW_PERCENTILE)
        hi = percentile(brain, HIGH_PERCENTILE)
    check = tf.debugging.Assert(
        hi > lo, [f"brain intensities are constant between the {LOW_PERCENTILE} and {HIGH_PERCENTILE} percentiles:", lo]
    )
    with tf.control_dependencies([check]):
        scale = tf.cast(1.0 / (hi - lo), tf.float32)
        return tf.clip_by_value((image - tf.cast(lo, tf.float32)) * scale, 0.0, 1.0)


def percentile(values, q: float):
    """numpy's ``percentile(..., method="linear")`` of a float32 vector, interpolated in float64.

    Only the two order statistics around the position are needed, so instead of sorting the
    whole brain (millions of voxels for a 1 mm volume) `tf.math.top_k` takes the ~q% smallest
    or largest values, an order of magnitude faster (docs/experiments/2026-11-25-speed-and-precision.md); the
    result is identical.
    """
    n = tf.size(values)
    position = tf.constant(q / 100.0, tf.float64) * tf.cast(n - 1, tf.float64)
    below = tf.floor(position)
    gamma = position - below
    i = tf.cast(below, tf.int32)
    j = tf.minimum(i + 1, n - 1)
    if q <= 50.0:
        smallest = -tf.math.top_k(-values, j + 1, sorted=True).values  # ascending: smallest[m] = sorted[m]
        a, b = smallest[i], smallest[j]
    else:
        largest = tf.math.top_k(values, n - i, sorted=True).values  # descending: largest[m] = sorted[n-1-m]
        a, b = largest[n - 1 - i], largest[n - 1 - j]
    a, b = tf.cast(a, tf.float64), tf.cast(b, tf.float64)
    diff = b - a
    # numpy's _lerp: from below for gamma < 0.5, from above otherwise (exact at both ends).
    return tf.where(gamma >= 0.5, b - diff * (1.0 - gamma), a + diff * gamma)
