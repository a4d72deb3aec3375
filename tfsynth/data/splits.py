"""The patient split of a cohort into train, val and test (never slices: a patient's slices stay together).

A patient may have several cases: BraTS 2023+ ids name the timepoint in their last field
(``BraTS-GLI-02060-100`` and ``BraTS-GLI-02060-101`` are two scans of patient ``BraTS-GLI-02060``,
as in the BraTS 2024 post-treatment glioma set), and BIDS ids name the session
(``sub-07_ses-02``). `patient_of` groups them, so that one patient's timepoints never land in two
splits; BraTS 2018-2021 ids (``BraTS20_Training_001``, ``BraTS2021_00000``) and any other id are
one case per patient.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from tfsynth.data.manifest import SPLITS
from tfsynth.errors import TfsynthError


def split_counts(n: int, split: Sequence[float]) -> tuple[int, int, int]:
    """Number of patients per split (train, val, test) out of ``n`` (`split_cases` counts patients).

    ``split`` is three non-negative numbers: counts if they are integers summing to
    ``n``, otherwise proportions (normalised by their sum). Proportions are rounded by
    largest remainder, then every split with a nonzero proportion gets at least one patient
    while ``n`` allows (taken from the largest split): 4 patients at 0.5/0.25/0.25 -> 2/1/1,
    3 at 0.8/0.1/0.1 -> 1/1/1.
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


# <cohort>-<patient number>-<timepoint number>, the cohort possibly of two fields (BraTS-MEN-RT).
_BRATS_TIMEPOINT = re.compile(r"^(?P<patient>BraTS(?:-[A-Za-z]+)+-\d+)-\d+$", re.IGNORECASE)
# A BIDS id starts with the subject; sessions, acquisitions and runs follow after "_".
_BIDS_SUBJECT = re.compile(r"^(?P<patient>sub-[A-Za-z0-9]+)_")
PATIENT_RULE = (
    "BraTS 2023+ ids <cohort>-<patient>-<timepoint> (BraTS-GLI-02060-100): one patient per id without "
    "its last field; BIDS ids sub-<label>_...: one patient per subject; any other id (BraTS 2018-2021): "
    "one patient per case"
)


def patient_of(case_id: str) -> str:
    """The patient a case belongs to, by `PATIENT_RULE`.

    ``BraTS-GLI-02060-101`` -> ``BraTS-GLI-02060``; ``sub-07_ses-02`` -> ``sub-07``;
    ``BraTS20_Training_001`` -> itself.
    """
    for pattern in (_BRATS_TIMEPOINT, _BIDS_SUBJECT):
        match = pattern.match(case_id)
        if match:
            return match["patient"]
    return case_id


def group_by_patient(case_ids: Sequence[str]) -> dict[str, list[str]]:
    """Patient id -> its case ids, both sorted (`patient_of`)."""
    groups: dict[str, list[str]] = {}
    for case_id in sorted(case_ids):
        groups.setdefault(patient_of(case_id), []).append(case_id)
    return dict(sorted(groups.items()))


def split_cases(
    case_ids: Sequence[str], split: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, list[str]]:
    """Splits patients (never slices, never one patient's timepoints) into train/val/test.

    The cases are grouped by patient (`group_by_patient`); the sorted patient ids are permuted
    with ``numpy.random.default_rng(seed)``, and the first patients go to train, then val, then
    test, so ``split`` counts patients (`split_counts`). Deterministic for a seed; with one case
    per patient the split is the same as a split of the case ids. Each list holds the cases of
    its patients in that permuted order (a patient's cases sorted).
    """
    groups = group_by_patient(case_ids)
    patients = list(groups)
    counts = split_counts(len(patients), split)
    order = [patients[i] for i in np.random.default_rng(seed).permutation(len(patients))]
    bounds = np.cumsum((0,) + counts)
    return {
        name: [case for patient in order[bounds[i] : bounds[i + 1]] for case in groups[patient]]
        for i, name in enumerate(SPLITS)
    }
