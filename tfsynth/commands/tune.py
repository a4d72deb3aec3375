"""Keras Tuner sweeps of the unified GAN's loss weights.

``python -m tfsynth.tune --data PREPARED --out SWEEP`` searches lambda_adv, lambda_cls,
lambda_rec, lambda_pix, lambda_mse, lambda_gp (log scale) and n_critic under a MirroredStrategy, scoring each trial
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

The library is `tfsynth.tuning` (`tfsynth.tuning.sweep.run_sweep`); its public names are
importable from here too.
"""

from __future__ import annotations

import argparse

from tfsynth.config import Config
from tfsynth.errors import TfsynthError, cli_entry
from tfsynth.tuning.results import OBJECTIVES
from tfsynth.tuning.sweep import TUNERS, run_sweep


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
