"""The paper's evaluation: every available contrast as the single input, the other three synthesised.

``python -m tfsynth.evaluate --model PATH --data PATH --out DIR [--baseline PATH] [--max-patients N]``

``--protocol brasyn`` scores missing-contrast completion instead (each contrast synthesised from
the others; `tfsynth.evaluate_completion`).

* ``--model``: a run directory, an exported SavedModel or a TF-Serving base (`tfsynth.inference`).
* ``--data``: a prepared directory (its ``test`` split, or ``--split``) or a BraTS-layout folder
  (either naming era; reoriented and normalised as in training, resampled to the model's voxel
  size unless ``--no-resample``, the slices ``prepare`` would keep, placed on the model's canvas
  without ever cropping brain; see `load_brats_patients`). Whatever changes what is scored
  (resampling, whole slices for a brain too large for the canvas, brain cropped by ``prepare``)
  is printed and listed in summary.md.

For each patient, source contrast and target contrast, three methods are scored on the target's
brain slices: the model, the intensity-mapping baseline (`tfsynth.baseline`) and the identity
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
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from . import __version__, metrics
from .atomic import atomic_directory
from .baseline import IntensityMappingBaseline
from .contrasts import CONTRASTS
from .data.manifest import is_prepared, load_manifest
from .errors import TfsynthError, cli_entry

METHODS: tuple[str, ...] = ("model", "baseline", "identity")
TABLE_REGIONS: tuple[str, ...] = ("brain", "whole", "tumor", "nontumor")
BATCH_SLICES = 32
FIGURE_SLICES = 3
CSV_COLUMNS = ("patient", "source", "target", "region", "method", *metrics.METRICS)


@dataclasses.dataclass
class Patient:
    """One patient's brain slices on the model's canvas.

    Attributes:
        case_id: the case id.
        images: canonical contrast -> float32 ``[N, S, S]`` in [0, 1] (present contrasts only).
        brain: bool ``[N, S, S]``.
        tumor: uint8 ``[N, S, S]`` labels, or None without a segmentation.
        slice_indices: axial index of each slice in the (reoriented, resampled) volume.
        notes: what the report must say about this patient (resampling, cropping, canvas).
    """

    case_id: str
    images: dict[str, np.ndarray]
    brain: np.ndarray
    tumor: np.ndarray | None
    slice_indices: np.ndarray
    notes: list[str] = dataclasses.field(default_factory=list)


# Loading --------------------------------------------------------------------------------------


def load_prepared_patients(prepared_dir: str | os.PathLike, split: str = "test") -> list[Patient]:
    """Groups a prepared split's slices by case (slices in axial order).

    A case whose brain ``prepare`` cropped (``manifest.json``'s ``crop``) gets a note saying so.
    """
    crops = load_manifest(prepared_dir).get("crop", {})
    grouped: dict[str, list[dict]] = {}
    from .data.tfrecord import iter_prepared_slices

    for example in iter_prepared_slices(prepared_dir, split):
        grouped.setdefault(example["case_id"], []).append(example)
    if not grouped:
        raise TfsynthError(f"{prepared_dir}: split {split!r} has no slices to evaluate")
    patients = []
    for case_id in sorted(grouped):
        slices = sorted(grouped[case_id], key=lambda e: int(e["slice_index"]))
        stack = np.stack([e["images"] for e in slices])
        present = slices[0]["present"]
        patients.append(
            Patient(
                case_id,
                {c: stack[..., i] for i, c in enumerate(CONTRASTS) if present[i]},
                np.stack([e["brain"] > 0 for e in slices]),
                np.stack([e["tumor"] for e in slices]) if slices[0]["has_seg"] else None,
                np.array([int(e["slice_index"]) for e in slices]),
                _crop_notes(crops.get(case_id, {})),
            )
        )
    return patients


def _crop_notes(crop: dict) -> list[str]:
    """What a prepared case's crop entry means for its scores."""
    cropped = int(crop.get("brain_voxels_cropped", 0) or 0)
    if not cropped:
        return []
    return [f"prepare cropped {cropped} brain voxels away to fit its --size; they are not scored"]


def load_brats_patients(
    root: str | os.PathLike,
    image_size: int | None,
    voxel_size_mm: Sequence[float] | None = None,
    min_brain_fraction: float | None = None,
) -> list[Patient]:
    """Reads, validates and normalises a BraTS-layout folder the way the model sees its inputs.

    Each case is reoriented to the slicing orientation (`tfsynth.data.brats.validate_case`),
    each contrast percentile-normalised over its own brain (as `tfsynth.data.prepare` does),
    then resampled to ``voxel_size_mm`` (`tfsynth.data.geometry.Frame`; None: not resampled).
    The slices `tfsynth.data.normalize.select_slices` keeps -- the same rule as ``prepare`` --
    are placed on the ``image_size`` canvas with `tfsynth.volume_synthesis.to_canvas`, which never
    crops brain: a brain that does not fit keeps its whole slices, and the patient's ``notes``
    say so.

    Args:
        root: a folder of BraTS cases (either naming era).
        image_size: the model's canvas, or None to leave slices as they are.
        voxel_size_mm: the model's voxel size ``[x, y, z]``, or None.
        min_brain_fraction: default `tfsynth.data.normalize.MIN_BRAIN_FRACTION`.

    Raises:
        TfsynthError: a bad case (see `validate_case`), naming the file.
    """
    from .data.brats import find_cases, validate_case
    from .data.geometry import Frame
    from .data.normalize import MIN_BRAIN_FRACTION, brain_mask, percentile_normalize, select_slices
    from .volume_synthesis import to_canvas

    fraction = MIN_BRAIN_FRACTION if min_brain_fraction is None else min_brain_fraction
    patients = []
    for case in find_cases(root):
        loaded = validate_case(case)
        frame = Frame.of(loaded.affine, loaded.shape, voxel_size_mm=voxel_size_mm)
        brain = frame.forward_mask(brain_mask(loaded.volumes.values()))
        keep = select_slices(brain, fraction)
        if keep.size == 0:
            raise TfsynthError(f"case {case.case_id}: no axial slice with brain (>= {fraction:.1%} of the slice)")
        axial_brain = np.moveaxis(brain[:, :, keep], -1, 0)
        canvas_brain, original_hw = to_canvas(axial_brain, axial_brain, image_size)

        def axial(volume, keep=keep, axial_brain=axial_brain):
            return to_canvas(np.moveaxis(volume[:, :, keep], -1, 0), axial_brain, image_size)[0]

        images = {}
        for contrast, volume in loaded.volumes.items():
            try:
                normalized = percentile_normalize(volume)[0]
            except TfsynthError as error:
                raise TfsynthError(f"{case.files[contrast]}: {error}") from None
            images[contrast] = axial(np.clip(frame.forward(normalized), 0.0, 1.0) * frame.forward_mask(volume != 0))
        tumor = axial(frame.forward(loaded.seg, order=0)) if loaded.seg is not None else None
        notes = []
        if frame.resampled:
            zooms = ", ".join(f"{z:g}" for z in frame.oriented_zooms)
            notes.append(f"resampled from {zooms} mm to {', '.join(f'{z:g}' for z in voxel_size_mm)} mm")
        if image_size and original_hw is None and canvas_brain.shape[1:] != (image_size, image_size):
            notes.append(
                f"brain does not fit the {image_size}x{image_size} canvas: scored on whole "
                f"{canvas_brain.shape[1]}x{canvas_brain.shape[2]} slices"
            )
        patients.append(Patient(case.case_id, images, canvas_brain, tumor, keep, notes))
    return patients


# Baseline resolution --------------------------------------------------------------------------


def _run_training_data(model: Path) -> Path | None:
    for name in ("data", "prepared"):
        if is_prepared(model / name):
            return model / name
    return None


def resolve_baseline(
    baseline_arg: str | None, data: Path, model: Path, patients: Sequence[Patient]
) -> tuple[dict[str, IntensityMappingBaseline], str]:
    """The baseline per patient and a sentence saying where it was fitted.

    Returns:
        ``({case_id: baseline}, description)``.
    """
    if baseline_arg:
        path = Path(baseline_arg)
        if path.is_dir():
            fitted, source = IntensityMappingBaseline().fit_prepared(path, "train"), f"the train split of {path}"
        else:
            fitted, source = IntensityMappingBaseline.load(path), f"{path}"
    elif is_prepared(data):
        fitted, source = IntensityMappingBaseline().fit_prepared(data, "train"), f"the train split of {data}"
    elif _run_training_data(model) is not None:
        prepared = _run_training_data(model)
        fitted, source = IntensityMappingBaseline().fit_prepared(prepared, "train"), f"the train split of {prepared}"
    else:
        if len(patients) < 2:
            raise TfsynthError(
                f"{data}: cannot fit the intensity-mapping baseline: no training data found and only one patient "
                "for leave-one-out; pass --baseline PREPARED_DIR or BASELINE.json"
            )
        single = {}
        for patient in patients:
            single[patient.case_id] = IntensityMappingBaseline()
            single[patient.case_id].accumulate(patient.images, patient.brain)
        per_patient = {
            case_id: IntensityMappingBaseline.combine(b for other, b in single.items() if other != case_id)
            for case_id in single
        }
        return per_patient, "leave-one-patient-out on the evaluated patients (no training data was available)"
    return {patient.case_id: fitted for patient in patients}, source


# Evaluation -----------------------------------------------------------------------------------


def _synthesize(synthesizer, images: np.ndarray, source: str, target: str) -> np.ndarray:
    out = [
        synthesizer.synthesize_normalized(images[i : i + BATCH_SLICES], source, target)
        for i in range(0, len(images), BATCH_SLICES)
    ]
    return np.clip(np.concatenate(out).astype(np.float32), 0.0, 1.0)


def _figure_slices(patient: Patient) -> np.ndarray:
    """Up to three representative slices: largest tumour, largest brain, and a quarter up."""
    area = patient.brain.sum(axis=(1, 2))
    picks = [int(np.argmax(area))]
    if patient.tumor is not None and (patient.tumor > 0).any():
        picks.insert(0, int(np.argmax((patient.tumor > 0).sum(axis=(1, 2)))))
    picks.append(int(np.flatnonzero(area > 0)[len(np.flatnonzero(area > 0)) // 4]))
    return np.array(sorted(dict.fromkeys(picks))[:FIGURE_SLICES])


def evaluate_patients(
    synthesizer, patients: Sequence[Patient], baselines: dict[str, IntensityMappingBaseline], progress: bool = False
) -> tuple[list[dict], dict]:
    """Scores every (patient, source, target, method) and keeps example slices for figures.

    Masks: the brain is the union over contrasts; the synthesised image is zeroed outside it (the
    model's normalised input cannot tell background from dark brain); the baseline and identity
    are zero there by construction.

    Returns:
        ``(rows, examples)``: CSV rows (dicts keyed by `CSV_COLUMNS`) and, per ``(source, target)``,
        the figure data of the first patient that has the pair.
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
            regions = sorted({region for _, region in values}, key=metrics.REGIONS.index)
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
            picks = _figure_slices(patient)
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
    """``{method: {region: {metric: {source: {target: {"mean", "std", "n"}}}}}}`` across patients."""
    grouped: dict[tuple, list[float]] = {}
    for row in rows:
        for metric in metrics.METRICS:
            key = (row["method"], row["region"], metric, row["source"], row["target"])
            grouped.setdefault(key, []).append(row[metric])
    summary: dict = {}
    for (method, region, metric, source, target), values in grouped.items():
        mean, std, n = metrics.mean_std(values)
        if n == 0:
            continue  # e.g. NIQE in tumour regions: not defined
        cell = summary.setdefault(method, {}).setdefault(region, {}).setdefault(metric, {}).setdefault(source, {})
        cell[target] = {"mean": mean, "std": std, "n": n}
    return summary


# Reports --------------------------------------------------------------------------------------

_FORMATS = {"nmae": "{:.3f}", "psnr": "{:.2f}", "ssim": "{:.3f}", "vif": "{:.3f}", "niqe": "{:.2f}"}
_NAMES = {"nmae": "NMAE", "psnr": "PSNR (dB)", "ssim": "SSIM", "vif": "VIF", "niqe": "NIQE"}
_SHOW = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR"}


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


def summary_markdown(summary: dict, info: dict) -> str:
    """The tables as Markdown: per region and metric, rows = input contrast x method, columns = target.

    A model cell is bold where the model beats every other method (`model_wins`).
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
            arrow = "higher is better" if metrics.HIGHER_IS_BETTER[metric] else "lower is better"
            lines += [f"### {_NAMES[metric]} ({arrow})", ""]
            lines += ["| input | method | " + " | ".join(_SHOW[t] for t in CONTRASTS) + " |"]
            lines += ["|---|---|" + "---|" * len(CONTRASTS)]
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
                        else:
                            fmt = _FORMATS[metric]
                            text = f"{fmt.format(cell['mean'])} ± {fmt.format(cell['std'])}"
                            wins = method == "model" and model_wins(summary, region, metric, source, target)
                            cells.append(f"**{text}**" if wins else text)
                    lines.append(f"| {_SHOW[source]} | {method} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_outputs(out: Path, rows: list[dict], summary: dict, examples: dict, info: dict, baselines: dict) -> None:
    """Writes every output into ``out`` (a fresh directory)."""
    from . import figures

    with open(out / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()})
    (out / "summary.json").write_text(json.dumps(_json_safe({"info": info, "summary": summary}), indent=2) + "\n")
    (out / "summary.md").write_text(summary_markdown(summary, info))
    first = next(iter(baselines.values()))
    if all(b is first for b in baselines.values()):
        first.save(out / "baseline.json")
    figure_dir = out / "figures"
    figure_dir.mkdir()
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


def evaluate(
    synthesizer,
    patients: Sequence[Patient],
    out: str | os.PathLike,
    baselines: dict[str, IntensityMappingBaseline],
    info: dict,
    progress: bool = False,
    replace: bool = False,
) -> dict:
    """Evaluates and writes the report directory atomically.

    Args:
        synthesizer: object with ``synthesize_normalized(images01 [N, S, S], sources, targets) -> [N, S, S]``.
        patients: the cohort.
        out: the report directory (must not exist unless ``replace``).
        baselines: case id -> fitted baseline.
        info: provenance for summary.md/json (model, data, baseline description, ...).

    Returns:
        The summary dict.
    """
    out = Path(out)
    if out.exists() and not replace:
        raise TfsynthError(f"{out} already exists; choose a new --out or pass --overwrite")
    rows, examples = evaluate_patients(synthesizer, patients, baselines, progress)
    summary = summarize(rows)
    size = patients[0].brain.shape[1:]
    info = {
        **info,
        "patients": len(patients),
        "patient_ids": [p.case_id for p in patients],
        "niqe_patch": metrics.niqe_patch_size(*size),
        "notes": [f"{p.case_id}: {note}" for p in patients for note in p.notes],
        "image_size": list(size),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tfsynth_version": __version__,
    }
    with atomic_directory(out, replace=replace) as tmp:
        write_outputs(tmp, rows, summary, examples, info, baselines)
    return summary


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
    from .evaluate_completion import add_arguments

    add_arguments(parser)  # --protocol brasyn: tfsynth.evaluate_completion
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .inference import load_synthesizer

    out, data, model = Path(args.out), Path(args.data), Path(args.model)
    if out.exists() and not args.overwrite:
        raise TfsynthError(f"{out} already exists; choose a new --out or pass --overwrite")
    if not data.exists():
        raise TfsynthError(f"{data}: no such file or directory")
    if args.max_patients is not None and args.max_patients < 1:
        raise TfsynthError(f"--max-patients must be >= 1, got {args.max_patients}")
    synthesizer = load_synthesizer(model)
    if is_prepared(data):
        patients, kind = load_prepared_patients(data, args.split), f"prepared, {args.split} split"
    else:
        meta = synthesizer.metadata
        voxel_size = None if args.no_resample else meta.voxel_size_mm
        patients, kind = load_brats_patients(data, meta.image_size, voxel_size), "BraTS folder"
    patients = patients[: args.max_patients]
    for patient in patients:
        for note in patient.notes:
            print(f"note: {patient.case_id}: {note}", file=sys.stderr)
    if args.protocol == "brasyn":
        from .evaluate_completion import run

        return run(args, synthesizer, patients, kind)
    baselines, baseline_source = resolve_baseline(args.baseline, data, model, patients)
    info = {"model": str(model), "data": str(data), "data_kind": kind, "baseline": baseline_source}
    summary = evaluate(synthesizer, patients, out, baselines, info, progress=not args.quiet, replace=args.overwrite)
    brain = summary.get("model", {}).get("brain", {})
    for metric in ("psnr", "ssim"):
        means = [cell["mean"] for row in brain.get(metric, {}).values() for cell in row.values()]
        if means:
            print(f"model, brain: mean {metric.upper()} over {len(means)} pairs = {np.mean(means):.4g}")
    print(f"wrote {out}/summary.md, metrics.csv, summary.json, figures/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
