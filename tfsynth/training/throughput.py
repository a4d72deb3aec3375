"""Throughput and compute of a configuration: generator FLOPs from TensorFlow's profiler
(`generator_flops`) and training / inference images per second on synthetic tensors (`measure`).

The library under ``tfsynth bench`` (`tfsynth.commands.bench`), which prints them for the named presets.
"""

from __future__ import annotations

import time

from tfsynth.config import Config
from tfsynth.training.presets import preset, stargan_reference, variant

# The precisions this benchmark measures by default; config.PRECISIONS also has mixed_float16.
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

    from tfsynth.models import build_generator

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

    from tfsynth.models import build_gan

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


def preset_rows(names: list[str], precisions) -> list[tuple]:
    """``(label, config, adversarial)`` for each named preset and precision: the warm-up step if its
    run has a warm-up, the adversarial step if it has an adversarial phase."""
    rows = []
    for name in names:
        for precision in precisions:
            config = variant(preset(name), train={"precision": precision})
            size = f"{name} {config.data.image_size}x{config.data.image_size} batch {config.train.batch_size}"
            if config.train.warmup_fraction > 0:
                rows.append((f"{size}, warm-up step, {precision}", config, False))
            if config.train.warmup_fraction < 1:
                rows.append((f"{size}, adversarial step, {precision}", config, True))
    return rows
