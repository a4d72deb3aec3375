"""``python -m tfsynth.train`` / ``tfsynth train``: train the unified GAN (`tfsynth.training.train`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tfsynth.config import PRECISIONS, Config
from tfsynth.data.manifest import load_manifest
from tfsynth.errors import TfsynthError, cli_entry
from tfsynth.training.presets import PRESETS, preset
from tfsynth.training.run_estimate import size_warning
from tfsynth.training.train import DEFAULT_CHECKPOINT_EVERY, DEFAULT_OUT, train


def build_config(args) -> Config:
    """The effective config: --config file (or the named --preset, or the defaults) with command-line overrides."""
    name = getattr(args, "preset", None)
    if args.config and name:
        raise TfsynthError("give --config or --preset, not both (derive a config file from a preset instead)")
    values = (preset(name) if name else Config()).to_dict()
    if args.config:
        values = Config.from_json_file(args.config).to_dict()
    overrides = {
        "epochs": args.epochs,
        "steps_per_epoch": args.steps_per_epoch,
        "batch_size": args.batch_size,
        "precision": args.precision,
        "seed": args.seed,
    }
    values["train"].update({key: value for key, value in overrides.items() if value is not None})
    explicit_size = args.config and "image_size" in json.loads(Path(args.config).read_text()).get("data", {})
    if args.data and not explicit_size:
        # A prepared directory fixes the image size unless the config names one.
        manifest, chosen_size = load_manifest(args.data), values["data"]["image_size"]
        values["data"]["image_size"] = int(manifest["image_size"])
        warning = size_warning(values["data"]["image_size"], chosen_size, manifest.get("voxel_size_mm"))
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    return Config.from_dict(values)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tfsynth train", description="Train the unified GAN.")
    parser.add_argument("--data", help="prepared directory (default: build the phantom cohort in OUT/data)")
    parser.add_argument(
        "--out", default=DEFAULT_OUT, help=f"run directory (default {DEFAULT_OUT}); resumed if it exists"
    )
    parser.add_argument("--config", help="JSON config (see tfsynth.config); flags below override it")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="named config (tfsynth.training.presets), e.g. completion; flags override it",
    )
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--steps-per-epoch", type=int)
    parser.add_argument("--batch-size", type=int, help="global batch size (split over replicas)")
    parser.add_argument("--precision", choices=PRECISIONS)
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=DEFAULT_CHECKPOINT_EVERY,
        help="checkpoint period in steps (0: epochs only)",
    )
    parser.add_argument("--no-export", action="store_true", help="skip writing saved_model/")
    args = parser.parse_args(argv)
    config = build_config(args)
    summary = train(config, args.data, args.out, checkpoint_every=args.checkpoint_every, export=not args.no_export)
    print(json.dumps(summary, indent=2))
    return 0
