"""The dev PredictionService as a process: `DevModelServer` (gRPC on loopback), which
``tfsynth dev-server`` runs.

The service itself, which answers Predict and GetModelMetadata, is `tfsynth.clients.dev_servicer`.
It speaks gRPC only: TF Serving's REST API is ``tensorflow_model_server --rest_api_port``'s (the
package's REST client, `tfsynth.clients.rest_client`, talks to that); the tests add a REST gateway
of their own (``tests/dev_rest_gateway.py``) to exercise the client without one.
"""

from __future__ import annotations

import concurrent.futures
import json
import signal
import threading
from collections.abc import Callable

import grpc

from tfsynth.clients.dev_servicer import DevPredictionServicer, ModelEntry
from tfsynth.clients.grpc_client import MAX_MESSAGE_BYTES
from tfsynth.errors import TfsynthError


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
