"""Runs or resumes a loss-weight sweep (`run_sweep`) in a sweep directory.

The directory holds ``sweep.json`` (the settings; a rerun with the same settings resumes),
``tuner/`` (Keras Tuner's state), ``results.csv`` / ``.md``, ``best_config.json`` and, with
``baseline``, ``baseline.json``; each is written atomically and rewritten after every trial.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tfsynth.atomic import write_json, write_text
from tfsynth.config import Config
from tfsynth.errors import TfsynthError
from tfsynth.training.distribute import select_strategy
from tfsynth.tuning.hypermodel import hypermodel_class, run_baseline, tuner_class
from tfsynth.tuning.results import OBJECTIVES, read_results, sort_rows, trial_row, write_results
from tfsynth.tuning.space import check_fixed, weights_from_hp, with_weights

TUNERS = ("bayesian", "hyperband", "random")
SWEEP_WARMUP_FRACTION = 0.5  # of each trial supervised with the default base (see _resolve_base)


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
    """The base config, with its image size taken from the prepared data when not given
    (`check_prepared` has checked a given one against it)."""
    if base is None:
        config = Config()
        config.data.image_size = int(manifest["image_size"])
        # The default run is supervised only (warmup_fraction 1), where the adversarial weights
        # change nothing; a sweep's default base trains the second half of each trial adversarially.
        config.train.warmup_fraction = SWEEP_WARMUP_FRACTION
    else:
        config = Config.from_dict(base.to_dict())
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
        strategy: a `tf.distribute.Strategy`; default `tfsynth.training.distribute.select_strategy()` (as
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
    from tfsynth.data.manifest import check_prepared

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
    size = None if base is None else base.data.image_size
    manifest = check_prepared(data_dir, ["train", "val"], "a sweep needs train and val splits", size)
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

    from tfsynth.data.pipeline import make_dataset

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
        tumor_weight=base.loss.tumor_weight,
    )
    val_ds = make_dataset(data_dir, "val", batch_size=batch, training=False)

    hypermodel = hypermodel_class()(base, epochs, steps_per_epoch, fixed)
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
    search = tuner_class(tuner)(**tuner_kwargs)

    baseline_metrics = _load_baseline(out_dir)

    def report(active_tuner) -> None:
        rows = [trial_row(t, epochs) for t in active_tuner.oracle.trials.values()]
        rows = sort_rows(rows, objective)
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
        baseline_metrics = run_baseline(hypermodel, base, strategy, train_ds, fit_kwargs, objective, epochs)
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
