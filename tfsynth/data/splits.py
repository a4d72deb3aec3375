"""The patient split of a cohort into train, val and test (never slices: a patient's slices stay together)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tfsynth.data.manifest import SPLITS
from tfsynth.errors import TfsynthError


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
