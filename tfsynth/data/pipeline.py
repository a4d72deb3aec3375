"""tf.data pipelines over prepared TFRecords: random (source, target) pairs or random (input
subset, target) draws for training, every pair for evaluation.

Training elements are ``(inputs, target_image)`` with ``inputs = {"image", "source",
"target"}``, or ``{"images", "available", "target"}`` for any-subset training (the shape ``fit``
wants under MirroredStrategy), and a third item, the paired losses' per-pixel weight, with a
tumour weight other than 1. The random
choices use stateless ops keyed on ``(seed, position in the stream)``, so a given seed
gives the same stream in deterministic mode whatever the parallelism.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfsynth.config import check_subset_sizes, tumor_weights
from tfsynth.contrasts import NUM_CONTRASTS, index
from tfsynth.data.manifest import check_prepared, shard_paths, training_flip_axis
from tfsynth.data.tfrecord import parse_example
from tfsynth.errors import TfsynthError

AUTOTUNE = tf.data.AUTOTUNE
# Shuffle buffer budget: enough slices to mix cases, bounded in memory.
SHUFFLE_BYTES = 256 * 2**20
ALL_PAIRS = [(s, t) for s in range(NUM_CONTRASTS) for t in range(NUM_CONTRASTS) if s != t]


def _split_files(prepared_dir: str | os.PathLike, split: str) -> tuple[dict, list[str]]:
    """The manifest and the shard paths of one split; errors for an unknown, empty or incomplete split."""
    manifest = check_prepared(prepared_dir, [split])
    files = [str(path) for path in shard_paths(prepared_dir, split, manifest)]
    info = manifest["splits"][split]
    cases = manifest.get("cases", {})
    if cases and not any(len(cases[case]["present"]) >= 2 for case in info["cases"] if case in cases):
        raise TfsynthError(
            f"split {split!r} of {prepared_dir} has no case with two or more contrasts, so no source/target pair"
        )
    return manifest, files


def _to_unit(images01: tf.Tensor) -> tf.Tensor:
    """[0, 1] -> [-1, 1], the generator's range."""
    return images01 * 2.0 - 1.0


def _pick_pair(
    position: tf.Tensor,
    images: tf.Tensor,
    present: tf.Tensor,
    seed: int,
    flip_axis: int | None,
    weight: tf.Tensor | None = None,
):
    """Draws a source and a different target among the present contrasts, and maybe a flip.

    Args:
        position: int64 [] index of the element in the stream (the random key).
        images: float32 [S, S, 4] in [0, 1].
        present: int32 [4].
        seed: base seed.
        flip_axis: image axis to flip with probability 1/2, or None for no flips.
        weight: float32 [S, S], the paired losses' per-pixel weight (flipped with the images), or None.

    Returns:
        ``({"image": [S, S, 1], "source": int32 [], "target": int32 []}, target_image [S, S, 1])`` in [-1, 1],
        and ``weight`` [S, S, 1] as a third item if given.
    """
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(position, tf.int64)])
    u = tf.random.stateless_uniform([NUM_CONTRASTS + 1], seed=key)
    # The two largest of i.i.d. uniforms over the present contrasts: a uniform ordered pair.
    scores = tf.where(present > 0, u[:NUM_CONTRASTS], -1.0)
    pair = tf.math.top_k(scores, k=2).indices
    source, target = pair[0], pair[1]
    images, weight = _maybe_flip(u[NUM_CONTRASTS] < 0.5, flip_axis, images, weight)
    image = tf.gather(images, source, axis=-1)[..., None]
    target_image = tf.gather(images, target, axis=-1)[..., None]
    return _element({"image": _to_unit(image), "source": source, "target": target}, _to_unit(target_image), weight)


def _pick_subset(
    position: tf.Tensor,
    images: tf.Tensor,
    present: tf.Tensor,
    seed: int,
    flip_axis: int | None,
    subset_cdf: tf.Tensor,
    weight: tf.Tensor | None = None,
):
    """Draws a target among the present contrasts, then a subset of the others as inputs, and maybe a flip.

    The subset's size is drawn from ``subset_cdf`` and capped by the number of present contrasts
    besides the target; its members are a uniform draw of that many among them.

    Args:
        position: int64 [] index of the element in the stream (the random key).
        images: float32 [S, S, 4] in [0, 1].
        present: int32 [4].
        seed: base seed.
        flip_axis: image axis to flip with probability 1/2, or None for no flips.
        subset_cdf: float32 [3], cumulative probabilities of 1, 2, 3 inputs.
        weight: as `_pick_pair`'s.

    Returns:
        ``({"images": [S, S, 4], "available": float32 [4] (0/1), "target": int32 []},
        target_image [S, S, 1])`` in [-1, 1]; the target is never available; ``weight`` [S, S, 1]
        as a third item if given.
    """
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(position, tf.int64)])
    u = tf.random.stateless_uniform([2 * NUM_CONTRASTS + 2], seed=key)
    target = tf.argmax(tf.where(present > 0, u[:NUM_CONTRASTS], -1.0), output_type=tf.int32)
    others = tf.logical_and(present > 0, tf.range(NUM_CONTRASTS) != target)
    size = 1 + tf.reduce_sum(tf.cast(u[NUM_CONTRASTS] >= subset_cdf[:-1], tf.int32))
    size = tf.minimum(size, tf.reduce_sum(tf.cast(others, tf.int32)))
    # The `size` largest of i.i.d. uniforms over the other present contrasts: a uniform subset.
    scores = tf.where(others, u[NUM_CONTRASTS + 1 : 2 * NUM_CONTRASTS + 1], -1.0)
    rank = tf.argsort(tf.argsort(scores, direction="DESCENDING"))
    available = tf.cast(tf.logical_and(others, rank < size), tf.float32)
    images, weight = _maybe_flip(u[-1] < 0.5, flip_axis, images, weight)
    target_image = tf.gather(images, target, axis=-1)[..., None]
    return _element(
        {"images": _to_unit(images), "available": available, "target": target}, _to_unit(target_image), weight
    )


def _maybe_flip(flip: tf.Tensor, flip_axis: int | None, images: tf.Tensor, weight: tf.Tensor | None):
    """``images`` (and ``weight``) reversed along ``flip_axis`` if ``flip``; unchanged without an axis."""
    if flip_axis is None:
        return images, weight

    def reverse(tensor):
        return tf.cond(flip, lambda: tf.reverse(tensor, [flip_axis]), lambda: tensor)

    return reverse(images), None if weight is None else reverse(weight)


def _element(inputs: dict, target_image: tf.Tensor, weight: tf.Tensor | None) -> tuple:
    """``(inputs, target_image)``, plus the per-pixel weight [S, S, 1] in Keras's sample-weight slot if any."""
    return (inputs, target_image) if weight is None else (inputs, target_image, weight[..., None])


def make_dataset(
    prepared_dir: str | os.PathLike,
    split: str = "train",
    batch_size: int = 8,
    training: bool = True,
    flip: bool | None = None,
    seed: int | None = None,
    deterministic: bool = False,
    repeat: bool | None = None,
    subset_sizes: Sequence[float] | None = None,
    tumor_weight: float | Sequence[float] = 1.0,
) -> tf.data.Dataset:
    """Batches of random (source, target) contrast pairs, or (input subset, target) draws, from a prepared split.

    Pipeline: shard list -> (shuffle) -> parallel interleave of TFRecordDatasets -> parse ->
    drop slices with < 2 contrasts -> (shuffle) -> (repeat) -> pick pair, (flip) -> batch -> prefetch.

    Args:
        prepared_dir: output of `tfsynth.data.preparation.prepare`.
        split: ``"train"``, ``"val"`` or ``"test"``.
        batch_size: global batch size B.
        training: shuffle, flip, repeat and drop the last partial batch; if False the order
            and pairs are fixed (seed 0 unless given), no flips, no repeat, remainder kept.
        flip: random left-right flips (along the axis the manifest's ``lr_axis`` names);
            default: ``training``.
        seed: seed of shuffles, pairs and flips. Default: random when training
            non-deterministically, else 0.
        deterministic: reproducible element order (slower); implied when not training.
        repeat: repeat forever; default: ``training``.
        subset_sizes: None: one source per example. Else any-subset draws (`_pick_subset`): the
            probabilities of 1, 2, 3 inputs (``Config.training_subset_sizes``).
        tumor_weight: the paired losses' weight on tumour pixels relative to every other pixel
            (``loss.tumor_weight``): one number, or one per label [necrotic core, edema,
            enhancing tumour] (`label_weight_table`). Unless all are 1, each element gains a third
            item, the per-pixel weight float32 [B, S, S, 1] (its label's weight in the tumour, else
            1), which `UnifiedGAN.train_step` reads as Keras's sample weight.

    Returns:
        Dataset of ``({"image": float32 [B, S, S, 1], "source": int32 [B], "target": int32 [B]},
        target_image float32 [B, S, S, 1])``, images in [-1, 1], source != target, both present.
        With ``subset_sizes``: ``({"images": float32 [B, S, S, 4], "available": float32 [B, 4],
        "target": int32 [B]}, target_image)``, the available contrasts present and not the target.

    Raises:
        TfsynthError: an unknown, empty or pair-less split; ``subset_sizes`` not 3 probabilities;
            a bad ``tumor_weight``.
    """
    manifest, files = _split_files(prepared_dir, split)
    size = int(manifest["image_size"])
    flip = training if flip is None else flip
    repeat = training if repeat is None else repeat
    deterministic = deterministic or not training
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**31) if training and not deterministic else 0
    flip_axis = training_flip_axis(manifest, flip)

    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), 4),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )
    ds = ds.map(lambda s: parse_example(s, size), num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    ds = ds.filter(lambda ex: tf.reduce_sum(ex["present"]) >= 2)
    table = label_weight_table(tumor_weight)
    if table is None:
        ds = ds.map(lambda ex: (ex["images"], ex["present"]))
    else:
        table = tf.constant(table)
        ds = ds.map(lambda ex: (ex["images"], ex["present"], tf.gather(table, tf.cast(ex["tumor"], tf.int32))))
    if training:
        buffer = int(min(manifest["splits"][split]["slices"], max(64, SHUFFLE_BYTES // (size * size * 16))))
        ds = ds.shuffle(buffer, seed=seed + 1, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.enumerate()
    if subset_sizes is None:
        pick = _pick_pair
    else:
        cdf = tf.constant(np.cumsum(_subset_probabilities(subset_sizes)), tf.float32)

        def pick(position, images, present, seed, flip_axis, weight=None):
            return _pick_subset(position, images, present, seed, flip_axis, cdf, weight)

    ds = ds.map(
        lambda i, el: pick(i, *el[:2], seed, flip_axis, *el[2:]),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )
    ds = ds.batch(batch_size, drop_remainder=training, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    return ds.prefetch(AUTOTUNE)


def label_weight_table(tumor_weight: float | Sequence[float]) -> np.ndarray | None:
    """The per-pixel weight of each stored segmentation label, float32 [256], or None if all are 1.

    ``tumor_weight`` is ``loss.tumor_weight`` (`tfsynth.config.tumor_weights`): label 0 weighs 1,
    labels 1, 2, 3 their own weight, and any other label (none in BraTS or phantom data) the
    largest of the three, as tumour.

    Raises:
        TfsynthError: not a non-negative number nor three of them.
    """
    weights = tumor_weights(tumor_weight)
    if all(w == 1.0 for w in weights):
        return None
    table = np.full(256, max(weights), np.float32)
    table[0] = 1.0
    table[1 : 1 + len(weights)] = weights
    return table


def _subset_probabilities(subset_sizes: Sequence[float]) -> np.ndarray:
    """``subset_sizes`` as float64 [3], checked like ``data.subset_sizes`` (`TfsynthError` otherwise)."""
    check_subset_sizes(list(subset_sizes))
    return np.asarray(subset_sizes, np.float64)


def make_eval_dataset(
    prepared_dir: str | os.PathLike,
    split: str = "test",
    batch_size: int = 8,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> tf.data.Dataset:
    """Every (slice, source, target) combination of a split, in a fixed order, for evaluation.

    Args:
        prepared_dir: output of `tfsynth.data.preparation.prepare`.
        split: which split.
        batch_size: batch size (the last batch may be smaller).
        pairs: restrict to these ``(source, target)`` contrast names (any alias); default:
            all 12 ordered pairs. Pairs whose contrasts are not both present are skipped.

    Returns:
        Dataset of ``({"image": float32 [B, S, S, 1], "source": int32 [B], "target": int32 [B]},
        {"target_image": float32 [B, S, S, 1], "brain": uint8 [B, S, S, 1] (0/1),
        "tumor": uint8 [B, S, S, 1] (labels), "case_id": string [B], "slice_index": int32 [B]})``,
        images in [-1, 1]; ordered by shard, slice, then pair.
    """
    manifest, files = _split_files(prepared_dir, split)
    size = int(manifest["image_size"])
    wanted = ALL_PAIRS if pairs is None else [(index(s), index(t)) for s, t in pairs]
    if any(s == t for s, t in wanted):
        raise TfsynthError(f"evaluation pairs need different source and target contrasts: {list(pairs or [])}")
    pair_table = tf.constant(wanted, dtype=tf.int32)

    def expand(ex):
        valid = tf.logical_and(
            tf.gather(ex["present"], pair_table[:, 0]) > 0, tf.gather(ex["present"], pair_table[:, 1]) > 0
        )

        def element(pair):
            image = tf.gather(ex["images"], pair[0], axis=-1)[..., None]
            target_image = tf.gather(ex["images"], pair[1], axis=-1)[..., None]
            inputs = {"image": _to_unit(image), "source": pair[0], "target": pair[1]}
            targets = {
                "target_image": _to_unit(target_image),
                "brain": ex["brain"][..., None],
                "tumor": ex["tumor"][..., None],
                "case_id": ex["case_id"],
                "slice_index": ex["slice_index"],
            }
            return inputs, targets

        return tf.data.Dataset.from_tensor_slices(tf.boolean_mask(pair_table, valid)).map(element)

    ds = tf.data.TFRecordDataset(files)
    ds = ds.map(lambda s: parse_example(s, size), num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.flat_map(expand)
    return ds.batch(batch_size, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)
