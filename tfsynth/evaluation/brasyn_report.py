"""The BraSyn protocol's tables and figures: means across patients, the Markdown summary, the
output directory's files."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from tfsynth import __version__, metrics
from tfsynth.contrasts import CONTRASTS
from tfsynth.evaluation.brasyn import CSV_COLUMNS, DISPLAY_NAMES, HIGHER_IS_BETTER, METHODS, SCORE_NAMES, SCORES


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
    if cell["n"] == 1:  # no spread to show from one patient
        return f"{cell['mean']:.{digits}f} (1 patient)"
    return f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"


def _better(score: str, a: dict | None, b: dict | None) -> bool:
    if a is None or b is None:
        return a is not None
    sign = 1.0 if HIGHER_IS_BETTER[score] else -1.0
    return sign * (a["mean"] - b["mean"]) > 0


def summary_markdown(summary: dict, info: dict) -> str:
    """The report: the most-inputs table (model vs linear regression vs best single input), then
    quality against the number of inputs. A model cell is bold where it beats both others."""
    by_size = summary["by_size"]
    sizes = sorted({int(n) for method in by_size.values() for target in method.values() for n in target})
    # A size asked for but scored on no patient (a BraSyn folder: every case already lacks one
    # contrast, so none has three inputs besides a dropped target) is said, not silently left out.
    unscored = [n for n in info["input_sizes"] if n not in sizes]
    notes = list(info.get("notes", []))
    if unscored:
        notes.append(
            f"no patient has the {max(unscored) + 1} contrasts that {', '.join(map(str, unscored))} "
            "input(s) and a dropped target need: no such table"
        )
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
        *[f"- note: {note}" for note in notes],
        "",
    ]
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
                single_text = f"{_fmt(score, single)} ({DISPLAY_NAMES[single['inputs']]})" if single else "—"
                lines.append(
                    f"| {DISPLAY_NAMES[target]} | {SCORE_NAMES[score]} | {text} | {_fmt(score, linear)} | {single_text} |"
                )
        lines.append("")
    lines += ["## Quality against the number of inputs", ""]
    for score in SCORES:
        arrow = "higher is better" if HIGHER_IS_BETTER[score] else "lower is better"
        lines += [f"### {SCORE_NAMES[score]} ({arrow})", ""]
        lines += ["| target | method | " + " | ".join(f"{n} input(s)" for n in sizes) + " |"]
        lines += ["|---|---|" + "---|" * len(sizes)]
        for target in CONTRASTS:
            for method in METHODS:
                cells = by_size.get(method, {}).get(target)
                if cells is None:
                    continue
                lines.append(
                    f"| {DISPLAY_NAMES[target]} | {method} | "
                    + " | ".join(_fmt(score, cells.get(str(n), {}).get(score)) for n in sizes)
                    + " |"
                )
        lines.append("")
    return "\n".join(lines)


def write_outputs(out: Path, rows: list[dict], summary: dict, examples: dict, info: dict, linear: dict) -> None:
    """Writes every output into ``out`` (a fresh directory)."""
    from tfsynth.evaluation import figures
    from tfsynth.evaluation.report import write_tables

    write_tables(out, rows, CSV_COLUMNS, summary, info, summary_markdown(summary, info), linear, "linear_baseline.json")
    figure_dir = out / "figures"
    figure_dir.mkdir()
    figures.quality_vs_inputs(
        figure_dir / "quality_vs_inputs.png",
        summary["by_size"],
        ("psnr", "ssim_tumor", "ssim_healthy", "nmae"),
        {score: SCORE_NAMES[score] for score in SCORES},
    )
    for target, example in examples.items():
        figures.pair_grid(
            figure_dir / f"complete_{target}.png",
            None,
            target,
            example["case_id"],
            example["slice_indices"],
            example["columns"],
            error_of=("synthesized", f"real {DISPLAY_NAMES[target]}"),
        )
