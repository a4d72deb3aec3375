"""The dev PredictionService as a process: `DevModelServer` (gRPC on loopback) and the command
``python -m tfsynth.serving.servicer`` runs (`main`).

The service itself, which answers Predict and GetModelMetadata, is `tfsynth.serving.servicer`.
It speaks gRPC only: TF Serving's REST API is ``tensorflow_model_server --rest_api_port``'s (the
package's REST client, `tfsynth.serving.rest`, talks to that); the tests add a REST gateway
of their own (``tests/dev_rest_gateway.py``) to exercise the client without one.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import grpc

from ..errors import TfsynthError, cli_entry
from .client import MAX_MESSAGE_BYTES
from .servicer import DevPredictionServicer, ModelEntry


class DevModelServer:
    """The dev servicer on a gRPC server on loopback.

    Use as a context manager; ``address`` is ``"<host>:<port>"`` (``127.0.0.1`` and a free port by
    default), ``host`` and ``servicer`` are what it serves on and through.

    Raises:
        TfsynthError: the port cannot be bound.
    """

    def __init__(
        self,
        models: list[ModelEntry],
        port: int = 0,
        host: str = "127.0.0.1",
        max_workers: int = 16,
        run: Callable | None = None,
    ):
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.servicer = DevPredictionServicer(models, run)
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        self._server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=max_workers), options=options)
        handlers = prediction_service_pb2_grpc.PredictionServiceServicer()
        for method in ("Predict", "GetModelMetadata"):
            setattr(handlers, method, getattr(self.servicer, method))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(handlers, self._server)
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        if not self.port:
            raise TfsynthError(f"cannot bind gRPC port {host}:{port}")
        self.host = host
        self.address = f"{host}:{self.port}"

    def start(self) -> DevModelServer:
        self._server.start()
        return self

    def stop(self, grace: float | None = 1.0):
        self._server.stop(grace).wait()
        self.servicer.close()

    def __enter__(self) -> DevModelServer:
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def build_parser(model_base_path_required: bool = True) -> argparse.ArgumentParser:
    """The command line, with TF Serving's flag names (``tests/dev_serving.py`` adds more)."""
    parser = argparse.ArgumentParser(
        prog="python -m tfsynth.serving.servicer",
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


def serve_until_stopped(server: DevModelServer, extra: dict | None = None) -> None:
    """Starts ``server``, prints one JSON line ``{"grpc": address, **extra}``, and serves until
    SIGINT or SIGTERM."""
    server.start()
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    print(json.dumps({"grpc": server.address, **(extra or {})}), flush=True)
    stopped.wait()
    server.stop()


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    models = [ModelEntry(args.model_name, Path(args.model_base_path))]
    serve_until_stopped(DevModelServer(models, port=args.port, host=args.host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
