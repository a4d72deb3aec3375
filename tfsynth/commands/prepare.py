"""``python -m tfsynth.prepare SRC_DIR OUT_DIR``: BraTS NIfTI folders -> sharded TFRecords + manifest.json.

Every case is validated before anything is written; a bad case stops the run with one
line naming the file and the reason (exit 2), or is skipped with ``--skip-bad``. OUT_DIR
appears only when complete (built in a hidden temp folder beside it, then renamed).
"""

from __future__ import annotations

import argparse
import sys

from tfsynth.errors import cli_entry

DESCRIPTION = (
    "Validate BraTS NIfTI cases (2020 or 2023 naming), normalise them per volume (0.5/99.5 brain "
    "percentiles) and write their axial slices as sharded TFRecords + manifest.json."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfsynth prepare", description=DESCRIPTION)
    parser.add_argument("src", metavar="SRC_DIR", help="folder of BraTS case folders (2020 or 2023 naming)")
    parser.add_argument("out", metavar="OUT_DIR", help="output folder; must not exist or be empty")
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="slice height = width, a multiple of 4 (centre crop/pad of the slices at --voxel-size); "
        "default: in-plane size rounded up to a multiple of 4",
    )
    parser.add_argument(
        "--voxel-size",
        type=float,
        default=None,
        metavar="MM",
        help="in-plane voxel size every case is resampled to (linear; slices keep their spacing); "
        "default: the cohort's median, so a cohort of one voxel size is not resampled",
    )
    parser.add_argument(
        "--split",
        type=float,
        nargs=3,
        default=(0.8, 0.1, 0.1),
        metavar=("TRAIN", "VAL", "TEST"),
        help="patients per split, as proportions (0.8 0.1 0.1) or patient counts (8 1 1); a patient's timepoints "
        "(BraTS-GLI-02060-100, -101) share a split; default 0.8 0.1 0.1",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient split (default 0)")
    parser.add_argument("--skip-bad", action="store_true", help="report and skip bad cases instead of stopping")
    parser.add_argument("--shard-slices", type=int, default=None, help="slices per shard (default ~128 MB shards)")
    parser.add_argument(
        "--min-brain-fraction",
        type=float,
        default=0.01,
        help="keep axial slices whose brain covers at least this fraction of the slice (default 0.01)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tfsynth.data.preparation import prepare  # TensorFlow loads only after the arguments parse

    manifest = prepare(
        args.src,
        args.out,
        size=args.size,
        voxel_size=args.voxel_size,
        split=args.split,
        seed=args.seed,
        skip_bad=args.skip_bad,
        shard_slices=args.shard_slices,
        min_brain_fraction=args.min_brain_fraction,
        progress=False if args.quiet else None,
    )
    counts = ", ".join(
        f"{name} {len(info['cases'])} cases / {info['slices']} slices" for name, info in manifest["splits"].items()
    )
    print(f"prepared {args.out}: {manifest['image_size']}x{manifest['image_size']} slices; {counts}")
    if manifest["skipped"]:
        print(f"skipped {len(manifest['skipped'])} bad file(s)/case(s); see manifest.json 'skipped'", file=sys.stderr)
    return 0
