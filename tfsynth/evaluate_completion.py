"""The BraSyn protocol: each contrast dropped in turn and synthesised from the others.

``tfsynth evaluate --protocol brasyn --model PATH --data PATH --out DIR [--input-sizes 1 2 3]``

For every test patient and every target contrast it has, the target is synthesised from every
non-empty subset of the patient's other contrasts whose size is in ``--input-sizes`` (default
1, 2 and 3: with four contrasts, 3 + 3 + 1 subsets per target); the three-input case is BraSyn's
task, the one-input case the paper's. Two methods are scored on the same inputs: the model
(its ``complete`` signature, `complete_stack`) and the per-target linear regression on the
inputs' intensities (`tfsynth.linear_baseline`), fitted where `resolve_linear_baseline` says.

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

import argparse
import datetime
import itertools
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from . import __version__, metrics
from .atomic import atomic_directory
from .contrasts import CONTRASTS
from .errors import TfsynthError
from .linear_baseline import LinearRegressionBaseline

PROTOCOLS: tuple[str, ...] = ("paper", "brasyn")
METHODS: tuple[str, ...] = ("model", "linear")
SCORES: tuple[str, ...] = ("psnr", "nmae", "ssim_tumor", "ssim_healthy", "ssim_brain")
HIGHER_IS_BETTER = {"psnr": True, "nmae": False, "ssim_tumor": True, "ssim_healthy": True, "ssim_brain": True}
CSV_COLUMNS = ("patient", "target", "inputs", "n_inputs", "method", *SCORES)
BATCH_SLICES = 32
LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5
_NAMES = {
    "psnr": "PSNR (dB)",
    "nmae": "NMAE",
    "ssim_tumor": "SSIM, tumour",
    "ssim_healthy": "SSIM, healthy brain",
    "ssim_brain": "SSIM, brain",
}
_SHOW = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR"}


# Scores ---------------------------------------------------------------------------------------


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
    regions = metrics.region_masks(brain, tumor)
    ssim = metrics.ssim_in_regions(
        real,
        synthesized,
        {
            "ssim_tumor": regions.get("tumor", np.zeros_like(regions["brain"])),
            "ssim_healthy": regions.get("nontumor", regions["brain"]),
            "ssim_brain": regions["brain"],
        },
    )
    return {
        "psnr": metrics.psnr(real, synthesized, regions["brain"]),
        "nmae": metrics.nmae(real, synthesized, regions["brain"]),
        **ssim,
    }


# Evaluation -----------------------------------------------------------------------------------


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
        patients: `tfsynth.evaluate.Patient` objects (normalised slices on the model's canvas).
        linear: case id -> fitted `LinearRegressionBaseline`.
        sizes: the numbers of inputs to score.

    Returns:
        ``(rows, examples)``: CSV rows keyed by `CSV_COLUMNS`, and per target the figure data of
        the first patient scored with the most inputs.
    """
    from tqdm import tqdm

    from .evaluation.scoring import figure_slices

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
                    **{f"input {_SHOW[c]}": images[c][picks] for c in inputs},
                    "linear": predictions["linear"][picks],
                    "synthesized": predictions["model"][picks],
                    f"real {_SHOW[target]}": real[picks],
                },
            }
    return rows, examples


def _cell(values: Sequence[float]) -> dict | None:
    mean, std, n = metrics.mean_std(values)
    return {"mean": mean, "std": std, "n": n} if n else None


def summarize_completion(rows: Iterable[dict]) -> dict:
    """Means across patients, three ways.

    Returns:
        ``{"by_size": {method: {target: {n_inputs: {score: cell}}}}, "by_inputs": {method: {target:
        {inputs: {score: cell}}}}, "best_single": {target: {score: {"inputs", **cell}}}}``, a cell
        being ``{"mean", "std", "n"}``; ``best_single`` is the model's best single input per target
        and score (by mean). ``n_inputs`` keys are strings (JSON).
    """
    by_size: dict[tuple, list[float]] = {}
    by_inputs: dict[tuple, list[float]] = {}
    for row in rows:
        for score in SCORES:
            by_size.setdefault((row["method"], row["target"], str(row["n_inputs"]), score), []).append(row[score])
            by_inputs.setdefault((row["method"], row["target"], row["inputs"], score), []).append(row[score])
    summary: dict = {"by_size": {}, "by_inputs": {}, "best_single": {}}
    for name, grouped in (("by_size", by_size), ("by_inputs", by_inputs)):
        for (method, target, key, score), values in grouped.items():
            cell = _cell(values)
            if cell is not None:
                summary[name].setdefault(method, {}).setdefault(target, {}).setdefault(key, {})[score] = cell
    for target, subsets in summary["by_inputs"].get("model", {}).items():
        for score in SCORES:
            singles = [(key, cells[score]) for key, cells in subsets.items() if "+" not in key and score in cells]
            if singles:
                sign = 1.0 if HIGHER_IS_BETTER[score] else -1.0
                key, cell = max(singles, key=lambda item: sign * item[1]["mean"])
                summary["best_single"].setdefault(target, {})[score] = {"inputs": key, **cell}
    return summary


def _fmt(score: str, cell: dict | None) -> str:
    if cell is None:
        return "—"
    digits = 2 if score == "psnr" else 3
    return f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"


def _better(score: str, a: dict | None, b: dict | None) -> bool:
    if a is None or b is None:
        return a is not None
    sign = 1.0 if HIGHER_IS_BETTER[score] else -1.0
    return sign * (a["mean"] - b["mean"]) > 0


def summary_markdown(summary: dict, info: dict) -> str:
    """The report: the most-inputs table (model vs linear regression vs best single input), then
    quality against the number of inputs. A model cell is bold where it beats both others."""
    lines = [
        "# tfsynth evaluation: missing-contrast completion (BraSyn protocol)",
        "",
        f"- model: `{info['model']}`",
        f"- data: `{info['data']}` ({info['data_kind']}), {info['patients']} patients: {', '.join(info['patient_ids'])}",
        f"- linear-regression baseline fitted on {info['baseline']}",
        "- each contrast dropped in turn and synthesised from every subset of the others of size "
        f"{', '.join(map(str, info['input_sizes']))}; per-patient scores over the brain slices, then mean ± std "
        "(sample) across patients",
        "- each image clipped to its own 0.5/99.5 percentiles and scaled to [0, 1] (BraSyn); SSIM (Gaussian "
        "sigma 1.5) averaged in the tumour (seg > 0), the healthy brain and the brain; PSNR (data range 1) and "
        "NMAE over the brain",
        f"- written {info['created']} by tfsynth {__version__}",
        *[f"- note: {note}" for note in info.get("notes", [])],
        "",
    ]
    by_size = summary["by_size"]
    sizes = sorted({int(n) for method in by_size.values() for target in method.values() for n in target})
    if sizes:
        top = str(max(sizes))
        lines += [
            f"## {top} input(s): model vs linear regression vs the model's best single input",
            "",
            "**bold**: the model with these inputs beats both others.",
            "",
            "| target | score | model | linear regression | best single input |",
            "|---|---|---|---|---|",
        ]
        for target in CONTRASTS:
            for score in SCORES:
                model = by_size.get("model", {}).get(target, {}).get(top, {}).get(score)
                if model is None:
                    continue
                linear = by_size.get("linear", {}).get(target, {}).get(top, {}).get(score)
                single = summary["best_single"].get(target, {}).get(score)
                text = _fmt(score, model)
                if _better(score, model, linear) and (single is None or _better(score, model, single)):
                    text = f"**{text}**"
                single_text = f"{_fmt(score, single)} ({_SHOW[single['inputs']]})" if single else "—"
                lines.append(f"| {_SHOW[target]} | {_NAMES[score]} | {text} | {_fmt(score, linear)} | {single_text} |")
        lines.append("")
    lines += ["## Quality against the number of inputs", ""]
    for score in SCORES:
        arrow = "higher is better" if HIGHER_IS_BETTER[score] else "lower is better"
        lines += [f"### {_NAMES[score]} ({arrow})", ""]
        lines += ["| target | method | " + " | ".join(f"{n} input(s)" for n in sizes) + " |"]
        lines += ["|---|---|" + "---|" * len(sizes)]
        for target in CONTRASTS:
            for method in METHODS:
                cells = by_size.get(method, {}).get(target)
                if cells is None:
                    continue
                lines.append(
                    f"| {_SHOW[target]} | {method} | "
                    + " | ".join(_fmt(score, cells.get(str(n), {}).get(score)) for n in sizes)
                    + " |"
                )
        lines.append("")
    return "\n".join(lines)


def write_outputs(out: Path, rows: list[dict], summary: dict, examples: dict, info: dict, linear: dict) -> None:
    """Writes every output into ``out`` (a fresh directory)."""
    from . import figures
    from .evaluation.report import write_tables

    write_tables(out, rows, CSV_COLUMNS, summary, info, summary_markdown(summary, info), linear, "linear_baseline.json")
    figure_dir = out / "figures"
    figure_dir.mkdir()
    figures.quality_vs_inputs(
        figure_dir / "quality_vs_inputs.png",
        summary["by_size"],
        ("psnr", "ssim_tumor", "ssim_healthy", "nmae"),
        {score: _NAMES[score] for score in SCORES},
    )
    for target, example in examples.items():
        figures.pair_grid(
            figure_dir / f"complete_{target}.png",
            None,
            target,
            example["case_id"],
            example["slice_indices"],
            example["columns"],
            error_of=("synthesized", f"real {_SHOW[target]}"),
        )


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
        patients: the cohort (`tfsynth.evaluate.Patient`).
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
    """The linear baseline per patient and where it was fitted, in the order `tfsynth.evaluate` uses
    for the lookup table: ``--baseline`` (a saved linear-baseline JSON or a prepared directory,
    train split), a prepared ``--data``'s train split, the run's training data, else
    leave-one-patient-out on the evaluated patients.

    Raises:
        TfsynthError: a bad ``--baseline`` file, or leave-one-out with a single patient.
    """
    from .evaluation.baseline_source import resolve_baseline

    return resolve_baseline(baseline_arg, data, model, patients, kind=LinearRegressionBaseline)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--protocol`` and ``--input-sizes`` of ``tfsynth evaluate``."""
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="paper",
        help="paper: each contrast alone in, the other three out (default); brasyn: each contrast dropped in turn "
        "and synthesised from the others (and from every smaller subset, see --input-sizes)",
    )
    parser.add_argument(
        "--input-sizes",
        type=int,
        nargs="+",
        default=[1, 2, 3],
        metavar="N",
        help="brasyn: the numbers of inputs to score (default 1 2 3)",
    )


def run(args: argparse.Namespace, synthesizer, patients: Sequence, data_kind: str) -> int:
    """``tfsynth evaluate --protocol brasyn`` once the model and patients are loaded."""
    out, data, model = Path(args.out), Path(args.data), Path(args.model)
    linear, source = resolve_linear_baseline(args.baseline, data, model, patients)
    info = {"model": str(model), "data": str(data), "data_kind": data_kind, "baseline": source}
    summary = evaluate_completion_report(
        synthesizer,
        patients,
        out,
        linear,
        info,
        args.input_sizes,
        progress=not args.quiet,
        replace=args.overwrite,
    )
    top = str(max(args.input_sizes))
    means = [cells[top]["psnr"]["mean"] for cells in summary["by_size"].get("model", {}).values() if top in cells]
    if means:
        print(f"model, {top} input(s): mean PSNR over {len(means)} targets = {np.mean(means):.4g}")
    print(f"wrote {out}/summary.md, metrics.csv, summary.json, figures/")
    return 0
