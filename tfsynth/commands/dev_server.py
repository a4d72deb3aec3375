"""``tfsynth dev-server``: the development stand-in for ``tensorflow_model_server`` (gRPC only).

The server is `tfsynth.clients.dev_server.DevModelServer`; flag names follow tensorflow_model_server.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tfsynth.clients.dev_server import DevModelServer, serve_until_stopped
from tfsynth.clients.dev_servicer import ModelEntry
from tfsynth.errors import cli_entry


def build_parser(model_base_path_required: bool = True) -> argparse.ArgumentParser:
    """The command line, with TF Serving's flag names (``tests/dev_serving.py`` adds more)."""
    parser = argparse.ArgumentParser(
        prog="tfsynth dev-server",
        description="Development stand-in for tensorflow_model_server (NOT for production): PredictionService "
        "Predict/GetModelMetadata for tfsynth SavedModels. Flag names follow tensorflow_model_server.",
    )
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (0: pick a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    parser.add_argument("--model_name", default="tfsynth")
    parser.add_argument(
        "--model_base_path", required=model_base_path_required, help="directory of integer version folders"
    )
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    models = [ModelEntry(args.model_name, Path(args.model_base_path))]
    serve_until_stopped(DevModelServer(models, port=args.port, host=args.host))
    return 0
