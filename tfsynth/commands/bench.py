"""Training and inference throughput: ``python -m tfsynth.bench``.

Measures on synthetic tensors (no input pipeline), after warm-up:

- training images/s: generator steps per second x batch size, where one step is
  ``n_critic`` WGAN-GP critic updates plus one generator update (the PyTorch StarGAN
  reference figure counts one critic + one generator update per iteration: n_critic 1);
- generator inference images/s (``predict``-style forward pass, batch 8), with the
  achieved GFLOP/s from the generator's FLOP count (TensorFlow's profiler, `generator_flops`).

Both are batch size / median time per step or batch (see `measure`).

Configurations (`tfsynth.training.presets`): the StarGAN reference (``stargan_reference``: 128x128, 64
filters, 6 residual blocks, 4 contrasts; at batch 8, n_critic 1) in float32 and mixed_bfloat16,
and the ``default`` preset; ``--preset NAME`` measures named presets instead (e.g. ``brats_1mm``
at its 240 x 240 slices), each with the kinds of step its run takes.
"""

from __future__ import annotations

import argparse

from tfsynth.errors import cli_entry
from tfsynth.training.presets import PRESETS, default, variant
from tfsynth.training.throughput import (
    MEASURED_PRECISIONS,
    generator_flops,
    measure,
    preset_rows,
    reference_config,
)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tfsynth bench", description=__doc__.split("\n")[0])
    parser.add_argument("--train-steps", type=int, default=4, help="timed generator steps per configuration")
    parser.add_argument("--infer-batches", type=int, default=6, help="timed inference batches per configuration")
    parser.add_argument("--quick", action="store_true", help="only the default config")
    parser.add_argument(
        "--precision",
        choices=MEASURED_PRECISIONS,
        action="append",
        help="measure only this precision (repeatable); default: float32 and mixed_bfloat16",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        action="append",
        help="measure only this preset (repeatable), at its own image size and batch",
    )
    args = parser.parse_args(argv)
    precisions = args.precision or MEASURED_PRECISIONS
    if args.preset:
        return print_rows(preset_rows(args.preset, precisions), args)

    # The previous default configuration: the default's sizes with the StarGAN generator, the paired L1 only.
    previous = variant(
        default(), model={"generator": "stargan"}, loss={"lambda_ssim": 0.0, "lambda_pix": 100.0, "lambda_mse": 0.0}
    )
    rows = []
    if not args.quick:
        for precision in precisions:
            rows.append((f"StarGAN reference, n_critic 1, {precision}", reference_config(precision), True))
    for precision in precisions:
        for name, base in (("default", default()), ("previous default (StarGAN generator)", previous)):
            config = variant(base, train={"precision": precision})
            rows.append((f"{name}, adversarial step, {precision}", config, True))
            if name == "default" and config.train.warmup_fraction:
                rows.append((f"{name}, warm-up step, {precision}", config, False))

    print_rows(rows, args)
    reference = generator_flops(reference_config()) / 1e9
    print(f"\nreference generator: {reference:.1f} GFLOP per 128x128 image")
    return 0


def print_rows(rows: list[tuple], args) -> int:
    """Measures and prints each (label, config, adversarial) row; returns the exit status 0."""
    header = f"{'configuration':<58} {'train img/s':>11} {'s/step':>7} {'infer img/s':>11} {'infer GFLOP/s':>13}"
    print(header)
    print("-" * len(header))
    for name, config, adversarial in rows:
        rates = measure(config, args.train_steps, args.infer_batches, adversarial)
        gflop = generator_flops(config) / 1e9
        step = config.train.batch_size / rates["train"]
        print(
            f"{name:<58} {rates['train']:>11.2f} {step:>7.3f} {rates['infer']:>11.1f} {rates['infer'] * gflop:>13.0f}",
            flush=True,
        )
    return 0
