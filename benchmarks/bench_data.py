"""Data throughput: `prepare` (slices/s) and the tf.data training pipeline (examples/s).

    python benchmarks/bench_data.py [--subjects 10] [--voxel-size 2] [--batch-size 8] [--workdir DIR]

Builds a phantom cohort (BraTS 2023 naming), prepares it at the default size (the
in-plane size rounded up to a multiple of 4) and then iterates `make_dataset` (training
mode: shuffle, flips, random pairs). Prints one line per measurement.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=10)
    parser.add_argument("--voxel-size", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=300, help="batches timed after 20 warm-up batches")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    from tfsynth.data.pipeline import make_dataset
    from tfsynth.data.preparation import prepare
    from tfsynth.phantom.cohort import write_cohort

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-data-"))
    src, out = workdir / "cohort", workdir / "prepared"
    if not src.exists():
        start = time.perf_counter()
        write_cohort(src, subjects=args.subjects, seed=0, voxel_size=args.voxel_size)
        print(f"phantom: {args.subjects} subjects at {args.voxel_size} mm in {time.perf_counter() - start:.1f} s")

    start, cpu = time.perf_counter(), time.process_time()
    manifest = prepare(src, out, split=(0.8, 0.1, 0.1), seed=0)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    slices = sum(s["slices"] for s in manifest["splits"].values())
    size = manifest["image_size"]
    print(
        f"prepare: {args.subjects} subjects at {args.voxel_size} mm -> {slices} slices of {size}x{size} "
        f"in {seconds:.2f} s = {slices / seconds:.0f} slices/s ({args.subjects / seconds:.2f} subjects/s; "
        f"{cpu:.1f} CPU-s, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )

    ds = make_dataset(out, "train", batch_size=args.batch_size, seed=0)
    it = iter(ds)
    for _ in range(20):
        next(it)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.batches):
        next(it)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    examples = args.batches * args.batch_size
    print(
        f"tf.data: batch {args.batch_size} of {size}x{size}: {examples / seconds:.0f} examples/s "
        f"({args.batches / seconds:.0f} batches/s, {args.batches} batches after warm-up; {cpu:.1f} CPU-s, "
        f"load average {os.getloadavg()[0]:.1f})"
    )
    print(f"work dir: {workdir}")


if __name__ == "__main__":
    main()
