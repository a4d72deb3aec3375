"""The TFRecord format of prepared data: one ``tf.train.Example`` per axial slice.

Feature spec (S = the manifest's ``image_size``; the slice is ``volume[:, :, k]`` of the
NIfTI array, centre-cropped/padded, so image axis 0 is the volume's i axis and axis 1 its j axis):

    images       bytes  float32 little-endian [S, S, 4] in [0, 1], channels t1, t1c, t2, flair;
                        zeros for an absent contrast
    present      int64  [4]   1 where the contrast is available
    brain        bytes  uint8 [S, S]  1 = nonzero in any present contrast
    tumor        bytes  uint8 [S, S]  segmentation labels (0 everywhere without a segmentation)
    has_seg      int64  1 if the case has a segmentation
    case_id      bytes  UTF-8 case id
    slice_index  int64  k, the axial index in the original volume
    size         int64  S
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfsynth.contrasts import NUM_CONTRASTS
from tfsynth.data.manifest import load_manifest, sha256_file, shard_paths
from tfsynth.errors import tf_error_message

FEATURES = {
    "images": tf.io.FixedLenFeature([], tf.string),
    "present": tf.io.FixedLenFeature([NUM_CONTRASTS], tf.int64),
    "brain": tf.io.FixedLenFeature([], tf.string),
    "tumor": tf.io.FixedLenFeature([], tf.string),
    "has_seg": tf.io.FixedLenFeature([], tf.int64),
    "case_id": tf.io.FixedLenFeature([], tf.string),
    "slice_index": tf.io.FixedLenFeature([], tf.int64),
    "size": tf.io.FixedLenFeature([], tf.int64),
}


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _ints(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in np.ravel(values)]))


def serialize_example(
    images: np.ndarray,
    present: np.ndarray,
    brain: np.ndarray,
    tumor: np.ndarray,
    has_seg: bool,
    case_id: str,
    slice_index: int,
) -> bytes:
    """Serialises one slice.

    Args:
        images: float32 ``[S, S, 4]`` in [0, 1], canonical channel order.
        present: ``[4]`` 0/1.
        brain: ``[S, S]`` 0/1.
        tumor: ``[S, S]`` labels 0..255.
        has_seg: whether the case has a segmentation.
        case_id: the case's id.
        slice_index: axial index in the original volume.

    Returns:
        The serialized ``tf.train.Example``.
    """
    size = images.shape[0]
    if images.shape != (size, size, NUM_CONTRASTS) or brain.shape != (size, size) or tumor.shape != (size, size):
        raise ValueError(f"inconsistent slice shapes {images.shape}, {brain.shape}, {tumor.shape}")
    feature = {
        "images": _bytes(np.ascontiguousarray(images, dtype="<f4").tobytes()),
        "present": _ints(present),
        "brain": _bytes(np.ascontiguousarray(brain, dtype=np.uint8).tobytes()),
        "tumor": _bytes(np.ascontiguousarray(tumor, dtype=np.uint8).tobytes()),
        "has_seg": _ints([has_seg]),
        "case_id": _bytes(case_id.encode("utf-8")),
        "slice_index": _ints([slice_index]),
        "size": _ints([size]),
    }
    # deterministic: map entries in key order, so a rerun writes the same bytes (and shard checksums).
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def parse_example(serialized: tf.Tensor, size: int | None = None) -> dict[str, tf.Tensor]:
    """Parses one serialized slice (graph-compatible, for ``Dataset.map``).

    Args:
        serialized: scalar string tensor.
        size: S if known (gives the outputs a static shape); else read from the record.

    Returns:
        ``images`` float32 [S, S, 4], ``present`` int32 [4], ``brain`` uint8 [S, S],
        ``tumor`` uint8 [S, S], ``has_seg`` int32 [], ``case_id`` string [],
        ``slice_index`` int32 [], ``size`` int32 [].
    """
    ex = tf.io.parse_single_example(serialized, FEATURES)
    s = tf.cast(ex["size"], tf.int32) if size is None else size
    images = tf.reshape(tf.io.decode_raw(ex["images"], tf.float32, little_endian=True), [s, s, NUM_CONTRASTS])
    return {
        "images": images,
        "present": tf.cast(ex["present"], tf.int32),
        "brain": tf.reshape(tf.io.decode_raw(ex["brain"], tf.uint8), [s, s]),
        "tumor": tf.reshape(tf.io.decode_raw(ex["tumor"], tf.uint8), [s, s]),
        "has_seg": tf.cast(ex["has_seg"], tf.int32),
        "case_id": ex["case_id"],
        "slice_index": tf.cast(ex["slice_index"], tf.int32),
        "size": tf.cast(ex["size"], tf.int32),
    }


def shard_name(split: str, index: int, count: int) -> str:
    """``{split}-{index:05d}-of-{count:05d}.tfrecord``."""
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def write_shard(path: Path, records: list[bytes]) -> dict:
    """Writes serialized examples to one TFRecord file.

    The caller provides an atomic temp path (`tfsynth.atomic.atomic_path`).

    Returns:
        ``{"slices": len(records), "sha256": ...}`` of the written file.

    Raises:
        OSError: the file cannot be written (``ENOSPC`` for a full disk), as Python's writers raise.
    """
    try:
        with tf.io.TFRecordWriter(str(path)) as writer:
            for record in records:
                writer.write(record)
    except tf.errors.OpError as error:  # TensorFlow's file errors are no OSError
        if isinstance(error, tf.errors.ResourceExhaustedError):  # a full disk or quota
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
        raise OSError(errno.EIO, tf_error_message(error.message), str(path)) from None
    return {"slices": len(records), "sha256": sha256_file(path)}


def iter_prepared_slices(prepared_dir: str | os.PathLike, split: str):
    """Reads a split of a prepared directory slice by slice, as NumPy (shard order = slice order).

    Yields:
        dicts with ``images`` float32 ``[S, S, 4]`` in [0, 1], ``present`` int ``[4]``, ``brain``
        and ``tumor`` uint8 ``[S, S]``, ``has_seg`` int, ``case_id`` str, ``slice_index`` int.

    Raises:
        TfsynthError: not a prepared directory, unknown split or a missing shard.
    """
    manifest = load_manifest(prepared_dir)
    files = [str(path) for path in shard_paths(prepared_dir, split, manifest)]
    size = int(manifest["image_size"])
    for example in tf.data.TFRecordDataset(files).map(lambda record: parse_example(record, size)).as_numpy_iterator():
        example["case_id"] = example["case_id"].decode("utf-8")
        yield example
