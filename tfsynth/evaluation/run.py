"""The whole evaluation protocol, from a model and data paths to a report directory written atomically.

`evaluate_model` is what ``tfsynth evaluate`` runs; `evaluate` scores an already loaded cohort with
any synthesizer (tests use an oracle and an identity synthesizer).
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tfsynth import __version__
from tfsynth.atomic import atomic_directory
from tfsynth.baselines.lookup_table import IntensityMappingBaseline
from tfsynth.data.manifest import is_prepared
from tfsynth.errors import TfsynthError
from tfsynth.evaluation.baseline_source import resolve_baseline
from tfsynth.evaluation.patients import Patient, load_brats_patients, load_prepared_patients
from tfsynth.evaluation.report import write_outputs
from tfsynth.evaluation.scoring import evaluate_patients, summarize
from tfsynth.quality.niqe import niqe_patch_size


def _refuse_existing(out: Path, replace: bool) -> None:
    if out.exists() and not replace:
        raise TfsynthError(f"{out} already exists; choose a new --out or pass --overwrite")


def evaluate(
    synthesizer,
    patients: Sequence[Patient],
    out: str | os.PathLike,
    baselines: dict[str, IntensityMappingBaseline],
    info: dict,
    progress: bool = False,
    replace: bool = False,
) -> dict:
    """Evaluates and writes the report directory atomically (an interrupted run leaves no half report).

    Args:
        synthesizer: object with ``synthesize_normalized(images01 [N, S, S], source, target) -> [N, S, S]``.
        patients: the cohort (all on one canvas size).
        out: the report directory (must not exist unless ``replace``).
        baselines: case id -> fitted baseline.
        info: provenance for summary.md/json: ``model``, ``data``, ``data_kind``, ``baseline``.
        progress: show a progress bar.
        replace: replace an existing ``out``.

    Returns:
        The summary dict (see `tfsynth.evaluation.scoring.summarize`).

    Raises:
        TfsynthError: ``out`` exists and not ``replace``.
    """
    out = Path(out)
    _refuse_existing(out, replace)
    rows, examples = evaluate_patients(synthesizer, patients, baselines, progress)
    summary = summarize(rows)
    size = patients[0].brain.shape[1:]
    info = {
        **info,
        "patients": len(patients),
        "patient_ids": [p.case_id for p in patients],
        "niqe_patch": niqe_patch_size(*size),
        "notes": [f"{p.case_id}: {note}" for p in patients for note in p.notes],
        "image_size": list(size),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tfsynth_version": __version__,
    }
    with atomic_directory(out, replace=replace) as tmp:
        write_outputs(tmp, rows, summary, examples, info, baselines)
    return summary


def load_cohort(
    model: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str = "test",
    max_patients: int | None = None,
    resample: bool = True,
    replace: bool = False,
    log: Callable[[str], None] | None = None,
) -> tuple[object, list[Patient], str]:
    """The checks and loading every evaluation protocol starts with (arguments as `evaluate_model`).

    Returns:
        ``(synthesizer, patients, data_kind)``: the loaded model, the first ``max_patients``
        patients, and a description of the data for the report.

    Raises:
        TfsynthError: ``out`` exists and not ``replace``; ``data`` missing; ``max_patients`` < 1;
            an unreadable model or case.
    """
    from tfsynth.synthesis.local import load_synthesizer

    log = log or (lambda message: print(message, file=sys.stderr))
    out, data, model = Path(out), Path(data), Path(model)
    # Checked before loading the model, which takes seconds, so a mistyped path fails at once.
    _refuse_existing(out, replace)
    if not data.exists():
        raise TfsynthError(f"{data}: no such file or directory")
    if max_patients is not None and max_patients < 1:
        raise TfsynthError(f"--max-patients must be >= 1, got {max_patients}")
    synthesizer = load_synthesizer(model)
    if is_prepared(data):
        patients, kind = load_prepared_patients(data, split), f"prepared, {split} split"
    else:
        meta = synthesizer.metadata
        voxel_size = meta.voxel_size_mm if resample else None
        patients, kind = load_brats_patients(data, meta.image_size, voxel_size), "BraTS folder"
    patients = patients[:max_patients]
    for patient in patients:
        for note in patient.notes:
            log(f"note: {patient.case_id}: {note}")
    return synthesizer, patients, kind


def evaluate_model(
    model: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str = "test",
    baseline: str | None = None,
    max_patients: int | None = None,
    resample: bool = True,
    replace: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Evaluates a saved model on held-out cases and writes the report into ``out``.

    Args:
        model: a run directory, an exported SavedModel or a TF-Serving base (`tfsynth.synthesis.local`).
        data: a prepared directory (its ``split``) or a BraTS-layout folder (resampled to the
            model's voxel size when ``resample``; see `load_brats_patients`).
        out: the report directory to create.
        split: the split of a prepared ``data``.
        baseline: a baseline JSON or a prepared directory to fit it on (see `resolve_baseline`).
        max_patients: evaluate only the first N patients (sorted by id); None: all.
        resample: resample a BraTS folder to the model's voxel size.
        replace: replace an existing ``out``.
        progress: show a progress bar.
        log: called with each patient note (default: printed to stderr).

    Returns:
        The summary dict (see `tfsynth.evaluation.scoring.summarize`).

    Raises:
        TfsynthError: ``out`` exists and not ``replace``; ``data`` missing; ``max_patients`` < 1;
            an unreadable model or case.
    """
    synthesizer, patients, kind = load_cohort(
        model, data, out, split=split, max_patients=max_patients, resample=resample, replace=replace, log=log
    )
    model, data = Path(model), Path(data)
    baselines, baseline_source = resolve_baseline(baseline, data, model, patients)
    info = {"model": str(model), "data": str(data), "data_kind": kind, "baseline": baseline_source}
    return evaluate(synthesizer, patients, out, baselines, info, progress=progress, replace=replace)
