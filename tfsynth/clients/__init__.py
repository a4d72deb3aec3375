"""Serving tfsynth with TensorFlow Serving: gRPC and REST clients, and a dev/test PredictionService.

``SynthesisClient`` (gRPC) and ``RestSynthesisClient`` (REST) are imported lazily so that
``import tfsynth.clients`` stays cheap; ``tfsynth.clients.dev_servicer`` is a small development
stand-in for ``tensorflow_model_server`` (gRPC Predict and GetModelMetadata).
"""

from __future__ import annotations

__all__ = ["RestSynthesisClient", "ServingError", "SynthesisClient"]


def __getattr__(name: str):
    if name in ("SynthesisClient", "ServingError"):
        from tfsynth.clients import grpc_client as client

        return getattr(client, name)
    if name == "RestSynthesisClient":
        from tfsynth.clients.rest_client import RestSynthesisClient

        return RestSynthesisClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
