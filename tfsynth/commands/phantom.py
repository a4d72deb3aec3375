"""Writes the built-in phantom cohort: ``python -m tfsynth.phantom OUT_DIR [options]``.

A thin entry point over `tfsynth.phantom.cohort.write_cohort`; see that module for the physics.
"""

from __future__ import annotations

import argparse
import dataclasses

from tfsynth.errors import cli_entry
from tfsynth.phantom.acquisition import Acquisition
from tfsynth.phantom.cohort import grid_shape, write_cohort

_DEFAULT = Acquisition()
# Acquisition field -> (metavar(s), help). Each becomes ``--field-name``; defaults come from Acquisition.
_ACQUISITION_FLAGS = {
    "t1_tr": ("MS", "T1/T1c spin-echo repetition time, ms"),
    "t1_te": ("MS", "T1/T1c spin-echo echo time, ms"),
    "t2_tr": ("MS", "T2 spin-echo repetition time, ms"),
    "t2_te": ("MS", "T2 spin-echo echo time, ms"),
    "flair_tr": ("MS", "FLAIR repetition time, ms"),
    "flair_te": ("MS", "FLAIR echo time, ms"),
    "flair_ti": ("MS", "FLAIR inversion time, ms (default: the TI that nulls CSF at each subject's TR)"),
    "gd_mm": (("LOW", "HIGH"), "gadolinium concentration in the enhancing tumour for T1c, mM, drawn per subject"),
    "snr": (("LOW", "HIGH"), "signal-to-noise ratio (mean brain signal / noise std), drawn per image"),
    "bias_strength": (
        ("LOW", "HIGH"),
        "std of the log bias field (0.1: about +-10%% intensity variation; 0: none), drawn per image",
    ),
    "tissue_t1_scale": (
        "FACTOR",
        "factor on every tissue's 3 T literature T1; 0.8 moves white matter to its 1.5 T value",
    ),
    "tissue_t2_scale": ("FACTOR", "factor on every tissue's 3 T literature T2"),
}


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
    group = parser.add_argument_group(
        "acquisition",
        "the scanner's protocol, noise and bias field; TR/TE vary +-5% and TI +-2% per subject around these",
    )
    for name, (metavar, text) in _ACQUISITION_FLAGS.items():
        default = getattr(_DEFAULT, name)
        pair = isinstance(metavar, tuple)
        if default is not None:
            text += f" (default {' '.join(f'{v:g}' for v in default) if pair else f'{default:g}'})"
        group.add_argument(
            "--" + name.replace("_", "-"),
            type=float,
            nargs=2 if pair else None,
            default=default,
            metavar=metavar,
            help=text,
        )
    return parser


def acquisition_from_args(args: argparse.Namespace) -> Acquisition:
    """The `Acquisition` the parsed flags describe; raises TfsynthError for a bad value."""
    return Acquisition(**{field.name: getattr(args, field.name) for field in dataclasses.fields(Acquisition)})


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    acquisition = acquisition_from_args(args)
    folders = write_cohort(
        args.out_dir,
        subjects=args.subjects,
        seed=args.seed,
        voxel_size=args.voxel_size,
        naming=args.naming,
        progress=True,
        acquisition=acquisition,
    )
    shape = "x".join(str(n) for n in grid_shape(args.voxel_size))
    noun = "subject" if len(folders) == 1 else "subjects"
    protocol = "default acquisition" if acquisition == _DEFAULT else "custom acquisition"
    print(
        f"wrote {len(folders)} phantom {noun} ({shape} voxels of {args.voxel_size:g} mm, {args.naming}, {protocol}) "
        f"to {args.out_dir}"
    )
    return 0
