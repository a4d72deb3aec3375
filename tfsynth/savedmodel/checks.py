"""In-graph checks of a serving request: ranks, sizes, names and ranges, each failing as one
INVALID_ARGUMENT that names the bad input (`tfsynth.savedmodel.graph` builds its signatures on them).

A check is a ``(condition, message)`` pair; `first_failure` turns a list of them into assertions
of which only the first failing one fires, so a request with several problems gets one message.
"""

from __future__ import annotations

import tensorflow as tf

from tfsynth.contrasts import ALIASES, CONTRASTS
from tfsynth.savedmodel.contract import MIN_SIZE

VALID_NAMES = ", ".join(CONTRASTS) + " (aliases: " + ", ".join(sorted(set(ALIASES) - set(CONTRASTS))) + ")"


def with_ranks(image, rank: int, layout: str, names: dict, names_shape: str = "[N] or [1]"):
    """``image`` and the name tensors after asserting their ranks, with those ranks set statically.

    Args:
        image: the request's image; must have ``rank`` (``layout`` names its axes in the message).
        names: ``{input name: string tensor}``, each of rank 1.
        names_shape: how the messages describe a names tensor's shape.

    Returns:
        ``(image, [names tensors in the order given])``.
    """
    checks = [
        tf.debugging.Assert(
            tf.equal(tf.rank(image), rank),
            [f"image must be a rank-{rank} tensor {layout}; got shape:", tf.shape(image)],
            summarize=8,
        ),
    ] + [
        tf.debugging.Assert(
            tf.equal(tf.rank(tensor), 1),
            [f"{what} must be a rank-1 tensor of contrast names {names_shape}; got shape:", tf.shape(tensor)],
            summarize=8,
        )
        for what, tensor in names.items()
    ]
    with tf.control_dependencies(checks):
        # Static shapes only: a runtime EnsureShape could fire before the clearer asserts.
        image = tf.identity(image)
        tensors = [tf.identity(tensor) for tensor in names.values()]
    image.set_shape([None] * rank)
    for tensor in tensors:
        tensor.set_shape([None])
    return image, tensors


def reshaped(tensor, dims):
    """``tensor`` reshaped to ``dims`` (its own shape, now of static rank), under the checks.

    Not an Identity plus ``set_shape`` nor an EnsureShape: Grappler carries their static shape
    back to the request, folds the rank check to "true" and lets a later op fail with an obscure
    message; a reshape to a computed shape tells it nothing about its input.
    """
    return tf.reshape(tensor, dims)


def image_checks(image):
    """Assertions on an image [N, H, W, ...]: H, W >= MIN_SIZE, N > 0, finite values."""
    shape = tf.shape(image)
    return [
        tf.debugging.Assert(
            tf.reduce_min(shape[1:3]) >= MIN_SIZE,
            [f"image height and width must be at least {MIN_SIZE}; image shape:", shape],
        ),
        tf.debugging.assert_positive(shape[0], message="image holds no slices (N = 0)"),
        tf.debugging.assert_all_finite(image, "image contains NaN or infinite values"),
    ]


def name_count(names, what: str, slices):
    """``(condition, message)``: ``names`` [any] holds 1 or N (``slices``) contrast names."""
    count = tf.size(names)
    return (
        tf.logical_or(tf.equal(count, 1), tf.equal(count, slices)),
        [f"{what} must hold 1 or N contrast names; names:", count, "slices N:", slices],
    )


def known_names(names, labels, what: str):
    """``(condition, message)``: every name of ``names`` [M] is a contrast (``labels`` >= 0)."""
    return (
        tf.reduce_all(labels >= 0),
        [f"unknown {what} contrast name(s):", tf.boolean_mask(names, labels < 0), "valid names:", VALID_NAMES],
    )


def in_unit_range(image, signature: str):
    """``(condition, message)``: image values in [0, 1], the contract of the ``*_normalized`` signatures."""
    low, high = tf.reduce_min(image), tf.reduce_max(image)
    return tf.logical_and(low >= 0.0, high <= 1.0), [
        f"{signature} expects image values in [0, 1]; got min/max:",
        low,
        high,
    ]


def as_assertion(check):
    """The assertion op of a ``(condition, message)`` pair."""
    condition, data = check
    return tf.debugging.Assert(condition, data, summarize=8)


def first_failure(checks):
    """Assertions of ``(condition, message)`` pairs of which only the first failing one fires.

    Each condition is OR-ed with "an earlier one failed", so whichever the runtime runs first,
    the message is the first problem's.
    """
    asserts, earlier_hold = [], tf.constant(True)
    for condition, data in checks:
        asserts.append(as_assertion((tf.logical_or(tf.logical_not(earlier_hold), condition), data)))
        earlier_hold = tf.logical_and(earlier_hold, condition)
    return asserts
