"""BraTS NIfTI folders -> validated, normalised axial slices in sharded TFRecords + manifest.json.

Two passes over the cohort. Pass 1 reads and validates every case (nothing is written
if any case is bad, unless ``skip_bad``) and plans the work: normalisation windows, the
axial slices that hold brain, the patient split, the shard count. Pass 2 normalises and
serializes each case (kept in memory from pass 1 up to a budget, else read and validated
again) and writes the shards. Both passes overlap cases on a few threads.

Atomicity: everything is built in a hidden temp directory beside ``out`` (each shard itself
written to a temp name and renamed, ``manifest.json`` written last) and the directory is
renamed to ``out`` only when complete. An interrupted or failed run leaves no ``out`` at all,
only a ``.tmp-<name>-*`` folder at worst, which nothing mistakes for prepared data.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm.auto import tqdm

from .. import __version__
from ..atomic import atomic_directory, atomic_path, write_json
from ..contrasts import CONTRASTS, NUM_CONTRASTS
from ..errors import TfsynthError
from .brats import Case, LoadedCase, find_cases, validate_case
from .geometry import TRAINING_ORIENTATION
from .manifest import FORMAT_VERSION, MANIFEST, SPLITS
from .normalize import (
    HIGH_PERCENTILE,
    LOW_PERCENTILE,
    MIN_BRAIN_FRACTION,
    NormParams,
    brain_mask,
    crop_info,
    crop_or_pad,
    normalize_with,
    percentile_window,
    select_slices,
)


def tfrecord():
    """The TFRecord module, imported on first use: validation and argument errors should not wait
    for (or be buried under the log lines of) a TensorFlow import."""
    from . import tfrecord as module

    return module

# ~128 MB shards: large enough for sequential reads, small enough to interleave several.
TARGET_SHARD_BYTES = 128 * 2**20
# Threads overlap gzip decompression and numpy work; pass 2 skips re-reading cached cases.
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)
CACHE_BYTES = 2 * 2**30
SEG_LABELS = {"1": "necrotic tumour core", "2": "peritumoral edema", "3": "enhancing tumour"}


@dataclasses.dataclass
class CasePlan:
    """What pass 1 learnt about a valid case: everything pass 2 and the manifest need."""

    case: Case
    shape: tuple[int, int, int]
    zooms: tuple[float, float, float]
    affine: np.ndarray
    norm: dict[str, NormParams]
    slices: list[int]
    lr_axis: int | None
    orientation: str


def split_counts(n: int, split: Sequence[float]) -> tuple[int, int, int]:
    """Number of cases per split (train, val, test).

    ``split`` is three non-negative numbers: case counts if they are integers summing to
    ``n``, otherwise proportions (normalised by their sum). Proportions are rounded by
    largest remainder, then every split with a nonzero proportion gets at least one case
    while ``n`` allows (taken from the largest split): 4 cases at 0.5/0.25/0.25 -> 2/1/1,
    3 cases at 0.8/0.1/0.1 -> 1/1/1.
    """
    values = [float(v) for v in split]
    if len(values) != 3 or any(not math.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
        raise TfsynthError(f"--split needs three non-negative numbers (train val test), got {list(split)}")
    if all(v == int(v) for v in values) and sum(values) == n:
        return tuple(int(v) for v in values)  # type: ignore[return-value]
    raw = [v / sum(values) * n for v in values]
    counts = [int(math.floor(r)) for r in raw]
    for i in sorted(range(3), key=lambda i: raw[i] - counts[i], reverse=True)[: n - sum(counts)]:
        counts[i] += 1
    for i in range(3):
        if values[i] > 0 and counts[i] == 0:
            donor = max(range(3), key=lambda j: counts[j])
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[i] += 1
    return tuple(counts)  # type: ignore[return-value]


def split_cases(
    case_ids: Sequence[str], split: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, list[str]]:
    """Splits patients (never slices) into train/val/test, deterministically for a seed.

    The sorted ids are permuted with ``numpy.random.default_rng(seed)``; the first cases go
    to train, then val, then test. Each list is returned in that permuted order.
    """
    ids = sorted(case_ids)
    counts = split_counts(len(ids), split)
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    bounds = np.cumsum((0,) + counts)
    return {name: order[bounds[i] : bounds[i + 1]] for i, name in enumerate(SPLITS)}


def lr_axis_of(affine: np.ndarray) -> int | None:
    """Which in-plane axis (0 or 1) of an axial slice runs left-right, from the affine."""
    codes = nib.aff2axcodes(affine)
    axis = next((i for i, c in enumerate(codes) if c in ("L", "R")), None)
    return axis if axis in (0, 1) else None


def plan_case(loaded: LoadedCase, min_brain_fraction: float) -> CasePlan:
    """Normalisation windows and the axial slices to keep for one validated case.

    A slice is kept if its brain (union over contrasts) covers at least ``min_brain_fraction``
    of the slice area (and at least one voxel): `tfsynth.data.normalize.select_slices`, which
    `tfsynth.evaluate` uses too.
    """
    norm = {}
    for contrast, volume in loaded.volumes.items():
        try:
            norm[contrast] = percentile_window(volume)
        except TfsynthError as error:
            raise TfsynthError(f"{loaded.case.files[contrast]}: {error}") from None
    keep = select_slices(brain_mask(loaded.volumes.values()), min_brain_fraction)
    if keep.size == 0:
        raise TfsynthError(
            f"case {loaded.case.case_id}: no axial slice with brain (>= {min_brain_fraction:.1%} of the slice)"
        )
    return CasePlan(
        loaded.case,
        loaded.shape,
        loaded.zooms,
        loaded.affine,
        norm,
        keep.tolist(),
        lr_axis_of(loaded.affine),
        loaded.orientation,
    )


def case_records(loaded: LoadedCase, plan: CasePlan, size: int) -> tuple[list[bytes], int]:
    """Serializes one case's kept slices, in slice order.

    Returns:
        ``(records, brain_voxels_cropped)``: the examples, and how many brain voxels of the
        kept slices fell outside the ``size x size`` window.
    """
    keep = plan.slices
    stack = np.zeros((len(keep), size, size, NUM_CONTRASTS), dtype=np.float32)
    present = np.zeros(NUM_CONTRASTS, dtype=np.int64)
    for c, contrast in enumerate(CONTRASTS):
        if contrast in loaded.volumes:
            normalized = normalize_with(loaded.volumes[contrast][:, :, keep], plan.norm[contrast])
            stack[..., c] = crop_or_pad(np.moveaxis(normalized, -1, 0), size)
            present[c] = 1
    mask = np.moveaxis(brain_mask(loaded.volumes.values())[:, :, keep], -1, 0).astype(np.uint8)
    brain = crop_or_pad(mask, size)
    seg = loaded.seg if loaded.seg is not None else np.zeros(loaded.shape, dtype=np.uint8)
    tumor = crop_or_pad(np.moveaxis(seg[:, :, keep], -1, 0), size)
    records = [
        tfrecord().serialize_example(stack[i], present, brain[i], tumor[i], loaded.seg is not None, plan.case.case_id, int(k))
        for i, k in enumerate(keep)
    ]
    return records, int(mask.sum(dtype=np.int64) - brain.sum(dtype=np.int64))


def ordered_map(fn: Callable, items, workers: int) -> Iterator:
    """``map(fn, items)`` on a thread pool, results in order, at most ``2 * workers`` in flight.

    NIfTI decompression and numpy release the GIL, so threads overlap them; the bound keeps
    memory to a few cases. Closing the iterator early cancels the queued work.
    """
    executor = ThreadPoolExecutor(max(1, workers))
    pending: collections.deque = collections.deque()
    try:
        for item in items:
            pending.append(executor.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _check_out(out: Path) -> None:
    if (out / MANIFEST).exists():
        raise TfsynthError(f"{out}: already prepared ({MANIFEST} exists); choose a new output directory or delete it")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TfsynthError(f"{out}: exists and is not an empty directory")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def prepare(
    src: str | os.PathLike,
    out: str | os.PathLike,
    size: int | None = None,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    skip_bad: bool = False,
    shard_slices: int | None = None,
    min_brain_fraction: float = MIN_BRAIN_FRACTION,
    progress: bool | None = False,
    warn: Callable[[str], None] = _warn,
    workers: int = DEFAULT_WORKERS,
    cache_bytes: int = CACHE_BYTES,
) -> dict:
    """Validates, normalises and writes a BraTS cohort as sharded TFRecords.

    Args:
        src: folder of BraTS case folders (either naming era).
        out: output directory; must not exist or be empty. Holds ``manifest.json`` and
            ``{split}-{i:05d}-of-{n:05d}.tfrecord`` when done.
        size: slice height = width, a multiple of 4 (centre crop or zero pad, no resampling).
            Default: the largest in-plane size of the cohort rounded up to a multiple of 4.
        split: train/val/test as proportions or case counts (see `split_counts`).
        seed: seed of the patient split and of the case order inside the shards.
        skip_bad: report bad files/cases through ``warn`` and leave them out instead of failing.
        shard_slices: slices per shard; default ~128 MB per shard.
        min_brain_fraction: keep axial slices whose brain covers at least this fraction.
        progress: tqdm progress bars (None: only on a terminal).
        warn: receives one-line warnings.
        workers: threads reading and serializing cases.
        cache_bytes: keep validated cases in memory up to this size so pass 2 need not re-read them.

    Returns:
        The manifest (also written as ``out/manifest.json``).

    Raises:
        TfsynthError: a bad argument, an unusable ``out``, or (without ``skip_bad``) the first
            bad case, naming the file and reason. Nothing is written then.
    """
    src, out = Path(src), Path(out)
    if size is not None and (int(size) != size or size < 4 or size % 4):
        raise TfsynthError(f"--size must be a positive multiple of 4 (the generator downsamples twice), got {size}")
    if not 0 <= min_brain_fraction < 1:
        raise TfsynthError(f"min_brain_fraction must be in [0, 1), got {min_brain_fraction}")
    if shard_slices is not None and shard_slices < 1:
        raise TfsynthError(f"shard_slices must be >= 1, got {shard_slices}")
    split_counts(1, split)  # argument check before any reading
    _check_out(out)

    skipped: list[str] = []

    def skip(message: str) -> None:
        skipped.append(message)
        warn(f"skipping: {message}")

    def check(case: Case) -> tuple[Case, LoadedCase | None, CasePlan | TfsynthError]:
        try:
            loaded = validate_case(case, warn=warn)
            return case, loaded, plan_case(loaded, min_brain_fraction)
        except TfsynthError as error:
            return case, None, error

    disable = None if progress is None else not progress  # tqdm: None = only on a terminal
    cases = find_cases(src, on_bad=skip if skip_bad else None)
    plans: dict[str, CasePlan] = {}
    cache = _Cache(cache_bytes)  # pass 2 re-reads only the cases that did not fit
    bar = tqdm(total=len(cases), desc="validate", unit="case", disable=disable, leave=False)
    with contextlib.closing(ordered_map(check, cases, workers)) as results, bar:
        for case, loaded, result in results:
            bar.update(1)
            if isinstance(result, TfsynthError):
                if not skip_bad:
                    raise result
                skip(str(result))
                continue
            plans[case.case_id] = result
            cache.put(case.case_id, loaded)
    if not plans:
        raise TfsynthError(f"{src}: no valid cases left after skipping bad ones")

    max_hw = max(max(p.shape[:2]) for p in plans.values())
    size = int(size) if size is not None else 4 * math.ceil(max_hw / 4)
    shard_slices = shard_slices or max(1, TARGET_SHARD_BYTES // (size * size * (4 * NUM_CONTRASTS + 2)))
    splits = split_cases(list(plans), split, seed)
    for name in SPLITS:
        if not splits[name] and split[SPLITS.index(name)] > 0:
            warn(f"split {name!r} is empty: only {len(plans)} valid case(s)")
    zooms = {tuple(np.round(p.zooms, 4)) for p in plans.values()}
    if len(zooms) > 1:
        warn(f"cases have different voxel sizes {sorted(zooms)}; slices are not resampled")
    lr_axes = {p.lr_axis for p in plans.values()}
    if len(lr_axes) > 1:
        warn(f"cases differ in orientation (left-right slice axis {sorted(lr_axes, key=str)}); flips disabled")

    manifest: dict = {
        "format_version": FORMAT_VERSION,
        "tfsynth_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": str(src.resolve()),
        "contrasts": list(CONTRASTS),
        "image_size": size,
        "voxel_size_mm": list(next(iter(plans.values())).zooms),
        "slice_axis": 2,
        "slice_orientation": TRAINING_ORIENTATION,
        "slice_layout": "images[a, b, c] = normalized contrast c of volume[a, b, slice_index], centre-cropped/padded; "
        "volume = the file reoriented to slice_orientation (closest canonical axes, no interpolation)",
        "lr_axis": lr_axes.pop() if len(lr_axes) == 1 else None,
        "seed": seed,
        "split_request": [float(v) for v in split],
        "min_brain_fraction": min_brain_fraction,
        "normalization_method": {
            "low_percentile": LOW_PERCENTILE,
            "high_percentile": HIGH_PERCENTILE,
            "mask": "nonzero voxels of each volume",
            "formula": "clip((x - lo) / (hi - lo), 0, 1), 0 outside the mask",
        },
        "seg_labels": SEG_LABELS,
        "splits": {},
        "normalization": {},
        "original_shape": {},
        "crop": {},
        "cases": {},
        "skipped": skipped,
    }
    total = sum(len(p.slices) for p in plans.values())
    with atomic_directory(out) as tmp, tqdm(total=total, desc="write", unit="slice", disable=disable) as bar:
        for name in SPLITS:
            manifest["splits"][name] = _write_split(
                tmp, name, [plans[c] for c in splits[name]], size, shard_slices, manifest, bar, cache, workers, warn
            )
        write_json(tmp / MANIFEST, manifest)
    return manifest


class _Cache:
    """Validated cases kept from pass 1 for pass 2, up to a memory budget."""

    def __init__(self, budget: int):
        self.budget, self.used, self.cases = budget, 0, {}

    def put(self, case_id: str, loaded: LoadedCase) -> None:
        size = sum(v.nbytes for v in loaded.volumes.values()) + (loaded.seg.nbytes if loaded.seg is not None else 0)
        if self.used + size <= self.budget:
            self.cases[case_id] = loaded
            self.used += size

    def pop(self, case: Case) -> LoadedCase:
        """The cached case (released from the cache), else a fresh, re-validated read (warned about in pass 1)."""
        return self.cases.pop(case.case_id, None) or validate_case(case, warn=lambda message: None)


def _write_split(
    folder: Path,
    name: str,
    plans: list[CasePlan],
    size: int,
    shard_slices: int,
    manifest: dict,
    bar,
    cache: _Cache,
    workers: int,
    warn: Callable[[str], None],
) -> dict:
    """Pass 2 for one split: serializes its cases and writes its shards; fills the per-case manifest entries."""
    n_slices = sum(len(p.slices) for p in plans)
    n_shards = math.ceil(n_slices / shard_slices)
    shards: list[dict] = []
    buffer: list[bytes] = []

    def flush() -> None:
        file = tfrecord().shard_name(name, len(shards), n_shards)
        with atomic_path(folder / file) as tmp:
            info = tfrecord().write_shard(tmp, buffer)
        shards.append({"file": file, **info})
        buffer.clear()

    def serialize(plan: CasePlan) -> tuple[CasePlan, list[bytes], int]:
        return (plan, *case_records(cache.pop(plan.case), plan, size))

    with contextlib.closing(ordered_map(serialize, plans, workers)) as results:
        for plan, records, cropped in results:
            for record in records:
                buffer.append(record)
                if len(buffer) == shard_slices:
                    flush()
            bar.update(len(records))
            case_id = plan.case.case_id
            if cropped:
                warn(f"case {case_id}: --size {size} crops away {cropped} brain voxels")
            if len(plan.norm) < 2:
                warn(f"case {case_id}: only {len(plan.norm)} contrast, so no source/target pair; unusable for training")
            manifest["normalization"][case_id] = {c: p.to_dict() for c, p in plan.norm.items()}
            manifest["original_shape"][case_id] = list(plan.shape)
            manifest["crop"][case_id] = {**crop_info(plan.shape[:2], size), "brain_voxels_cropped": cropped}
            manifest["cases"][case_id] = {
                "split": name,
                "naming": plan.case.naming,
                "present": [c for c in CONTRASTS if c in plan.norm],
                "has_seg": plan.case.seg is not None,
                "slices": plan.slices,
                "voxel_size_mm": list(plan.zooms),
                "orientation": plan.orientation,
                "affine": np.round(plan.affine, 6).tolist(),
                "files": {
                    c: os.path.relpath(p.resolve(), manifest["source"])
                    for c, p in {**plan.case.files, "seg": plan.case.seg}.items()
                    if p is not None
                },
            }
    if buffer:
        flush()
    return {"cases": [p.case.case_id for p in plans], "slices": n_slices, "shards": shards}
