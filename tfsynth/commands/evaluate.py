"""``tfsynth evaluate``, the paper's evaluation: every available contrast as the single input, the other three synthesised.

``python -m tfsynth.evaluate --model PATH --data PATH --out DIR [--baseline PATH] [--max-patients N]``

``--protocol brasyn [--input-sizes 1 2 3]`` scores missing-contrast completion instead (each
contrast synthesised from the others; the library is `tfsynth.evaluation.completion`).

* ``--model``: a run directory, an exported SavedModel or a TF-Serving base (`tfsynth.synthesis.local`).
* ``--data``: a prepared directory (its ``test`` split, or ``--split``) or a BraTS-layout folder
  (either naming era; reoriented and normalised as in training, resampled to the model's voxel
  size unless ``--no-resample``, the slices ``prepare`` would keep, placed on the model's canvas
  without ever cropping brain; see `load_brats_patients`). Whatever changes what is scored
  (resampling, whole slices for a brain too large for the canvas, brain cropped by ``prepare``)
  is printed and listed in summary.md.

For each patient, source contrast and target contrast, three methods are scored on the target's
brain slices: the model, the intensity-mapping baseline (`tfsynth.baselines.lookup_table`) and the identity
(the source image itself, the floor any method must clear). Metrics (`tfsynth.metrics`) in each
region are per-patient values; tables give mean ± sample std across patients.

The baseline is fitted on, in order of preference: ``--baseline`` (a saved baseline JSON or a
prepared directory, train split); the train split of a prepared ``--data``; the training data of
a run directory (``RUN/data`` or ``RUN/prepared``); otherwise leave-one-patient-out on the
evaluated patients themselves (each patient's tables come from the other patients), which is
stated in summary.md.

Outputs in ``--out`` (built in a temporary directory and renamed into place, so an interrupted
run leaves no half-written report): ``metrics.csv`` (one row per patient, source, target, region
and method, one column per metric), ``summary.json``, ``summary.md`` (4x3 tables laid out like the
paper's), ``baseline.json``, and ``figures/``: ``{source}_to_{target}.png`` example grids and
``box_{metric}.png`` per-patient box plots.

The library is `tfsynth.evaluation` (`tfsynth.evaluation.run.evaluate_model`); its public names
are importable from here too.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfsynth.errors import cli_entry
from tfsynth.evaluation.brasyn import PROTOCOLS
from tfsynth.evaluation.run import evaluate_model, load_cohort


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfsynth evaluate",
        description="The paper's 4x3 metric tables (model vs intensity-mapping baseline vs identity) on held-out cases.",
    )
    parser.add_argument("--model", required=True, help="run directory, SavedModel directory or TF-Serving model base")
    parser.add_argument("--data", required=True, help="prepared directory (test split) or BraTS-layout folder")
    parser.add_argument("--out", required=True, help="report directory to create")
    parser.add_argument("--split", default="test", help="split of a prepared --data (default: test)")
    parser.add_argument(
        "--baseline",
        help="baseline JSON (--protocol brasyn: linear-baseline JSON) or prepared directory to fit it on (train split)",
    )
    parser.add_argument("--max-patients", type=int, help="evaluate only the first N patients (sorted by id)")
    parser.add_argument(
        "--no-resample",
        action="store_true",
        help="BraTS folder: do not resample cases to the model's voxel size (default: resample)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
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
    return parser


def _run_brasyn(args: argparse.Namespace, synthesizer, patients: Sequence, data_kind: str) -> int:
    """``--protocol brasyn`` once the model and patients are loaded: the report, and its headline."""
    from tfsynth.evaluation.completion import evaluate_completion_report, resolve_linear_baseline

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


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.protocol == "brasyn":
        synthesizer, patients, kind = load_cohort(
            args.model,
            args.data,
            args.out,
            split=args.split,
            max_patients=args.max_patients,
            resample=not args.no_resample,
            replace=args.overwrite,
        )
        return _run_brasyn(args, synthesizer, patients, kind)
    summary = evaluate_model(
        args.model,
        args.data,
        args.out,
        split=args.split,
        baseline=args.baseline,
        max_patients=args.max_patients,
        resample=not args.no_resample,
        replace=args.overwrite,
        progress=not args.quiet,
    )
    brain = summary.get("model", {}).get("brain", {})
    for metric in ("psnr", "ssim"):
        means = [cell["mean"] for row in brain.get(metric, {}).values() for cell in row.values()]
        if means:
            print(f"model, brain: mean {metric.upper()} over {len(means)} pairs = {np.mean(means):.4g}")
    print(f"wrote {args.out}/summary.md, metrics.csv, summary.json, figures/")
    return 0
