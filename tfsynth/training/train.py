"""Train the unified GAN: the library under ``python -m tfsynth.train`` (`tfsynth.commands.train`).

`train` writes a run directory holding

    config.json     the full effective configuration (written atomically, first)
    data/           the prepared built-in phantom cohort, when no --data was given (phantom/ = its NIfTI)
    checkpoints/    models + optimizers, every ``checkpoint_every`` steps and at each epoch end
    best/           the generator of the epoch with the highest validation PSNR (train.export_epoch "best")
    logs/           TensorBoard: every loss term, validation metrics, image grids
    history.csv     one row per epoch
    saved_model/    the generator as a serving SavedModel (tfsynth.savedmodel.io): the best epoch's
                    weights by default, the last ones with train.export_epoch "last"
    report.md       what ran, how long, final metrics, which epoch was exported

Running the same command again on an existing run directory resumes from its latest
checkpoint (also after ``kill -9``) and continues at that step.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
import warnings
from pathlib import Path

from tfsynth.atomic import write_json, write_text
from tfsynth.config import Config
from tfsynth.contrasts import CONTRASTS
from tfsynth.data.manifest import check_prepared, is_prepared, split_slices, training_flip_axis
from tfsynth.errors import TfsynthError
from tfsynth.training.distribute import chief_and_id, select_strategy
from tfsynth.training.run_estimate import RunEstimate, run_plan

DEFAULT_OUT = "runs/default"
DEFAULT_CHECKPOINT_EVERY = 100
# Under the run directory: the generator of the best epoch by validation PSNR (`BestEpoch`).
BEST_DIR = "best"
PHANTOM_SUBJECTS = 20  # split 16 / 2 / 2: two held-out test subjects
PHANTOM_VOXEL_MM = 3.0  # 80 x 80 x 52: the whole brain in an 80 x 80 slice (see data.image_size)


def check_run_dir(out_dir: Path, config: Config) -> bool:
    """Returns True when ``out_dir`` is an earlier run of the same config (to resume).

    Raises:
        TfsynthError: ``out_dir`` is a file, or holds a run with a different config.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise TfsynthError(f"output {out_dir} exists and is not a directory")
    saved = out_dir / "config.json"
    if not saved.is_file():
        return False
    previous = Config.from_json_file(saved)
    if previous.to_dict() != config.to_dict():
        changed = [
            f"{section}.{key}"
            for section, values in config.to_dict().items()
            for key, value in values.items()
            if previous.to_dict()[section][key] != value
        ]
        raise TfsynthError(
            f"output {out_dir} holds a run with a different config ({', '.join(changed)}); "
            "use another --out, or the same settings to resume"
        )
    return True


def ensure_phantom_data(run_dir: Path, config: Config, log=print) -> Path:
    """Builds and prepares the built-in phantom cohort in ``run_dir`` unless it is already there."""
    from tfsynth.data.preparation import prepare
    from tfsynth.phantom.cohort import write_cohort

    data = run_dir / "data"
    if is_prepared(data):
        return data
    nifti = run_dir / "phantom"
    # Leftovers of an interrupted build are incomplete by construction: start over.
    for leftover in (nifti, data):
        shutil.rmtree(leftover, ignore_errors=True)
    log(f"building the phantom cohort ({PHANTOM_SUBJECTS} subjects, {PHANTOM_VOXEL_MM} mm) in {nifti}")
    write_cohort(nifti, subjects=PHANTOM_SUBJECTS, seed=config.train.seed, voxel_size=PHANTOM_VOXEL_MM)
    log(f"preparing it at {config.data.image_size}x{config.data.image_size} in {data}")
    prepare(nifti, data, size=config.data.image_size, seed=config.train.seed)
    return data


def train(
    config: Config,
    data_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike = DEFAULT_OUT,
    strategy=None,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    export: bool = True,
    verbose: int | str = "auto",
    log=print,
) -> dict:
    """Trains (or resumes) a run and writes its run directory.

    Args:
        config: the effective configuration; validated before anything is written.
        data_dir: a prepared directory (`tfsynth.data.preparation`); None builds the phantom
            cohort inside the run directory (reused when present).
        out_dir: the run directory; an existing run with the same config resumes.
        strategy: a `tf.distribute.Strategy`; default `select_strategy()`.
        checkpoint_every: also checkpoint every this many generator steps (0: epochs only).
        export: write ``saved_model/`` at the end.
        verbose: Keras ``fit`` verbosity (progress bar by default).
        log: where progress lines go.

    Returns:
        A summary dict: run_dir, steps, seconds, final train and validation metrics.
    """
    config.validate()
    if checkpoint_every < 0:
        raise TfsynthError(f"checkpoint_every must be >= 0, got {checkpoint_every}")
    run_dir = Path(out_dir)
    resuming = check_run_dir(run_dir, config)
    if data_dir is not None:
        check_prepared(data_dir, ["train"], "training needs them", image_size=config.data.image_size)

    import keras
    import tensorflow as tf

    from tfsynth.data.pipeline import make_dataset
    from tfsynth.models import build_gan, warmup_steps
    from tfsynth.training.callbacks import AdversarialWarmup, BestEpoch, EpochTensorBoard, ImageGrid, StepCheckpoint

    started = time.time()
    strategy = strategy or select_strategy()
    chief, worker_id = chief_and_id(strategy)
    if not chief:
        # Other workers of a multi-worker run keep their own data, checkpoints (saving is
        # collective, every worker must) and logs in a sub-directory; only the chief writes
        # the run's files.
        run_dir = run_dir / f"worker-{worker_id}"
        check_run_dir(run_dir, config)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", config.to_dict())
    if data_dir is None:
        data_dir = ensure_phantom_data(run_dir, config, log)
    manifest = check_prepared(data_dir, ["train"], "training needs them", image_size=config.data.image_size)
    data_seconds = time.time() - started

    keras.utils.set_random_seed(config.train.seed)
    gan = build_gan(config, strategy)
    t = config.train
    total_steps = t.epochs * t.steps_per_epoch

    # The generator optimizer's step count is the run's position: the checkpoint number, the
    # epoch, the learning-rate schedule, the warm-up phase and the batches already consumed.
    checkpoint = tf.train.Checkpoint(
        generator=gan.generator,
        discriminator=gan.discriminator,
        g_optimizer=gan.g_optimizer,
        d_optimizer=gan.d_optimizer,
    )
    latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
    step = int(gan.g_optimizer.iterations.numpy())
    if resuming or step:
        log(f"resuming {run_dir} at step {step} (epoch {step // t.steps_per_epoch})")
    replicas, warmup = strategy.num_replicas_in_sync, warmup_steps(config)
    log(
        run_plan(
            manifest["image_size"], manifest.get("voxel_size_mm"), total_steps, t.batch_size, warmup, replicas, step
        )
    )
    manager = tf.train.CheckpointManager(
        checkpoint,
        str(run_dir / "checkpoints"),
        max_to_keep=3,
        step_counter=gan.g_optimizer.iterations,
        checkpoint_interval=checkpoint_every or None,
        last_checkpoint_step=step,
    )

    def train_stream(consumed: int):
        """The training batches after the first ``consumed`` ones of an uninterrupted run.

        A new dataset each time: the shuffles' seed generators belong to the dataset object, so a
        second iterator over the same object would draw another permutation. Skipping rather than
        checkpointing the `tf.data` iterator: `fit` makes its own iterator from the dataset, out of
        reach of our checkpoint, and a saved iterator would carry the shuffle buffer's images
        into every checkpoint; the shuffles and draws are seeded, so the skipped stream is the
        uninterrupted one (tests/test_train.py).
        """
        ds = make_dataset(
            data_dir,
            "train",
            batch_size=t.batch_size,
            training=True,
            flip=config.data.flip,
            seed=t.seed,
            deterministic=True,
            subset_sizes=config.training_subset_sizes(),
            tumor_weight=config.loss.tumor_weight,
        )
        return ds.skip(consumed).with_options(_shard_by_data())

    val_ds = make_dataset(data_dir, "val", batch_size=t.batch_size, training=False)
    has_val = bool(split_slices(manifest, "val"))
    preview = next(iter(val_ds if has_val else make_dataset(data_dir, "train", t.batch_size, training=False)))

    callbacks = [
        RunEstimate(total_steps, warmup, t.steps_per_epoch, start_step=step, log=log),
        AdversarialWarmup(warmup),
        StepCheckpoint(manager, gan.g_optimizer.iterations),
        EpochTensorBoard(str(run_dir / "logs"), write_graph=False),
        ImageGrid(run_dir / "logs", preview, CONTRASTS),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
    ]
    if t.export_epoch == "best" and has_val:
        callbacks.append(BestEpoch(run_dir / BEST_DIR, gan.generator, monitor="val_psnr"))
    history: dict[str, list] = {}
    if step < total_steps:
        done_epochs = step // t.steps_per_epoch
        # A resumed run first finishes the interrupted epoch, then runs whole epochs.
        segments = []
        if step % t.steps_per_epoch:
            segments.append((done_epochs, done_epochs + 1, t.steps_per_epoch - step % t.steps_per_epoch))
            done_epochs += 1
        if done_epochs < t.epochs:
            segments.append((done_epochs, t.epochs, t.steps_per_epoch))
        consumed = step
        for initial_epoch, epochs, steps in segments:
            with warnings.catch_warnings():
                # Keras warns each time a finite validation set ends, which is how it ends.
                warnings.filterwarnings("ignore", message="Your input ran out of data")
                result = gan.fit(
                    train_stream(consumed),
                    initial_epoch=initial_epoch,
                    epochs=epochs,
                    steps_per_epoch=steps,
                    validation_data=val_ds if has_val else None,
                    callbacks=callbacks,
                    shuffle=False,  # the input pipeline shuffles
                    verbose=verbose,
                )
            consumed += (epochs - initial_epoch) * steps
            for key, values in result.history.items():
                history.setdefault(key, []).extend(values)
    seconds = time.time() - started

    final = {key: float(values[-1]) for key, values in history.items()}
    if has_val and not any(key.startswith("val_") for key in final):
        final.update({f"val_{k}": float(v) for k, v in gan.evaluate(val_ds, verbose=0, return_dict=True).items()})
    summary = {
        "run_dir": str(run_dir),
        "data": str(data_dir),
        "steps": int(gan.g_optimizer.iterations.numpy()),
        "replicas": strategy.num_replicas_in_sync,
        "data_seconds": round(data_seconds, 1),
        "seconds": round(seconds, 1),
        "final": final,
    }
    summary["exported"] = _select_export_weights(gan, run_dir, config)
    # A finished run run again trains nothing; its report and export stay as they were.
    if chief and (history or not (run_dir / "report.md").is_file()):
        if export:
            _export(gan, run_dir, config, manifest, summary, log)
        write_text(run_dir / "report.md", _report(config, summary, manifest))
    return summary


def _select_export_weights(gan, run_dir: Path, config: Config) -> dict:
    """Loads the weights ``train.export_epoch`` names into ``gan.generator``; says which epoch they are:
    ``{"epoch": 1-based, "selected_by": "val_psnr" | "last", "val_psnr": float (best only)}``."""
    from tfsynth.training.callbacks import restore_best_epoch

    best = restore_best_epoch(run_dir / BEST_DIR, gan.generator) if config.train.export_epoch == "best" else None
    if best:
        return {"epoch": best["epoch"], "selected_by": "val_psnr", "val_psnr": round(best["score"], 4)}
    return {"epoch": int(gan.g_optimizer.iterations.numpy()) // config.train.steps_per_epoch, "selected_by": "last"}


def _shard_by_data():
    """Multi-worker runs split each batch among workers; shard files may be fewer than workers."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def _export(gan, run_dir: Path, config: Config, manifest: dict, summary: dict, log) -> None:
    from tfsynth.savedmodel.io import write_saved_model

    # The serving graph averages mirrors along the axis training flipped, if it flipped.
    mirror = training_flip_axis(manifest, config.data.flip) if config.train.export_mirror_average else None
    metadata = {
        "config": config.to_dict(),
        "training": {**{k: summary[k] for k in ("steps", "replicas", "seconds")}, "exported": summary["exported"]},
        "validation": {k: v for k, v in summary["final"].items() if k.startswith("val_")},
        "data": {"image_size": manifest["image_size"], "voxel_size_mm": manifest.get("voxel_size_mm")},
        "mirror_average_axis": mirror,
    }
    write_saved_model(gan.generator, run_dir / "saved_model", metadata)


def _report(config: Config, summary: dict, manifest: dict) -> str:
    t, m, w = config.train, config.model, config.loss
    splits = manifest["splits"]
    lines = [
        "# tfsynth training run",
        "",
        f"- data: `{summary['data']}` — image size {manifest['image_size']}, "
        + ", ".join(
            f"{name} {len(s.get('cases', []))} cases / {s.get('slices', 0)} slices" for name, s in splits.items()
        ),
        f"- model: {m.generator} generator, {m.generator_filters} filters, {m.residual_blocks} residual blocks; "
        f"discriminator {m.discriminator_filters} filters, {m.discriminator_layers} layers",
        "- losses: " + ", ".join(f"{key} {value}" for key, value in dataclasses.asdict(w).items()),
        f"- schedule: {t.epochs} epochs x {t.steps_per_epoch} steps, batch {t.batch_size}, "
        f"Adam g {t.g_learning_rate} d {t.d_learning_rate}, linear decay from {t.decay_start_fraction:.0%}, "
        f"supervised warm-up {t.warmup_fraction:.0%}",
        f"- precision {t.precision}, {summary['replicas']} replica(s), seed {t.seed}",
        f"- generator steps done: {summary['steps']}; wall time {summary['seconds']:.0f} s "
        f"(of which data {summary['data_seconds']:.0f} s)",
        f"- exported: epoch {summary['exported']['epoch']} of {t.epochs} ("
        + (
            f"highest validation PSNR, {summary['exported']['val_psnr']:.2f} dB)"
            if summary["exported"]["selected_by"] == "val_psnr"
            else "the last)"
        ),
        "",
        "| metric | final |",
        "|---|---|",
    ]
    lines += [f"| {key} | {value:.4f} |" for key, value in sorted(summary["final"].items())]
    lines += ["", "Full per-epoch history: `history.csv`; curves and image grids: `tensorboard --logdir logs`."]
    return "\n".join(lines) + "\n"
