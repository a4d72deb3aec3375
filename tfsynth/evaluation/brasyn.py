"""The BraSyn protocol's scores and its run over a cohort: each contrast dropped in turn and
synthesised from the other contrasts (``tfsynth evaluate --protocol brasyn`` is the command).

Scores (`brasyn_scores`), BraSyn's way: the real and the synthesised image are each clipped to
their own 0.5 / 99.5 percentiles and scaled to [0, 1] (`brasyn_scale`); then SSIM inside the
tumour (seg > 0), in the healthy brain (brain minus tumour) and in the whole brain, PSNR and NMAE
over the brain (`tfsynth.quality`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from tfsynth.baselines.linear_regression import LinearRegressionBaseline
from tfsynth.contrasts import CONTRASTS
from tfsynth.errors import TfsynthError
from tfsynth.quality.full_reference import nmae, psnr, ssim_in_regions
from tfsynth.quality.regions import region_masks

PROTOCOLS: tuple[str, ...] = ("paper", "brasyn")
METHODS: tuple[str, ...] = ("model", "linear")
SCORES: tuple[str, ...] = ("psnr", "nmae", "ssim_tumor", "ssim_healthy", "ssim_brain")
HIGHER_IS_BETTER = {"psnr": True, "nmae": False, "ssim_tumor": True, "ssim_healthy": True, "ssim_brain": True}
CSV_COLUMNS = ("patient", "target", "inputs", "n_inputs", "method", *SCORES)
BATCH_SLICES = 32
LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5
SCORE_NAMES = {
    "psnr": "PSNR (dB)",
    "nmae": "NMAE",
    "ssim_tumor": "SSIM, tumour",
    "ssim_healthy": "SSIM, healthy brain",
    "ssim_brain": "SSIM, brain",
}
DISPLAY_NAMES = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR"}


def brasyn_scale(image: np.ndarray, low: float = LOW_PERCENTILE, high: float = HIGH_PERCENTILE) -> np.ndarray:
    """BraSyn's intensity scaling: clip to the image's own percentiles, scale to [0, 1].

    As the challenge's evaluation does, the percentiles are over all of the image's voxels and
    the lower one is floored at 0 (background stays 0). A constant image gives zeros.

    Args:
        image: ``[N, H, W]`` (any shape) intensities.

    Returns:
        float64 array of the same shape in [0, 1].
    """
    image = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(image, [low, high])
    lo = max(lo, 0.0)
    if hi <= lo:
        return np.zeros_like(image)
    return (np.clip(image, lo, hi) - lo) / (hi - lo)


def brasyn_scores(real: np.ndarray, synthesized: np.ndarray, brain: np.ndarray, tumor=None) -> dict[str, float]:
    """The scores of one synthesised stack against the real one (see the module docstring).

    Args:
        real, synthesized: ``[N, H, W]``, any intensity scale (each is scaled by `brasyn_scale`).
        brain: bool ``[N, H, W]``.
        tumor: segmentation labels ``[N, H, W]`` (> 0 is tumour), or None: the tumour SSIM is NaN
            and the healthy brain is the whole brain.

    Returns:
        ``{score: value}`` for every name in `SCORES` (NaN for an empty region).
    """
    real, synthesized = brasyn_scale(real), brasyn_scale(synthesized)
    regions = region_masks(brain, tumor)
    ssim = ssim_in_regions(
        real,
        synthesized,
        {
            "ssim_tumor": regions.get("tumor", np.zeros_like(regions["brain"])),
            "ssim_healthy": regions.get("nontumor", regions["brain"]),
            "ssim_brain": regions["brain"],
        },
    )
    return {
        "psnr": psnr(real, synthesized, regions["brain"]),
        "nmae": nmae(real, synthesized, regions["brain"]),
        **ssim,
    }


def input_subsets(available: Iterable[str], target: str, sizes: Sequence[int]) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``available`` without ``target`` whose size is in ``sizes``, canonical order."""
    others = [c for c in CONTRASTS if c in set(available) and c != target]
    return [subset for n in sorted(set(sizes)) for subset in itertools.combinations(others, n)]


def complete_stack(synthesizer, images01: Mapping[str, np.ndarray], target: str) -> np.ndarray:
    """The model's completion of a slice stack, in batches: ``{contrast: [N, S, S]}`` -> ``[N, S, S]`` in [0, 1]."""
    n = len(next(iter(images01.values())))
    out = [
        synthesizer.complete_normalized({c: image[i : i + BATCH_SLICES] for c, image in images01.items()}, target)
        for i in range(0, n, BATCH_SLICES)
    ]
    return np.clip(np.concatenate(out).astype(np.float32), 0.0, 1.0)


def evaluate_completion(
    synthesizer,
    patients: Sequence,
    linear: Mapping[str, LinearRegressionBaseline],
    sizes: Sequence[int] = (1, 2, 3),
    progress: bool = False,
) -> tuple[list[dict], dict]:
    """Scores every (patient, target, input subset, method) and keeps example slices.

    Args:
        synthesizer: provides ``complete_normalized({contrast: [N, S, S]}, target) -> [N, S, S]``.
        patients: `tfsynth.commands.evaluate.Patient` objects (normalised slices on the model's canvas).
        linear: case id -> fitted `LinearRegressionBaseline`.
        sizes: the numbers of inputs to score.

    Returns:
        ``(rows, examples)``: CSV rows keyed by `CSV_COLUMNS`, and per target the figure data of
        the first patient scored with the most inputs.
    """
    from tqdm import tqdm

    from tfsynth.evaluation.scoring import figure_slices

    rows: list[dict] = []
    examples: dict[str, dict] = {}
    jobs = [(p, t, s) for p in patients for t in p.images for s in input_subsets(p.images, t, sizes)]
    if not jobs:
        raise TfsynthError(f"no patient has a target and {'/'.join(map(str, sizes))} other contrast(s) to score")
    for patient, target, inputs in tqdm(jobs, desc="evaluate", unit="subset", disable=not progress):
        images = {c: patient.images[c] for c in inputs}
        predictions = {
            "model": complete_stack(synthesizer, images, target) * patient.brain,
            "linear": linear[patient.case_id].predict(images, target, patient.brain),
        }
        real = patient.images[target]
        for method, prediction in predictions.items():
            row = {"patient": patient.case_id, "target": target, "inputs": "+".join(inputs)}
            row.update({"n_inputs": len(inputs), "method": method})
            row.update(brasyn_scores(real, prediction, patient.brain, patient.tumor))
            rows.append(row)
        best = examples.get(target)
        if best is None or (len(inputs) > best["n_inputs"]):
            picks = figure_slices(patient)
            examples[target] = {
                "case_id": patient.case_id,
                "n_inputs": len(inputs),
                "slice_indices": patient.slice_indices[picks].tolist(),
                "columns": {
                    **{f"input {DISPLAY_NAMES[c]}": images[c][picks] for c in inputs},
                    "linear": predictions["linear"][picks],
                    "synthesized": predictions["model"][picks],
                    f"real {DISPLAY_NAMES[target]}": real[picks],
                },
            }
    return rows, examples
