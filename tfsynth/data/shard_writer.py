"""Pass 2 of ``prepare``: cases serialized on a few threads, in order, into the shards of a split."""

from __future__ import annotations

import collections
import contextlib
import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tfsynth.atomic import atomic_path
from tfsynth.contrasts import CONTRASTS
from tfsynth.data.brats import Case, LoadedCase, validate_case
from tfsynth.data.case_plan import CasePlan, case_records
from tfsynth.data.normalize import crop_info
from tfsynth.data.spacing import resample_in_plane
from tfsynth.data.splits import patient_of


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


class CaseCache:
    """Validated cases kept from pass 1 for pass 2, up to a memory budget.

    Attributes:
        voxel_size: the cohort's target voxel size once known (`tfsynth.data.spacing`): a case
            read afresh is brought to it; None: cases are read as they are.
    """

    def __init__(self, budget: int):
        self.budget, self.used, self.cases = budget, 0, {}
        self.voxel_size: tuple[float, float, float] | None = None

    @staticmethod
    def _nbytes(loaded: LoadedCase) -> int:
        return sum(v.nbytes for v in loaded.volumes.values()) + (loaded.seg.nbytes if loaded.seg is not None else 0)

    def put(self, case_id: str, loaded: LoadedCase) -> None:
        size = self._nbytes(loaded)
        if self.used + size <= self.budget:
            self.cases[case_id] = loaded
            self.used += size

    def pop(self, case: Case) -> LoadedCase:
        """The cached case (released from the cache), else a fresh, re-validated read (warned about in
        pass 1) at ``voxel_size`` in-plane."""
        cached = self.cases.pop(case.case_id, None)
        if cached is not None:
            self.used -= self._nbytes(cached)
            return cached
        loaded = validate_case(case, warn=lambda message: None)
        return loaded if self.voxel_size is None else resample_in_plane(loaded, self.voxel_size)


def write_split(
    folder: Path,
    name: str,
    plans: list[CasePlan],
    size: int,
    shard_slices: int,
    manifest: dict,
    bar,
    cache: CaseCache,
    workers: int,
    warn: Callable[[str], None],
) -> dict:
    """Pass 2 for one split: serializes its cases and writes its shards; fills the per-case manifest entries."""
    from tfsynth.data import tfrecord  # here, not at the top: validation errors should not wait for TensorFlow

    n_slices = sum(len(p.slices) for p in plans)
    n_shards = math.ceil(n_slices / shard_slices)
    shards: list[dict] = []
    buffer: list[bytes] = []

    def flush() -> None:
        file = tfrecord.shard_name(name, len(shards), n_shards)
        with atomic_path(folder / file) as tmp:
            info = tfrecord.write_shard(tmp, buffer)
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
                "patient": patient_of(case_id),
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
