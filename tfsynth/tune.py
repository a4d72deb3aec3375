"""Keras Tuner sweeps of the unified GAN's loss weights.

``python -m tfsynth.tune --data PREPARED --out SWEEP`` searches lambda_adv, lambda_cls,
lambda_rec, lambda_pix, lambda_gp (log scale) and n_critic under a MirroredStrategy, scoring each trial
by a validation image-quality metric that ``UnifiedGAN.test_step`` logs (``val_psnr`` by
default). The sweep directory holds:

    SWEEP/sweep.json          the settings; a rerun with the same settings resumes the sweep
    SWEEP/tuner/              Keras Tuner state (oracle, one folder per trial)
    SWEEP/results.csv, .md    one row per trial: weights, validation metrics, seconds
    SWEEP/best_config.json    the base config with the best trial's weights so far, a full Config
                              that ``python -m tfsynth.train --config`` takes unchanged
    SWEEP/baseline.json       with ``--baseline``: the base weights trained on the same budget

Every file is written atomically and rewritten after each trial, so an interrupted sweep
shows what it finished, and rerunning the same command continues where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from .atomic import write_json, write_text
from .config import Config, LossWeights
from .distribute import select_strategy
from .errors import TfsynthError, cli_entry

# Log-scale ranges around the StarGAN defaults (adv 1, cls 1, rec 10, gp 10): about a decade either way,
# wide enough to find a different regime, narrow enough that a few trials cover it.
# lambda_adv reaches down to 0.01: on paired data the adversarial term is a small correction.
SWEEP_WARMUP_FRACTION = 0.5
WEIGHT_RANGES: dict[str, tuple[float, float]] = {
    "lambda_adv": (0.01, 1.0),
    "lambda_cls": (0.1, 10.0),
    "lambda_rec": (1.0, 100.0),
    "lambda_pix": (1.0, 300.0),
    "lambda_gp": (1.0, 100.0),
}
N_CRITIC_CHOICES = (1, 2, 3, 5)
OBJECTIVES = {"val_psnr": "max", "val_ssim": "max", "val_l1": "min"}
TUNERS = ("bayesian", "hyperband", "random")
METRICS = ("val_l1", "val_psnr", "val_ssim")
COLUMNS = ("trial", "status", *WEIGHT_RANGES, "n_critic", "epochs", *METRICS, "seconds")


@dataclasses.dataclass
class SweepResult:
    """What a finished sweep found.

    Attributes:
        rows: one dict per trial (keys `COLUMNS`), best first; a baseline row last if run.
        best_config: the base config with the best trial's loss weights.
        best_trial: the best trial's id.
        out_dir: the sweep directory.
    """

    rows: list[dict[str, Any]]
    best_config: Config
    best_trial: str
    out_dir: Path


def weights_from_hp(hp, base: LossWeights, fixed: dict[str, float] | None = None) -> LossWeights:
    """Draws the loss weights from a Keras Tuner ``HyperParameters`` (log-scale floats).

    Args:
        hp: the trial's hyperparameters.
        base: defaults (clipped into range), so a tuner that starts from defaults starts
            from the user's config.
        fixed: weights held at a value instead of searched (``hp.Fixed``).
    """
    fixed = fixed or {}
    values: dict[str, Any] = {}
    for name, (low, high) in WEIGHT_RANGES.items():
        if name in fixed:
            values[name] = hp.Fixed(name, float(fixed[name]))
        else:
            default = min(max(float(getattr(base, name)), low), high)
            values[name] = hp.Float(name, low, high, sampling="log", default=default)
    if "n_critic" in fixed:
        values["n_critic"] = hp.Fixed("n_critic", int(fixed["n_critic"]))
    else:
        default = base.n_critic if base.n_critic in N_CRITIC_CHOICES else N_CRITIC_CHOICES[-1]
        values["n_critic"] = hp.Choice("n_critic", list(N_CRITIC_CHOICES), default=default)
    return dataclasses.replace(base, **values)


def check_fixed(fixed: dict[str, Any] | None) -> dict[str, Any]:
    """Validates held weights: known names, a weight >= 0, an integer n_critic >= 1."""
    checked: dict[str, Any] = {}
    for name, value in (fixed or {}).items():
        if name not in (*WEIGHT_RANGES, "n_critic"):
            raise TfsynthError(f"cannot fix {name!r}: tunable weights are {', '.join((*WEIGHT_RANGES, 'n_critic'))}")
        if name == "n_critic":
            if isinstance(value, bool) or not float(value).is_integer() or value < 1:
                raise TfsynthError(f"n_critic must be an integer >= 1, got {value!r}")
            checked[name] = int(value)
        else:
            if isinstance(value, bool) or not math.isfinite(float(value)) or value < 0:
                raise TfsynthError(f"{name} must be a finite number >= 0, got {value!r}")
            checked[name] = float(value)
    return checked


def with_weights(
    config: Config, weights: LossWeights, epochs: int | None = None, steps_per_epoch: int | None = None
) -> Config:
    """A copy of ``config`` with other loss weights and, optionally, another training budget."""
    train = dataclasses.replace(
        config.train,
        epochs=epochs or config.train.epochs,
        steps_per_epoch=steps_per_epoch or config.train.steps_per_epoch,
    )
    return dataclasses.replace(config, loss=dataclasses.replace(weights), train=train)


def _hypermodel_class():
    """Defines the HyperModel lazily so importing tfsynth.tune does not import TensorFlow."""
    import keras
    import keras_tuner as kt
    import tensorflow as tf

    from .models import build_gan

    class GANHyperModel(kt.HyperModel):
        """Builds and trains one `UnifiedGAN` per trial with the trial's loss weights.

        Args:
            base: the config every trial starts from; only ``loss`` varies.
            epochs, steps_per_epoch: the per-trial budget; also sets the learning-rate decay.
            fixed: loss weights held at a value (see `weights_from_hp`).
        """

        def __init__(self, base: Config, epochs: int, steps_per_epoch: int, fixed: dict[str, Any] | None = None):
            super().__init__(name="unified_gan")
            self.base = base
            self.fixed = fixed
            self.epochs = epochs
            self.steps_per_epoch = steps_per_epoch

        def build(self, hp):
            config = with_weights(
                self.base, weights_from_hp(hp, self.base.loss, self.fixed), self.epochs, self.steps_per_epoch
            )
            # Same initial weights in every trial, so trials differ by their loss weights only.
            keras.utils.set_random_seed(config.train.seed)
            # The tuner has entered its distribution strategy's scope; build inside it.
            # build_gan calls the model once, which Keras Tuner needs to save weights.
            return build_gan(config, strategy=tf.distribute.get_strategy())

        def fit(self, hp, model, *args, **kwargs):
            from .callbacks import AdversarialWarmup
            from .models import warmup_steps

            config = with_weights(
                self.base, weights_from_hp(hp, self.base.loss, self.fixed), self.epochs, self.steps_per_epoch
            )
            callbacks = [*kwargs.pop("callbacks", []), AdversarialWarmup(warmup_steps(config))]
            start = time.monotonic()
            history = model.fit(*args, callbacks=callbacks, **kwargs)
            seconds = time.monotonic() - start
            # Carried per epoch so the tuner's best-epoch metrics include the trial's wall time.
            history.history["seconds"] = [seconds] * len(history.epoch)
            return history

    return GANHyperModel


def _tuner_class(kind: str):
    """A Keras Tuner class of the given kind that rewrites the results table after each trial."""
    import keras_tuner as kt

    base = {"bayesian": kt.BayesianOptimization, "hyperband": kt.Hyperband, "random": kt.RandomSearch}[kind]

    class ReportingTuner(base):
        report = None  # set by run_sweep: a callable taking the tuner

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            if self.report is not None:
                self.report(self)

    ReportingTuner.__name__ = f"Reporting{base.__name__}"
    return ReportingTuner


def _trial_row(trial, epochs: int, seconds_key: str = "seconds") -> dict[str, Any]:
    hp = trial.hyperparameters.values
    row: dict[str, Any] = {"trial": trial.trial_id, "status": str(trial.status)}
    for name in (*WEIGHT_RANGES, "n_critic"):
        row[name] = hp.get(name)
    row["epochs"] = hp.get("tuner/epochs", epochs)
    for name in (*METRICS, seconds_key):
        row[name] = trial.metrics.get_last_value(name) if trial.metrics.exists(name) else None
    return row


def _sort_rows(rows: list[dict[str, Any]], objective: str) -> list[dict[str, Any]]:
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


def _best_epoch_metrics(history, objective: str) -> dict[str, float]:
    """The metrics of the epoch with the best objective value (as Keras Tuner scores a trial)."""
    values = history.history[objective]
    pick = max if OBJECTIVES[objective] == "max" else min
    finite = [i for i, v in enumerate(values) if math.isfinite(v)]
    best = pick(finite, key=lambda i: values[i]) if finite else len(values) - 1
    return {name: float(series[best]) for name, series in history.history.items()}


def _check_sweep_settings(out_dir: Path, settings: dict[str, Any]) -> None:
    """Refuses to resume a sweep that was started with different settings, or a foreign directory."""
    path = out_dir / "sweep.json"
    if path.exists():
        previous = json.loads(path.read_text())
        for key, value in settings.items():
            if previous.get(key) != value:
                raise TfsynthError(
                    f"sweep directory {out_dir} was started with different {key} "
                    f"({previous.get(key)!r} != {value!r}); rerun with the same settings to resume, or choose a new --out"
                )
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise TfsynthError(f"--out {out_dir}: not empty and not a sweep directory (no sweep.json)")


def _resolve_base(base: Config | None, manifest: dict) -> Config:
    """The base config, with its image size checked against (or taken from) the prepared data."""
    size = int(manifest["image_size"])
    if base is None:
        config = Config()
        config.data.image_size = size
        # The default run is supervised only (warmup_fraction 1), where the adversarial weights
        # change nothing; a sweep's default base trains the second half of each trial adversarially.
        config.train.warmup_fraction = SWEEP_WARMUP_FRACTION
    else:
        config = Config.from_dict(base.to_dict())
        if config.data.image_size != size:
            raise TfsynthError(
                f"config data.image_size={config.data.image_size} but the prepared data has image_size={size}"
            )
    config.validate()
    return config


def run_sweep(
    data_dir: str | Path,
    out_dir: str | Path,
    base: Config | None = None,
    max_trials: int = 8,
    epochs: int = 3,
    steps_per_epoch: int = 50,
    tuner: str = "bayesian",
    objective: str = "val_psnr",
    strategy=None,
    fixed: dict[str, Any] | None = None,
    baseline: bool = False,
    verbose: int = 0,
) -> SweepResult:
    """Runs (or resumes) a Keras Tuner sweep of the loss weights.

    Args:
        data_dir: a prepared directory (``tfsynth.prepare``) with train and val splits.
        out_dir: the sweep directory; an existing one with the same settings is resumed and
            only the trials still missing up to ``max_trials`` run.
        base: the config every trial starts from (default: `Config()` at the data's image size, with
            `SWEEP_WARMUP_FRACTION` of each trial supervised and the rest adversarial).
        max_trials: total trials in the sweep (bayesian, random); Hyperband sets its own count.
        epochs, steps_per_epoch: per-trial budget (Hyperband: its max_epochs).
        tuner: "bayesian", "hyperband" or "random".
        objective: "val_psnr" or "val_ssim" (maximised) or "val_l1" (minimised).
        strategy: a `tf.distribute.Strategy`; default `tfsynth.distribute.select_strategy()` (as
            training: MultiWorkerMirroredStrategy under ``TF_CONFIG``, else every local GPU or the CPU).
        fixed: loss weights held at a value instead of searched, e.g. ``{"n_critic": 1}``.
        baseline: also train the base weights on the same budget, as a reference row.
        verbose: Keras fit verbosity.

    Returns:
        A `SweepResult`.

    Raises:
        TfsynthError: bad settings, data that is not prepared, a sweep directory started with
            other settings, or a sweep in which no trial completed.
    """
    from .data.manifest import load_manifest, require_slices

    if tuner not in TUNERS:
        raise TfsynthError(f"tuner must be one of {', '.join(TUNERS)}, got {tuner!r}")
    if objective not in OBJECTIVES:
        raise TfsynthError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    for name, value in (("max_trials", max_trials), ("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
        if value < 1:
            raise TfsynthError(f"{name} must be >= 1, got {value}")
    fixed = check_fixed(fixed)
    data_dir = Path(data_dir).resolve()
    out_dir = Path(out_dir).resolve()
    manifest = load_manifest(data_dir)
    require_slices(manifest, data_dir, ["train", "val"], "a sweep needs train and val splits")
    base = _resolve_base(base, manifest)
    settings = {
        "data": str(data_dir),
        "tuner": tuner,
        "objective": objective,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "fixed": fixed,
        "base_config": base.to_dict(),
    }
    _check_sweep_settings(out_dir, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "sweep.json", settings)

    import keras
    import keras_tuner as kt

    from .data.pipeline import make_dataset

    strategy = strategy or select_strategy()
    batch = base.train.batch_size
    train_ds = make_dataset(
        data_dir,
        "train",
        batch_size=batch,
        training=True,
        flip=base.data.flip,
        seed=base.train.seed,
        subset_sizes=base.training_subset_sizes(),
    )
    val_ds = make_dataset(data_dir, "val", batch_size=batch, training=False)

    hypermodel = _hypermodel_class()(base, epochs, steps_per_epoch, fixed)
    tuner_kwargs = dict(
        hypermodel=hypermodel,
        objective=kt.Objective(objective, direction=OBJECTIVES[objective]),
        seed=base.train.seed,
        directory=str(out_dir),
        project_name="tuner",
        overwrite=False,
        distribution_strategy=strategy,
        max_consecutive_failed_trials=3,
    )
    if tuner == "hyperband":
        tuner_kwargs.update(max_epochs=epochs, factor=3, hyperband_iterations=1)
    else:
        tuner_kwargs.update(max_trials=max_trials)
    search = _tuner_class(tuner)(**tuner_kwargs)

    baseline_metrics = _load_baseline(out_dir)

    def report(active_tuner) -> None:
        rows = [_trial_row(t, epochs) for t in active_tuner.oracle.trials.values()]
        rows = _sort_rows(rows, objective)
        if baseline_metrics is not None:
            rows.append(baseline_metrics["row"])
        write_results(rows, out_dir, objective)
        _write_best_config(active_tuner, base, fixed, out_dir)

    search.report = report
    fit_kwargs = dict(
        validation_data=val_ds,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=[keras.callbacks.TerminateOnNaN()],
        verbose=verbose,
    )
    search.search(train_ds, **fit_kwargs)

    if baseline and baseline_metrics is None:
        baseline_metrics = _run_baseline(hypermodel, base, strategy, train_ds, fit_kwargs, objective, epochs)
        write_json(out_dir / "baseline.json", baseline_metrics)
    report(search)

    best = _write_best_config(search, base, fixed, out_dir)
    if best is None:
        failed = [trial.message for trial in search.oracle.trials.values() if trial.message]
        reason = failed[-1].strip().splitlines()[-1] if failed else "no trial ran"
        raise TfsynthError(f"sweep {out_dir}: no trial completed (last error: {reason})")
    trial_id, best_config = best
    return SweepResult(read_results(out_dir), best_config, trial_id, out_dir)


def _write_best_config(search, base: Config, fixed: dict[str, Any], out_dir: Path) -> tuple[str, Config] | None:
    """Writes ``best_config.json`` for the best completed trial so far; None if none completed."""
    best_trials = search.oracle.get_best_trials(1)
    if not best_trials or best_trials[0].status != "COMPLETED":
        return None
    best = best_trials[0]
    best_config = with_weights(base, weights_from_hp(best.hyperparameters.copy(), base.loss, fixed))
    best_config.validate()
    write_text(out_dir / "best_config.json", best_config.to_json())
    return best.trial_id, best_config


def _load_baseline(out_dir: Path) -> dict | None:
    path = out_dir / "baseline.json"
    return json.loads(path.read_text()) if path.exists() else None


def _run_baseline(hypermodel, base: Config, strategy, train_ds, fit_kwargs, objective: str, epochs: int) -> dict:
    """Trains the base weights with the sweep's budget; returns its row for the results table."""
    import keras
    import keras_tuner as kt

    hp = kt.HyperParameters()
    for name in WEIGHT_RANGES:
        hp.Fixed(name, float(getattr(base.loss, name)))
    hp.Fixed("n_critic", int(base.loss.n_critic))
    keras.backend.clear_session()
    with strategy.scope():
        model = hypermodel.build(hp)
    history = hypermodel.fit(hp, model, train_ds, **fit_kwargs)
    metrics = _best_epoch_metrics(history, objective)
    row = {"trial": "baseline", "status": "COMPLETED", **hp.values, "epochs": epochs}
    row.update({name: metrics.get(name) for name in (*METRICS, "seconds")})
    return {"row": row, "history": {name: [float(v) for v in series] for name, series in history.history.items()}}


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="tfsynth tune", description="Keras Tuner sweep of the unified GAN's loss weights."
    )
    parser.add_argument("--data", required=True, help="prepared directory (tfsynth prepare)")
    parser.add_argument("--out", required=True, help="sweep directory; rerun the same command to resume")
    parser.add_argument("--max-trials", type=int, default=8, help="total trials (bayesian, random; default 8)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (hyperband: max epochs; default 3)")
    parser.add_argument("--steps-per-epoch", type=int, default=50, help="training steps per epoch (default 50)")
    parser.add_argument("--tuner", choices=TUNERS, default="bayesian")
    parser.add_argument("--objective", choices=tuple(OBJECTIVES), default="val_psnr")
    parser.add_argument("--config", help="base config JSON (loss weights are the tuned part)")
    parser.add_argument(
        "--fix",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="hold a weight instead of searching it, e.g. --fix n_critic=1 (repeatable)",
    )
    parser.add_argument("--devices", nargs="+", help="MirroredStrategy devices (default: all local GPUs, else the CPU)")
    parser.add_argument("--baseline", action="store_true", help="also train the base weights on the same budget")
    parser.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2), help="Keras fit verbosity (default 2)")
    return parser.parse_args(argv)


def _parse_fixed(items: list[str]) -> dict[str, float]:
    fixed = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            fixed[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise TfsynthError(f"--fix {item!r}: expected NAME=NUMBER, e.g. n_critic=1")
    return fixed


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    base = Config.from_json_file(args.config) if args.config else None
    strategy = None
    if args.devices:
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(args.devices)
    result = run_sweep(
        args.data,
        args.out,
        base=base,
        max_trials=args.max_trials,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        tuner=args.tuner,
        objective=args.objective,
        strategy=strategy,
        fixed=_parse_fixed(args.fix),
        baseline=args.baseline,
        verbose=args.verbose,
    )
    print((result.out_dir / "results.md").read_text(), end="")
    print(f"best trial {result.best_trial}: {result.out_dir / 'best_config.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
