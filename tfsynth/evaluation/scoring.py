"""Scores every (patient, source, target, method) and summarises the scores across patients.

Three methods are scored on the target's brain slices: the model, the intensity-mapping baseline
(`tfsynth.baselines.lookup_table`) and the identity (the source image itself, the floor any method must clear).
Metrics (`tfsynth.metrics`) in each region are per-patient values; the summary gives their mean
and sample std across patients.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from tfsynth import metrics
from tfsynth.baselines.lookup_table import IntensityMappingBaseline
from tfsynth.evaluation.patients import Patient
from tfsynth.quality.regions import REGIONS

METHODS: tuple[str, ...] = ("model", "baseline", "identity")
BATCH_SLICES = 32  # slices per synthesizer call: bounds memory for a 155-slice volume
FIGURE_SLICES = 3
CSV_COLUMNS = ("patient", "source", "target", "region", "method", *metrics.METRICS)


def _synthesize(synthesizer, images: np.ndarray, source: str, target: str) -> np.ndarray:
    out = [
        synthesizer.synthesize_normalized(images[i : i + BATCH_SLICES], source, target)
        for i in range(0, len(images), BATCH_SLICES)
    ]
    return np.clip(np.concatenate(out).astype(np.float32), 0.0, 1.0)


def figure_slices(patient: Patient) -> np.ndarray:
    """Up to three representative slices (indices into the patient's stack): largest tumour,
    largest brain, and a quarter of the way up the brain."""
    area = patient.brain.sum(axis=(1, 2))
    picks = [int(np.argmax(area))]
    if patient.tumor is not None and (patient.tumor > 0).any():
        picks.insert(0, int(np.argmax((patient.tumor > 0).sum(axis=(1, 2)))))
    with_brain = np.flatnonzero(area > 0)
    picks.append(int(with_brain[len(with_brain) // 4]))
    return np.array(sorted(dict.fromkeys(picks))[:FIGURE_SLICES])


def evaluate_patients(
    synthesizer, patients: Sequence[Patient], baselines: dict[str, IntensityMappingBaseline], progress: bool = False
) -> tuple[list[dict], dict]:
    """Scores every (patient, source, target, method) and keeps example slices for figures.

    Masks: the brain is the union over contrasts; the synthesised image is zeroed outside it (the
    model's normalised input cannot tell background from dark brain); the baseline and identity
    are zero there by construction.

    Args:
        synthesizer: object with ``synthesize_normalized(images01 [N, S, S], source, target) -> [N, S, S]``.
        patients: the cohort; every ordered pair of a patient's present contrasts is scored.
        baselines: case id -> fitted baseline.
        progress: show a tqdm bar.

    Returns:
        ``(rows, examples)``: CSV rows (dicts keyed by `CSV_COLUMNS`, NaN where a metric is not
        defined in a region) and, per ``(source, target)``, the figure data of the first patient
        that has the pair.
    """
    from tqdm import tqdm

    rows: list[dict] = []
    examples: dict[tuple[str, str], dict] = {}
    jobs = [(p, s, t) for p in patients for s in p.images for t in p.images if s != t]
    for patient, source, target in tqdm(jobs, desc="evaluate", unit="pair", disable=not progress):
        real = patient.images[target]
        predictions = {
            "model": _synthesize(synthesizer, patient.images[source], source, target) * patient.brain,
            "baseline": baselines[patient.case_id].predict(patient.images[source], source, target, patient.brain),
            "identity": patient.images[source],
        }
        for method, prediction in predictions.items():
            values = metrics.volume_metrics(real, prediction, patient.brain, patient.tumor)
            regions = sorted({region for _, region in values}, key=REGIONS.index)
            for region in regions:
                row = {
                    "patient": patient.case_id,
                    "source": source,
                    "target": target,
                    "region": region,
                    "method": method,
                }
                row.update({metric: values.get((metric, region), float("nan")) for metric in metrics.METRICS})
                rows.append(row)
        if (source, target) not in examples:
            picks = figure_slices(patient)
            examples[(source, target)] = {
                "case_id": patient.case_id,
                "slice_indices": patient.slice_indices[picks].tolist(),
                "input": patient.images[source][picks],
                "synthesized": predictions["model"][picks],
                "baseline": predictions["baseline"][picks],
                "real": real[picks],
            }
    return rows, examples


def summarize(rows: Iterable[dict]) -> dict:
    """``{method: {region: {metric: {source: {target: {"mean", "std", "n"}}}}}}`` across patients.

    NaN values are left out of a cell; a cell with no finite value (e.g. NIQE in tumour regions,
    which it does not define) is left out of the summary.
    """
    grouped: dict[tuple, list[float]] = {}
    for row in rows:
        for metric in metrics.METRICS:
            key = (row["method"], row["region"], metric, row["source"], row["target"])
            grouped.setdefault(key, []).append(row[metric])
    summary: dict = {}
    for (method, region, metric, source, target), values in grouped.items():
        mean, std, n = metrics.mean_std(values)
        if n == 0:
            continue
        cell = summary.setdefault(method, {}).setdefault(region, {}).setdefault(metric, {}).setdefault(source, {})
        cell[target] = {"mean": mean, "std": std, "n": n}
    return summary


def model_wins(summary: dict, region: str, metric: str, source: str, target: str) -> bool:
    """Whether the model's mean beats every other method's mean for one cell (ties do not win)."""
    means = {
        method: cell["mean"]
        for method in summary
        if (cell := summary[method].get(region, {}).get(metric, {}).get(source, {}).get(target)) is not None
    }
    if "model" not in means or not np.isfinite(means["model"]):
        return False
    sign = 1.0 if metrics.HIGHER_IS_BETTER[metric] else -1.0
    return all(sign * (means["model"] - mean) > 0 for method, mean in means.items() if method != "model")
