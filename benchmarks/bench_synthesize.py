"""Seconds to synthesise one 240x240x155 volume, one source to all three targets, on this machine.

    python benchmarks/bench_synthesize.py [--repeats 2] [--batch-size 16] [--keras-bf16]

Model: the StarGAN reference generator (64 filters, 6 residual blocks), random weights (speed
does not depend on them), exported with `tfsynth.export.write_saved_model` on a 240x240 canvas,
i.e. exactly what ``python -m tfsynth.synthesize`` runs. Volume: a 240x240x155 grid (1 mm, the
BraTS/SRI24 grid) holding an ellipsoidal "brain" on 135 axial slices, as a skull-stripped BraTS
volume has. Reported: the synthesis itself (`VolumeSynthesizer.synthesize_volume`, warm), and the
whole command (model load, read, synthesis, three NIfTI writes). ``--keras-bf16`` also times the
same slices through the Keras generator under ``mixed_bfloat16``, for comparison (the SavedModel
is exported in float32).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

SHAPE = (240, 240, 155)
TARGETS = ["t1c", "t2", "flair"]


def brain_volume(seed: int = 0) -> np.ndarray:
    """Float32 [240, 240, 155]: textured ellipsoid (semi-axes 70 x 85 x 67 voxels) on zero background."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.arange(n) - n / 2 for n in SHAPE), indexing="ij")
    inside = (x / 70) ** 2 + (y / 85) ** 2 + ((z - 2) / 67) ** 2 <= 1
    volume = np.where(inside, 400 + 80 * np.sin(x / 7) * np.cos(y / 9) + rng.normal(0, 20, SHAPE), 0)
    return volume.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--keras-bf16", action="store_true", help="also time the Keras generator in mixed_bfloat16")
    args = parser.parse_args()

    import tensorflow as tf

    from tfsynth import synthesize
    from tfsynth.export import write_saved_model
    from tfsynth.inference import load_synthesizer
    from tfsynth.models.generator import Generator

    work = Path(tempfile.mkdtemp(prefix="bench_synthesize-"))
    generator = Generator(filters=64, residual_blocks=6)
    generator((tf.zeros([1, 240, 240, 1]), tf.zeros([1], tf.int32)))
    model = write_saved_model(generator, work / "saved_model", {"image_size": 240, "voxel_size_mm": 1.0})
    volume = brain_volume()
    slices = int(volume.any(axis=(0, 1)).sum())
    path = work / "bench-t1n.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    print(f"volume {SHAPE}, {slices} brain slices; {len(TARGETS)} targets = {slices * len(TARGETS)} slice syntheses")
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} logical CPUs, batch {args.batch_size}")

    engine = synthesize.VolumeSynthesizer(load_synthesizer(model), args.batch_size)
    engine.synthesize_volume(volume[:, :, 70:74], TARGETS)  # warm-up: trace and allocate
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        engine.synthesize_volume(volume, TARGETS)
        times.append(time.perf_counter() - start)
    best = min(times)
    print(
        f"synthesis (SavedModel, float32): {best:.1f} s per volume (best of {args.repeats}: "
        f"{', '.join(f'{t:.1f}' for t in times)}), {slices * len(TARGETS) / best:.1f} slices/s"
    )

    start = time.perf_counter()
    code = synthesize.main(
        [
            "--model",
            str(model),
            "--source",
            "t1",
            "--out",
            str(work / "out"),
            "--quiet",
            str(path),
            "--target",
            *TARGETS,
        ]
    )
    print(
        f"whole command (load model, read, synthesise, write 3 NIfTI): {time.perf_counter() - start:.1f} s (exit {code})"
    )

    if args.keras_bf16:
        import keras

        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        bf16 = Generator(filters=64, residual_blocks=6)
        bf16((tf.zeros([1, 240, 240, 1]), tf.zeros([1], tf.int32)))
        bf16.set_weights(generator.get_weights())
        run = tf.function(lambda image, label: bf16((image, label), training=False))
        batch = tf.random.uniform([args.batch_size, 240, 240, 1], -1, 1)
        label = tf.fill([args.batch_size], 1)
        run(batch, label)
        batches = -(-slices // args.batch_size) * len(TARGETS)
        start = time.perf_counter()
        for _ in range(batches):
            run(batch, label).numpy()
        seconds = time.perf_counter() - start
        print(
            f"Keras generator, mixed_bfloat16, same work ({batches} batches): {seconds:.1f} s "
            f"({batches * args.batch_size / seconds:.1f} slices/s)"
        )


if __name__ == "__main__":
    main()
