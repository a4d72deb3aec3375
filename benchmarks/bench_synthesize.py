"""Seconds to synthesise one 240x240x155 volume, one source to all three targets, on this machine.

    python benchmarks/bench_synthesize.py [--models reference,default] [--precisions float32,bfloat16]
        [--slices 6] [--full] [--batch-size 16] [--chunk-slices 8] [--native]

Models (random weights: speed does not depend on them), each built from a `tfsynth.training.presets`
config, exported with `tfsynth.savedmodel.io.write_saved_model` and run through
`tfsynth.synthesis.volumes.VolumeSynthesizer`, i.e. exactly what ``python -m tfsynth.synthesize`` runs:

``reference``  the ``stargan_reference`` preset's generator (64 filters, 6 residual blocks), 240x240 canvas.
``default``    the ``default`` preset (its generator, filters, residual blocks and image
               size). A slice whose brain does not fit that canvas
               runs on its own (padded) size, so on a 1 mm grid the canvas is 240x240 whatever
               the training size; ``--native`` adds a row on the grid the default pipeline
               trains on (the 2 mm phantom: 120x120x78).

Volume: a 240x240x155 grid (1 mm, the BraTS/SRI24 grid) holding a textured ellipsoidal "brain"
on 135 axial slices, as a skull-stripped BraTS volume has. By default ``--slices`` central brain
slices (x 3 targets) are timed and the time is scaled to all brain slices (cost is linear in
slices; whole-volume normalisation and canvas handling are timed separately and added);
``--full`` times the whole volume instead.

Accuracy of bfloat16: the same slices are compared with the float32 export of the same weights
(max |difference| and PSNR in [0, 1] intensity inside the brain).

FLOPs: TensorFlow's profiler count of one generator pass (`tfsynth.training.throughput.generator_flops`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfsynth.onednn import prefer_onednn  # noqa: E402

# As the commands do (`tfsynth.errors.cli_entry`), before TensorFlow loads: the README quotes
# these numbers next to the commands' own.
prefer_onednn()

import numpy as np  # noqa: E402

SHAPE = (240, 240, 155)
TARGETS = ["t1c", "t2", "flair"]


def brain_volume(shape=SHAPE, seed: int = 0) -> np.ndarray:
    """Float32 ``shape``: textured ellipsoid (semi-axes 70 x 85 x 67 mm on the 1 mm grid) on zero background."""
    rng = np.random.default_rng(seed)
    scale = SHAPE[0] / shape[0]  # mm per voxel
    x, y, z = np.meshgrid(*((np.arange(n) - n / 2) * scale for n in shape), indexing="ij")
    inside = (x / 70) ** 2 + (y / 85) ** 2 + ((z - 2) / 67) ** 2 <= 1
    volume = np.where(inside, 400 + 80 * np.sin(x / 7) * np.cos(y / 9) + rng.normal(0, 20, shape), 0)
    return volume.astype(np.float32)


def cpu_peak_gflops() -> tuple[float, str]:
    """Rough fp32 FMA peak of this machine from /proc/cpuinfo (cores x GHz x FLOP/cycle)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return float("nan"), "unknown CPU"
    flags = next((line for line in info.splitlines() if line.startswith("flags")), "").split()
    mhz = [float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    per_cycle = 64 if "avx512f" in flags else 32 if "fma" in flags else 16  # 2 FMA pipes x lanes x 2
    cores = os.cpu_count() or 1
    ghz = (sum(mhz) / len(mhz) / 1000) if mhz else float("nan")
    bf16 = "amx_bf16" in flags or "avx512_bf16" in flags
    note = f"{cores} cores x {ghz:.2f} GHz x {per_cycle} fp32 FLOP/cycle; native bf16: {'yes' if bf16 else 'no'}"
    return cores * ghz * per_cycle, note


class _NoNetwork:
    """Stands in for the SavedModel to time everything but the network (normalisation, canvas, masks)."""

    def __init__(self, metadata):
        self.metadata = metadata

    def synthesize_normalized(self, images, sources, targets):
        return np.zeros_like(images)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="reference,default", help="comma list of reference, default")
    parser.add_argument("--precisions", default="float32,bfloat16", help="comma list of float32, bfloat16")
    parser.add_argument("--slices", type=int, default=6, help="central brain slices timed (scaled to the volume)")
    parser.add_argument("--full", action="store_true", help="time the whole volume instead")
    parser.add_argument("--native", action="store_true", help="also run the default model on its 2 mm grid")
    parser.add_argument("--batch-size", type=int, default=16, help="source slices per call (VolumeSynthesizer)")
    parser.add_argument("--chunk-slices", type=int, default=None, help="override tfsynth.savedmodel.graph.CHUNK_SLICES")
    args = parser.parse_args()

    import tensorflow as tf

    from tfsynth.models import build_generator
    from tfsynth.savedmodel import graph as serving_graph
    from tfsynth.savedmodel.io import write_saved_model
    from tfsynth.synthesis.local import load_synthesizer
    from tfsynth.synthesis.volumes import VolumeSynthesizer
    from tfsynth.training.presets import default, stargan_reference, variant
    from tfsynth.training.throughput import generator_flops

    if args.chunk_slices:
        serving_graph.CHUNK_SLICES = args.chunk_slices  # read when the serving graph is traced
    reference = variant(stargan_reference(), data={"image_size": 240})
    m = default().model
    specs = {
        "reference": ("reference (64 f, 6 blocks)", reference, SHAPE),
        "default": (
            f"default config ({m.generator} {m.generator_filters} f, {m.residual_blocks} blocks, "
            f"size {default().data.image_size})",
            default(),
            SHAPE,
        ),
    }
    rows = [specs[name] for name in args.models.split(",")]
    if args.native:
        size = default().data.image_size
        rows.append((rows[-1][0].replace("default config", "default, 2 mm grid"), default(), (size, size, 78)))
    precisions = args.precisions.split(",")

    peak, peak_note = cpu_peak_gflops()
    print(f"TensorFlow {tf.__version__}; {peak_note} -> fp32 peak ~{peak:.0f} GFLOP/s")
    print(
        f"threads: intra-op {tf.config.threading.get_intra_op_parallelism_threads() or 'default'}, "
        f"inter-op {tf.config.threading.get_inter_op_parallelism_threads() or 'default'}; "
        f"chunk {serving_graph.CHUNK_SLICES} slices/graph step; batch {args.batch_size} slices/call; "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )
    work = Path(tempfile.mkdtemp(prefix="bench_synthesize-"))
    table = []
    for label, config, shape in rows:
        image_size = config.data.image_size
        volume = brain_volume(shape)
        brain_slices = np.flatnonzero(volume.any(axis=(0, 1)))
        if args.full:
            timed = volume
        else:
            middle = brain_slices[len(brain_slices) // 2]
            timed = volume[:, :, middle - args.slices // 2 : middle - args.slices // 2 + args.slices]
        timed_slices = int(timed.any(axis=(0, 1)).sum())
        engine_meta = {"image_size": image_size, "voxel_size_mm": SHAPE[0] / shape[0]}
        start = time.perf_counter()
        VolumeSynthesizer(_NoNetwork(engine_meta), args.batch_size).synthesize_volume(volume, "t1", TARGETS)
        overhead = time.perf_counter() - start

        tf.keras.utils.set_random_seed(0)
        generator = build_generator(config)
        reference_out = None
        for precision in precisions:
            path = work / f"{len(table)}-{image_size}-{shape[0]}-{precision}"
            write_saved_model(generator, path, engine_meta, compute_dtype=precision)
            engine = VolumeSynthesizer(load_synthesizer(path), args.batch_size)
            engine.synthesize_volume(timed[:, :, timed_slices // 2 : timed_slices // 2 + 1], "t1", TARGETS)  # trace
            start = time.perf_counter()
            out = engine.synthesize_volume(timed, "t1", TARGETS)
            seconds = time.perf_counter() - start
            per_volume = seconds if args.full else seconds * len(brain_slices) / timed_slices + overhead
            canvas = max(image_size, -(-shape[0] // 4) * 4)  # the brain never fits a smaller canvas here
            gflop = generator_flops(config, canvas, canvas) / 1e9 * len(brain_slices) * len(TARGETS)
            stacked = np.stack([out[t] for t in TARGETS])
            if reference_out is None or precision == "float32":
                reference_out, accuracy = stacked, "-"
            else:
                inside = np.broadcast_to(timed != 0, stacked.shape)
                diff = np.abs(stacked - reference_out)[inside]
                accuracy = f"max {diff.max():.4f}, {psnr(stacked[inside], reference_out[inside]):.1f} dB"
            table.append(
                (label, f"{shape[0]}x{shape[1]}x{shape[2]}", precision, per_volume, gflop / per_volume, accuracy)
            )
            print(f"  {label}, {precision}: {timed_slices} slices x {len(TARGETS)} targets in {seconds:.1f} s")
    mode = "whole volume" if args.full else f"{args.slices} slices timed, scaled to the volume's brain slices"
    print(f"\nload average at end {os.getloadavg()[0]:.1f}; {mode}; non-network overhead included")
    print("| model | grid | compute | s / volume (3 targets) | GFLOP/s | bf16 vs fp32 (brain) |")
    print("|---|---|---|---|---|---|")
    for label, grid, precision, seconds, rate, accuracy in table:
        print(f"| {label} | {grid} | {precision} | {seconds:.0f} | {rate:.0f} | {accuracy} |")


if __name__ == "__main__":
    main()
