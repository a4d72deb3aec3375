"""The prepared-data format: ``manifest.json`` beside sharded TFRecords, and its one reader.

`tfsynth.data.preparation` writes a prepared directory; every other module reads it through this
one (load, `check_prepared`, shard listing, checksum verification). It imports neither TensorFlow nor
nibabel, so a command can check its data before paying for either.

The manifest holds ``format_version``, ``image_size``, ``splits`` (``{name: {"cases": [...],
"slices": n, "shards": [{"file", "slices", "sha256"}, ...]}}``), per-case ``cases``,
``normalization``, ``crop`` and ``original_shape`` entries, ``voxel_size_mm`` (the one in-plane
voxel size of the slices, `tfsynth.data.spacing`) with the cases ``resampled`` to it,
``patient_grouping``, ``ignored_files``, and the settings of the run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from tfsynth.errors import TfsynthError

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"


def is_prepared(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a finished prepared directory (its manifest is written last)."""
    return (Path(path) / MANIFEST).is_file()


def load_manifest(prepared_dir: str | os.PathLike) -> dict:
    """Reads ``prepared_dir/manifest.json``.

    Raises:
        TfsynthError: no manifest (not a prepared directory, or an interrupted run), unreadable,
            or another format version.
    """
    path = Path(prepared_dir) / MANIFEST
    if not path.is_file():
        raise TfsynthError(f"{prepared_dir} is not a prepared directory: no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise TfsynthError(f"{path}: unreadable manifest ({error})") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise TfsynthError(f"{path}: format_version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}")
    return manifest


def split_slices(manifest: dict, split: str) -> int:
    """Number of slices in ``split`` (0 for a split the manifest does not have)."""
    return int(manifest["splits"].get(split, {}).get("slices") or 0)


def _require_split(manifest: dict, prepared_dir: str | os.PathLike, split: str) -> None:
    """Raises for a split the manifest does not list."""
    if split not in manifest["splits"]:
        raise TfsynthError(f"unknown split {split!r}; {prepared_dir} has {sorted(manifest['splits'])}")


def require_slices(manifest: dict, prepared_dir: str | os.PathLike, splits: Iterable[str], purpose: str = "") -> None:
    """Raises unless every split in ``splits`` is listed and has slices.

    Raises:
        TfsynthError: ``"unknown split SPLIT; ..."`` or ``"split SPLIT of DIR is empty (no slices); PURPOSE"``.
    """
    for split in splits:
        _require_split(manifest, prepared_dir, split)
        if not split_slices(manifest, split):
            because = f"; {purpose}" if purpose else ""
            raise TfsynthError(f"split {split!r} of {prepared_dir} is empty (no slices){because}")


def check_prepared(
    prepared_dir: str | os.PathLike,
    splits: Iterable[str] = (),
    purpose: str = "",
    image_size: int | None = None,
) -> dict:
    """Loads the manifest of a prepared directory and checks it fits what its reader needs.

    The one check behind training, sweeps and the tf.data pipelines, so that each refuses the
    same data with the same words.

    Args:
        prepared_dir: a prepared directory.
        splits: splits that must be listed and hold slices.
        purpose: why they must (ends the empty-split message).
        image_size: the slice size in pixels the reader was built for; None accepts any.

    Returns:
        The manifest.

    Raises:
        TfsynthError: no or unreadable manifest, another image size
            (``"data DIR: prepared at image_size N, but data.image_size is M"``), an unknown
            split, or an empty one.
    """
    manifest = load_manifest(prepared_dir)
    if image_size is not None and int(manifest["image_size"]) != image_size:
        raise TfsynthError(
            f"data {prepared_dir}: prepared at image_size {manifest['image_size']}, but data.image_size is {image_size}"
        )
    require_slices(manifest, prepared_dir, splits, purpose)
    return manifest


def training_flip_axis(manifest: dict, flip: bool) -> int | None:
    """The in-plane slice axis (0 or 1) training flips along: the manifest's left-right axis
    (``lr_axis``, None when the cases disagree) if ``flip``, else None."""
    return manifest.get("lr_axis") if flip else None


def shard_paths(prepared_dir: str | os.PathLike, split: str, manifest: dict | None = None) -> list[Path]:
    """The shard files of one split, in slice order.

    Args:
        prepared_dir: a prepared directory.
        split: a split name the manifest lists.
        manifest: its loaded manifest (read when None).

    Raises:
        TfsynthError: not a prepared directory, an unknown split, or a listed shard missing.
    """
    manifest = load_manifest(prepared_dir) if manifest is None else manifest
    _require_split(manifest, prepared_dir, split)
    paths = [Path(prepared_dir) / shard["file"] for shard in manifest["splits"][split]["shards"]]
    for path in paths:
        if not path.is_file():
            raise TfsynthError(f"{path}: shard listed in the manifest is missing")
    return paths


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (the manifest's shard checksum)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_prepared(prepared_dir: str | os.PathLike) -> dict:
    """Checks every shard listed in the manifest exists and matches its SHA-256.

    Returns:
        The manifest.

    Raises:
        TfsynthError: a missing or modified shard.
    """
    manifest = load_manifest(prepared_dir)
    for split, info in manifest["splits"].items():
        for path, shard in zip(shard_paths(prepared_dir, split, manifest), info["shards"], strict=True):
            if sha256_file(path) != shard["sha256"]:
                raise TfsynthError(f"{path}: checksum differs from the manifest (modified or corrupt)")
    return manifest
