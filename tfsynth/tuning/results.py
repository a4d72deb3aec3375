"""The results table of a sweep: one row per trial, best first, as ``results.csv`` and ``results.md``."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from tfsynth.atomic import write_text
from tfsynth.tuning.space import WEIGHT_RANGES

OBJECTIVES = {"val_psnr": "max", "val_ssim": "max", "val_l1": "min"}
METRICS = ("val_l1", "val_psnr", "val_ssim")
COLUMNS = ("trial", "status", *WEIGHT_RANGES, "n_critic", "epochs", *METRICS, "seconds")


def trial_row(trial, epochs: int, seconds_key: str = "seconds") -> dict[str, Any]:
    hp = trial.hyperparameters.values
    row: dict[str, Any] = {"trial": trial.trial_id, "status": str(trial.status)}
    for name in (*WEIGHT_RANGES, "n_critic"):
        row[name] = hp.get(name)
    row["epochs"] = hp.get("tuner/epochs", epochs)
    for name in (*METRICS, seconds_key):
        row[name] = trial.metrics.get_last_value(name) if trial.metrics.exists(name) else None
    return row


def sort_rows(rows: list[dict[str, Any]], objective: str) -> list[dict[str, Any]]:
    """Completed trials best first, then the rest in trial order."""
    sign = -1.0 if OBJECTIVES[objective] == "max" else 1.0

    def key(row):
        value = row.get(objective)
        finite = value is not None and math.isfinite(value) and row["status"] == "COMPLETED"
        return (0, sign * value, row["trial"]) if finite else (1, 0.0, row["trial"])

    return sorted(rows, key=key)


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def write_results(rows: list[dict[str, Any]], out_dir: Path, objective: str) -> None:
    """Writes ``results.csv`` and ``results.md`` (one row per trial, `COLUMNS`) atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: "" if row.get(name) is None else row[name] for name in COLUMNS})
    write_text(out_dir / "results.csv", buffer.getvalue())

    lines = [
        f"# Loss-weight sweep ({objective}, {OBJECTIVES[objective]}imised)",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(_format(row.get(name)) for name in COLUMNS) + " |" for row in rows]
    write_text(out_dir / "results.md", "\n".join(lines) + "\n")


def read_results(out_dir: str | Path) -> list[dict[str, Any]]:
    """Reads ``results.csv`` back as dicts with numbers parsed (empty cells -> None)."""
    rows = []
    with open(Path(out_dir) / "results.csv", newline="") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for name, text in raw.items():
                if text == "":
                    row[name] = None
                elif name in ("trial", "status"):
                    row[name] = text
                elif name in ("n_critic", "epochs"):
                    row[name] = int(float(text))
                else:
                    row[name] = float(text)
            rows.append(row)
    return rows


def best_epoch_metrics(history, objective: str) -> dict[str, float]:
    """The metrics of the epoch with the best objective value (as Keras Tuner scores a trial)."""
    values = history.history[objective]
    pick = max if OBJECTIVES[objective] == "max" else min
    finite = [i for i, v in enumerate(values) if math.isfinite(v)]
    best = pick(finite, key=lambda i: values[i]) if finite else len(values) - 1
    return {name: float(series[best]) for name, series in history.history.items()}
