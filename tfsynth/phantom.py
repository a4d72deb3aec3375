"""Writes the built-in phantom cohort: ``python -m tfsynth.phantom OUT_DIR [options]``.

A thin entry point over `tfsynth.data.phantom.write_cohort`; see that module for the physics.
"""

from __future__ import annotations

import argparse
import sys

from .data.phantom import grid_shape, write_cohort
from .errors import cli_entry


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfsynth phantom",
        description="Write physics-based multi-contrast brain phantoms with a glioma (T1, T1c, T2, FLAIR + "
        "segmentation) as BraTS-layout NIfTI.",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the case folders into")
    parser.add_argument("--subjects", type=int, default=10, help="number of subjects (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="cohort seed; same seed, same cohort (default 0)")
    parser.add_argument(
        "--voxel-size",
        type=float,
        default=2.0,
        metavar="MM",
        help="isotropic voxel size in mm; 1 gives BraTS' 240x240x155 grid (default 2: 120x120x78)",
    )
    parser.add_argument(
        "--naming",
        default="brats2023",
        help="file naming era: brats2023 (BraTS-GLI-00000-000-t1n.nii.gz ...) or brats2020 "
        "(BraTS20_Training_001_t1.nii.gz ...); default brats2023",
    )
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    folders = write_cohort(
        args.out_dir,
        subjects=args.subjects,
        seed=args.seed,
        voxel_size=args.voxel_size,
        naming=args.naming,
        progress=True,
    )
    shape = "x".join(str(n) for n in grid_shape(args.voxel_size))
    noun = "subject" if len(folders) == 1 else "subjects"
    print(
        f"wrote {len(folders)} phantom {noun} ({shape} voxels of {args.voxel_size:g} mm, {args.naming}) to {args.out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
