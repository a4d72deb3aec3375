"""The BraSyn protocol: each contrast dropped in turn and synthesised from the others.

The library under ``tfsynth evaluate --protocol brasyn --model PATH --data PATH --out DIR
[--input-sizes 1 2 3]`` (the command line is `tfsynth.commands.evaluate`'s).

For every test patient and every target contrast it has, the target is synthesised from every
non-empty subset of the patient's other contrasts whose size is in ``--input-sizes`` (default
1, 2 and 3: with four contrasts, 3 + 3 + 1 subsets per target); the three-input case is BraSyn's
task, the one-input case the paper's. Two methods are scored on the same inputs: the model
(its ``complete`` signature, `complete_stack`) and the per-target linear regression on the
inputs' intensities (`tfsynth.baselines.linear_regression`), fitted where `resolve_linear_baseline` says.

Scores (`brasyn_scores`), BraSyn's way: the real and the synthesised image are each clipped to
their own 0.5 / 99.5 percentiles and scaled to [0, 1] (`brasyn_scale`); then SSIM inside the
tumour (seg > 0), in the healthy brain (brain minus tumour) and in the whole brain, PSNR and NMAE
over the brain (`tfsynth.metrics`). Per-patient values; tables give mean ± sample std.

Outputs in ``--out`` (built in a temporary directory and renamed into place): ``metrics.csv``
(one row per patient, target, inputs and method), ``summary.json``, ``summary.md`` (the
three-input table against the linear baseline and the best single input, and quality against
the number of inputs), ``linear_baseline.json``, and ``figures/``: ``quality_vs_inputs.png`` and
``complete_{target}.png`` example grids.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from tfsynth import __version__
from tfsynth.atomic import atomic_directory
from tfsynth.baselines.linear_regression import LinearRegressionBaseline
from tfsynth.contrasts import CONTRASTS
from tfsynth.errors import TfsynthError
from tfsynth.evaluation.brasyn import (
    evaluate_completion,
)
from tfsynth.evaluation.brasyn_report import summarize_completion, write_outputs


def evaluate_completion_report(
    synthesizer,
    patients: Sequence,
    out: str | os.PathLike,
    linear: Mapping[str, LinearRegressionBaseline],
    info: dict,
    sizes: Sequence[int] = (1, 2, 3),
    progress: bool = False,
    replace: bool = False,
) -> dict:
    """Evaluates and writes the report directory atomically (see the module docstring).

    Args:
        synthesizer: as for `evaluate_completion`.
        patients: the cohort (`tfsynth.commands.evaluate.Patient`).
        out: the report directory (must not exist unless ``replace``).
        linear: case id -> fitted linear baseline.
        info: provenance (model, data, data_kind, baseline description).
        sizes: the numbers of inputs to score (each 1..3).

    Returns:
        The summary dict (`summarize_completion`).

    Raises:
        TfsynthError: ``out`` exists, a size outside 1..3, or nothing to score.
    """
    out = Path(out)
    if out.exists() and not replace:
        raise TfsynthError(f"{out} already exists; choose a new --out or pass --overwrite")
    sizes = sorted(set(int(n) for n in sizes))
    if not sizes or sizes[0] < 1 or sizes[-1] > len(CONTRASTS) - 1:
        raise TfsynthError(f"--input-sizes must be numbers from 1 to {len(CONTRASTS) - 1}, got {sizes}")
    rows, examples = evaluate_completion(synthesizer, patients, linear, sizes, progress)
    summary = summarize_completion(rows)
    info = {
        **info,
        "protocol": "brasyn",
        "input_sizes": sizes,
        "patients": len(patients),
        "patient_ids": [p.case_id for p in patients],
        "notes": [f"{p.case_id}: {note}" for p in patients for note in p.notes],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tfsynth_version": __version__,
    }
    with atomic_directory(out, replace=replace) as tmp:
        write_outputs(tmp, rows, summary, examples, info, dict(linear))
    return summary


def resolve_linear_baseline(
    baseline_arg: str | None, data: Path, model: Path, patients: Sequence
) -> tuple[dict[str, LinearRegressionBaseline], str]:
    """The linear baseline per patient and where it was fitted, in the order `tfsynth.commands.evaluate` uses
    for the lookup table: ``--baseline`` (a saved linear-baseline JSON or a prepared directory,
    train split), a prepared ``--data``'s train split, the run's training data, else
    leave-one-patient-out on the evaluated patients.

    Raises:
        TfsynthError: a bad ``--baseline`` file, or leave-one-out with a single patient.
    """
    from tfsynth.evaluation.baseline_source import resolve_baseline

    return resolve_baseline(baseline_arg, data, model, patients, kind=LinearRegressionBaseline)
