"""Evaluation figures (matplotlib, Agg backend): per-pair example grids and per-metric box plots."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tfsynth.atomic import atomic_path
from tfsynth.contrasts import CONTRASTS

DISPLAY = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR"}
METRIC_LABELS = {
    "nmae": "NMAE (lower is better)",
    "psnr": "PSNR / dB (higher is better)",
    "ssim": "SSIM (higher is better)",
    "vif": "VIF (higher is better)",
    "niqe": "NIQE (lower is better)",
}
METHOD_COLOURS = {"model": "#1f77b4", "baseline": "#ff7f0e", "identity": "#7f7f7f"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path, dpi: int = 100) -> None:
    """Writes ``fig`` as a PNG at ``path`` atomically (its folder created), then closes it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    _pyplot().close(fig)


def pair_grid(
    path: str | os.PathLike,
    source: str | None,
    target: str,
    case_id: str,
    slice_indices: Sequence[int],
    columns: Mapping[str, np.ndarray],
    error_of: tuple[str, str],
    error_max: float = 0.5,
) -> None:
    """A grid of example slices: one row per slice, one column per image, plus an error map.

    Args:
        path: output PNG.
        source, target: canonical contrast names (for the title); source None for several inputs
            (titled "completion -> target").
        case_id: the patient shown.
        slice_indices: axial index of each row (labels).
        columns: column title -> ``[R, H, W]`` images in [0, 1], in display order
            (e.g. input, synthesised, real).
        error_of: ``(column_a, column_b)``: the last column shows ``|a - b|``.
        error_max: upper end of the error colour scale.
    """
    plt = _pyplot()
    names = list(columns)
    rows = len(slice_indices)
    fig, axes = plt.subplots(rows, len(names) + 1, figsize=(2.6 * (len(names) + 1), 2.6 * rows), squeeze=False)
    error = np.abs(columns[error_of[0]] - columns[error_of[1]])
    for r, index in enumerate(slice_indices):
        for c, name in enumerate(names):
            ax = axes[r, c]
            # Rotate so anterior is up for the usual RAS-ish axial orientation of BraTS volumes.
            ax.imshow(np.rot90(columns[name][r]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if r == 0:
                ax.set_title(name, fontsize=10)
            if c == 0:
                ax.set_ylabel(f"slice {index}", fontsize=9)
        ax = axes[r, -1]
        image = ax.imshow(np.rot90(error[r]), cmap="magma", vmin=0, vmax=error_max, interpolation="nearest")
        if r == 0:
            ax.set_title(f"|{error_of[0]} - {error_of[1]}|", fontsize=10)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    origin = "completion" if source is None else DISPLAY[source]
    fig.suptitle(f"{origin} \u2192 {DISPLAY[target]}   ({case_id})", fontsize=12)
    fig.tight_layout()
    save_png(fig, path)


def metric_boxplot(
    path: str | os.PathLike,
    metric: str,
    region: str,
    values: Mapping[tuple[str, str, str], Sequence[float]],
    methods: Sequence[str],
) -> None:
    """Box plots of one metric's per-patient values: one group per (source, target) pair, one box per method.

    Args:
        path: output PNG.
        metric, region: for the axis label and title.
        values: ``(method, source, target) -> per-patient values``.
        methods: methods to draw, in legend order.
    """
    plt = _pyplot()
    pairs = [(s, t) for s in CONTRASTS for t in CONTRASTS if s != t and any((m, s, t) in values for m in methods)]
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(pairs) + 1.5), 4.2))
    for k, method in enumerate(methods):
        data, positions = [], []
        for p, (s, t) in enumerate(pairs):
            finite = [v for v in values.get((method, s, t), []) if np.isfinite(v)]
            if finite:
                data.append(finite)
                positions.append(p + (k - (len(methods) - 1) / 2) * width)
        if not data:
            continue
        colour = METHOD_COLOURS.get(method, None)
        ax.boxplot(
            data,
            positions=positions,
            widths=width * 0.9,
            patch_artist=True,
            boxprops={"facecolor": colour, "alpha": 0.6},
            medianprops={"color": "black"},
            flierprops={"markersize": 3},
            manage_ticks=False,
        )
        ax.plot([], [], color=colour, linewidth=8, alpha=0.6, label=method)
    ax.set_xticks(range(len(pairs)))
    ax.set_xticklabels([f"{DISPLAY[s]}\u2192{DISPLAY[t]}" for s, t in pairs], rotation=45, ha="right")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(f"{metric.upper()} per patient, region: {region}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    fig.tight_layout()
    save_png(fig, path)


def quality_vs_inputs(
    path: str | os.PathLike,
    by_size: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]]],
    scores: Sequence[str],
    labels: Mapping[str, str],
) -> None:
    """Mean score against the number of inputs, one panel per score, one colour per target.

    Args:
        path: output PNG.
        by_size: ``{method: {target: {n_inputs (str): {score: {"mean", "std", "n"}}}}}``; the model
            is drawn solid, other methods dashed.
        scores: the scores to draw, one panel each.
        labels: score -> axis label.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(scores), figsize=(3.6 * len(scores), 3.4), squeeze=False)
    colours = dict(zip(CONTRASTS, ("#1f77b4", "#d62728", "#2ca02c", "#9467bd"), strict=True))
    for ax, score in zip(axes[0], scores, strict=True):
        for method, targets in by_size.items():
            for target in CONTRASTS:
                cells = targets.get(target, {})
                sizes = sorted((int(n) for n in cells if score in cells[n]), key=int)
                if not sizes:
                    continue
                means = [cells[str(n)][score]["mean"] for n in sizes]
                ax.plot(
                    sizes,
                    means,
                    marker="o",
                    color=colours[target],
                    linestyle="-" if method == "model" else "--",
                    label=f"{DISPLAY[target]}, {method}",
                )
        ax.set_xlabel("number of inputs")
        ax.set_xticks([1, 2, 3])
        ax.set_ylabel(labels.get(score, score))
        ax.grid(alpha=0.3)
    axes[0, -1].legend(loc="best", fontsize=7)
    fig.suptitle("synthesis quality against the number of available inputs (model solid, linear dashed)")
    fig.tight_layout()
    save_png(fig, path)
