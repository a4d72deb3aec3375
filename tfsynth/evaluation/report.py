"""The report an evaluation writes: metrics.csv, summary.json, summary.md, baseline.json, figures/.

``summary.md`` lays the tables out like Dai et al. (2020): per region and metric, rows are input
contrast x method and columns the target contrast.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from tfsynth import __version__, metrics
from tfsynth.contrasts import CONTRASTS
from tfsynth.evaluation.scoring import CSV_COLUMNS, METHODS, model_wins

TABLE_REGIONS: tuple[str, ...] = ("brain", "whole", "tumor", "nontumor")

_FORMATS = {"nmae": "{:.3f}", "psnr": "{:.2f}", "ssim": "{:.3f}", "vif": "{:.3f}", "niqe": "{:.2f}"}
_NAMES = {"nmae": "NMAE", "psnr": "PSNR (dB)", "ssim": "SSIM", "vif": "VIF", "niqe": "NIQE"}
_SHOW = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR"}


def summary_markdown(summary: dict, info: dict) -> str:
    """The tables as Markdown: per region and metric, rows = input contrast x method, columns = target.

    A model cell is bold where the model beats every other method (`model_wins`).

    Args:
        summary: as `tfsynth.evaluation.scoring.summarize` returns.
        info: provenance with keys ``model``, ``data``, ``data_kind``, ``patients``,
            ``patient_ids``, ``baseline``, ``niqe_patch``, ``created`` and optionally ``notes``.
    """
    lines = [
        "# tfsynth evaluation",
        "",
        f"- model: `{info['model']}`",
        f"- data: `{info['data']}` ({info['data_kind']}), {info['patients']} patients: {', '.join(info['patient_ids'])}",
        f"- intensity-mapping baseline fitted on {info['baseline']}",
        "- protocol (Dai et al. 2020): each available contrast as the single input, the other three synthesised; "
        "per-patient metrics over the target's brain slices, then mean ± std (sample) across patients",
        "- images in [0, 1] (per-volume 0.5/99.5 percentile normalisation); NMAE = MAE / reference range in the region; "
        "PSNR data range 1; SSIM Gaussian sigma 1.5 averaged over the region; VIF pixel-domain multi-scale; "
        "NIQE (no reference) on the synthesised image, whole slice and brain only"
        + (f", patch {info['niqe_patch']} px (standard 96 needs >= 192 px slices)" if info["niqe_patch"] != 96 else ""),
        "- **bold**: the model beats the baseline and the identity in that cell",
        f"- written {info['created']} by tfsynth {__version__}",
        *[f"- note: {note}" for note in info.get("notes", [])],
        "",
    ]
    methods = [m for m in METHODS if m in summary]
    for region in TABLE_REGIONS:
        if not any(region in summary[m] for m in methods):
            continue
        lines += [f"## Region: {region}", ""]
        for metric in metrics.METRICS:
            if not any(metric in summary[m].get(region, {}) for m in methods):
                continue
            lines += _metric_table(summary, methods, region, metric)
    return "\n".join(lines)


def _metric_table(summary: dict, methods: list[str], region: str, metric: str) -> list[str]:
    arrow = "higher is better" if metrics.HIGHER_IS_BETTER[metric] else "lower is better"
    lines = [f"### {_NAMES[metric]} ({arrow})", ""]
    lines += ["| input | method | " + " | ".join(_SHOW[t] for t in CONTRASTS) + " |"]
    lines += ["|---|---|" + "---|" * len(CONTRASTS)]
    fmt = _FORMATS[metric]
    for source in CONTRASTS:
        for method in methods:
            table = summary[method].get(region, {}).get(metric, {}).get(source)
            if table is None:
                continue
            cells = []
            for target in CONTRASTS:
                cell = table.get(target)
                if cell is None:
                    cells.append("—")
                    continue
                text = f"{fmt.format(cell['mean'])} ± {fmt.format(cell['std'])}"
                wins = method == "model" and model_wins(summary, region, metric, source, target)
                cells.append(f"**{text}**" if wins else text)
            lines.append(f"| {_SHOW[source]} | {method} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _json_safe(value):
    """NaN and infinities as null: JSON has no spelling for them."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_tables(
    out: Path,
    rows: list[dict],
    columns: tuple[str, ...],
    summary: dict,
    info: dict,
    markdown: str,
    baselines: dict,
    baseline_name: str,
) -> None:
    """The files every evaluation protocol writes: ``metrics.csv`` (NaN as empty), ``summary.json``,
    ``summary.md`` and, when all patients share one baseline (leave-one-out ones differ), the
    baseline as ``baseline_name``.
    """
    with open(out / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()})
    (out / "summary.json").write_text(json.dumps(_json_safe({"info": info, "summary": summary}), indent=2) + "\n")
    (out / "summary.md").write_text(markdown)
    first = next(iter(baselines.values()))
    if all(b is first for b in baselines.values()):
        first.save(out / baseline_name)


def write_outputs(out: Path, rows: list[dict], summary: dict, examples: dict, info: dict, baselines: dict) -> None:
    """Writes every output into ``out`` (an existing, empty directory).

    Args:
        rows, examples: as `tfsynth.evaluation.scoring.evaluate_patients` returns.
        summary: as `tfsynth.evaluation.scoring.summarize` returns.
        info: provenance (see `summary_markdown`).
        baselines: case id -> baseline; ``baseline.json`` is written only when all patients share
            one (leave-one-out baselines differ per patient).
    """
    write_tables(out, rows, CSV_COLUMNS, summary, info, summary_markdown(summary, info), baselines, "baseline.json")
    figure_dir = out / "figures"
    figure_dir.mkdir()
    write_figures(figure_dir, rows, examples)


def write_figures(figure_dir: Path, rows: list[dict], examples: dict) -> None:
    """``{source}_to_{target}.png`` example grids and ``box_{metric}.png`` per-patient box plots
    (brain region) into ``figure_dir``."""
    from tfsynth.evaluation import figures

    for (source, target), example in examples.items():
        figures.pair_grid(
            figure_dir / f"{source}_to_{target}.png",
            source,
            target,
            example["case_id"],
            example["slice_indices"],
            {
                f"input {_SHOW[source]}": example["input"],
                "baseline": example["baseline"],
                "synthesized": example["synthesized"],
                f"real {_SHOW[target]}": example["real"],
            },
            error_of=("synthesized", f"real {_SHOW[target]}"),
        )
    for metric in metrics.METRICS:
        region = "brain"
        values: dict[tuple[str, str, str], list[float]] = {}
        for row in rows:
            if row["region"] == region:
                values.setdefault((row["method"], row["source"], row["target"]), []).append(row[metric])
        figures.metric_boxplot(figure_dir / f"box_{metric}.png", metric, region, values, METHODS)
