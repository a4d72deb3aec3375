"""Training and inference throughput: ``python -m tfsynth.bench``.

Measures on synthetic tensors (no input pipeline), after warm-up:

- training images/s: generator steps per second x batch size, where one step is
  ``n_critic`` WGAN-GP critic updates plus one generator update (the PyTorch StarGAN
  reference figure counts one critic + one generator update per iteration: n_critic 1);
- generator inference images/s (``predict``-style forward pass, batch 8), with the
  achieved GFLOP/s from the generator's FLOP count (TensorFlow's profiler, `generator_flops`).

Both are batch size / median time per step or batch (see `measure`).

Configurations (`tfsynth.presets`): the StarGAN reference (``stargan_reference``: 128x128, 64
filters, 6 residual blocks, 4 contrasts; at batch 8, n_critic 1) in float32 and mixed_bfloat16,
and the ``default`` preset.
"""

from __future__ import annotations

import argparse
import sys
import time

from .config import Config
from .errors import cli_entry
from .presets import default, stargan_reference, variant

# The precisions this benchmark measures (the README table); config.PRECISIONS also has mixed_float16.
MEASURED_PRECISIONS = ("float32", "mixed_bfloat16")


def generator_flops(config: Config, height: int | None = None, width: int | None = None) -> float:
    """FLOPs of one generator forward pass on one image, counted by TensorFlow's profiler.

    As tf-models' ``try_count_flops``: the pass is traced for a batch of one, its variables are
    frozen into constants, and `tf.compat.v1.profiler` sums the float operations that TensorFlow
    registers for each kernel (a convolution: 2 x multiply-adds; also normalisation and
    activations), whatever the generator's layout or upsampling.

    Args:
        config: names the generator (`tfsynth.models.build_generator`).
        height, width: the image; default ``config.data.image_size`` square.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from .models import build_generator

    height = height or config.data.image_size
    width = width or height
    generator = build_generator(config)
    forward = tf.function(lambda image, source, target: generator((image, source, target), training=False))
    specs = (tf.TensorSpec([1, height, width, 1]), tf.TensorSpec([1], tf.int32), tf.TensorSpec([1], tf.int32))
    graph = convert_variables_to_constants_v2(forward.get_concrete_function(*specs)).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return float(tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops)


def reference_config(precision: str = "float32") -> Config:
    """The StarGAN reference as the PyTorch figure counts it: the `stargan_reference` preset at
    batch 8 with one critic update per generator update."""
    return variant(stargan_reference(), loss={"n_critic": 1}, train={"batch_size": 8, "precision": precision})


def measure(config: Config, train_steps: int = 4, infer_batches: int = 6, adversarial: bool = True) -> dict:
    """Returns {"train": img/s, "infer": img/s} for ``config`` on synthetic data.

    ``adversarial=False`` times a step of the supervised warm-up (generator only).

    Each rate is the batch size over the MEDIAN time of one step (training) or one batch
    (inference), after a warm-up step that traces and creates the kernels: on shared 2-core
    machines single steps stall now and then, and a median ignores those stalls.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from .models import build_gan

    class StepTimes(keras.callbacks.Callback):
        # Keras calls the batch hooks after the step's tf.function has returned, i.e. finished.
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    size, batch = config.data.image_size, config.train.batch_size
    gan = build_gan(config)
    gan.set_adversarial(adversarial)
    rng = np.random.default_rng(0)
    image = tf.constant(rng.uniform(-1, 1, (batch, size, size, 1)).astype("float32"))
    source = tf.constant(rng.integers(0, 4, batch).astype("int32"))
    target = (source + 1) % 4
    element = ({"image": image, "source": source, "target": target}, -image)
    data = tf.data.Dataset.from_tensors(element).repeat()

    gan.fit(data, epochs=1, steps_per_epoch=1, verbose=0)  # trace + warm-up
    steps = StepTimes()
    gan.fit(data, epochs=1, steps_per_epoch=train_steps, verbose=0, callbacks=[steps])

    generate = tf.function(lambda x, s, t: gan.generator((x, s, t), training=False))
    generate(image, source, target).numpy()
    batches = []
    for _ in range(infer_batches):
        start = time.perf_counter()
        generate(image, source, target).numpy()
        batches.append(time.perf_counter() - start)
    return {"train": batch / float(np.median(steps.seconds)), "infer": batch / float(np.median(batches))}


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
    args = parser.parse_args(argv)
    precisions = args.precision or MEASURED_PRECISIONS

    # The previous default configuration: the default's sizes with the StarGAN generator, no SSIM term.
    previous = variant(default(), model={"generator": "stargan"}, loss={"lambda_ssim": 0.0})
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

    header = f"{'configuration':<58} {'train img/s':>11} {'infer img/s':>11} {'infer GFLOP/s':>13}"
    print(header)
    print("-" * len(header))
    for name, config, adversarial in rows:
        rates = measure(config, args.train_steps, args.infer_batches, adversarial)
        gflop = generator_flops(config) / 1e9
        print(f"{name:<58} {rates['train']:>11.2f} {rates['infer']:>11.1f} {rates['infer'] * gflop:>13.0f}", flush=True)
    reference = generator_flops(reference_config()) / 1e9
    print(f"\nreference generator: {reference:.1f} GFLOP per 128x128 image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
