"""A development stand-in for TensorFlow Serving: PredictionService over real gRPC.

NOT a production server. TF Serving's ``tensorflow_model_server`` cannot be installed on
every machine (no Python registry ships it), so the README's walk-through, the test suite and
the load script run this servicer instead. It follows TF Serving's rules where a client can
see them:

- Models come from ``--model_name/--model_base_path``. Integer-named version folders are
  rescanned on every request, so a newly exported version is served without a restart;
  ``.tmp-*`` folders are ignored, as TF Serving ignores them.
- Each version is loaded with the TF1 SavedModel loader into a ``tf.compat.v1.Session``, and
  signatures run by their tensor names, as TF Serving's C++ loader does.
- ``model_spec``: unknown name or version -> NOT_FOUND "Servable not found for request: ...";
  unknown ``version_label`` -> INVALID_ARGUMENT; no version -> the latest available; empty
  ``signature_name`` -> ``serving_default``; unknown signature -> FAILED_PRECONDITION
  ``Serving signature key "x" not found.`` (TF Serving's code and text for Predict).
- Input aliases must match the signature exactly (INVALID_ARGUMENT naming the extra and
  missing ones), dtypes must match, ``output_filter`` selects outputs. Graph errors keep their
  code (a failed in-graph assertion is INVALID_ARGUMENT) and the server keeps answering.

Run it: ``tfsynth dev-server --port 8500 --model_name tfsynth
--model_base_path /models/tfsynth`` (TF Serving's flag names); the server process (gRPC server,
command line) is `tfsynth.clients.dev_server`. ``tests/dev_serving.py`` extends it for the tests
and the load script with TF Serving's model config files, server-side batching and the
monitoring config, and ``tests/dev_rest_gateway.py`` with TF Serving's REST API.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np

from tfsynth.errors import tf_error_message
from tfsynth.savedmodel.contract import DEFAULT_SIGNATURE


class RequestError(Exception):
    """A request the server refuses, with the gRPC status code to answer."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- configuration


@dataclasses.dataclass
class ModelEntry:
    """One served model: TF Serving's ``ModelConfig`` reduced to what affects answers."""

    name: str
    base_path: Path
    policy: str = "latest"  # "latest" | "all" | "specific"
    num_versions: int = 1
    specific_versions: tuple[int, ...] = ()
    labels: dict[str, int] = dataclasses.field(default_factory=dict)

    def available_versions(self) -> list[int]:
        """Integer version folders holding a SavedModel, filtered by the version policy."""
        try:
            found = sorted(
                int(p.name) for p in self.base_path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()
            )
        except OSError:
            return []
        if self.policy == "all":
            return found
        if self.policy == "specific":
            return [v for v in found if v in self.specific_versions]
        return found[-self.num_versions :]


# --------------------------------------------------------------------------- execution


class LoadedVersion:
    """One SavedModel version in a TF1 session, run by tensor names (as TF Serving's C++ loader)."""

    def __init__(self, path: Path, version: int):
        import tensorflow as tf

        self.path = path
        self.version = version
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        self.meta_graph = tf.compat.v1.saved_model.load(self.session, ["serve"], str(path))
        self.signatures = dict(self.meta_graph.signature_def)

    def run(self, feeds: dict[str, np.ndarray], fetches: list[str]) -> list[np.ndarray]:
        return self.session.run(fetches, feeds)


# --------------------------------------------------------------------------- the service


class DevPredictionServicer:
    """PredictionService (Predict, GetModelMetadata) over tfsynth SavedModels; for tests and dev only.

    Args:
        models: the served models.
        run: ``run(loaded, feeds, fetches) -> outputs`` executes a request's signature; default
            `LoadedVersion.run` (a batch scheduler can stand in, as in ``tests/dev_serving.py``).
    """

    def __init__(self, models: list[ModelEntry], run: Callable | None = None):
        self.models = {entry.name: entry for entry in models}
        self._loaded: dict[tuple[str, int], LoadedVersion] = {}
        self._load_lock = threading.Lock()
        self._run = run or (lambda loaded, feeds, fetches: loaded.run(feeds, fetches))

    # -- model_spec resolution (TF Serving's rules)
    def resolve(self, model_spec) -> LoadedVersion:
        name = model_spec.name
        entry = self.models.get(name)
        if model_spec.HasField("version"):
            wanted, description = model_spec.version.value, f"Specific({name}, {model_spec.version.value})"
        elif model_spec.version_label:
            if entry is None or model_spec.version_label not in entry.labels:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"Unrecognized servable version label: {model_spec.version_label}"
                )
            wanted = entry.labels[model_spec.version_label]
            description = f"Specific({name}, {wanted})"
        else:
            wanted, description = None, f"Latest({name})"
        available = entry.available_versions() if entry else []
        if not available or (wanted is not None and wanted not in available):
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {description}")
        version = available[-1] if wanted is None else wanted
        with self._load_lock:
            key = (name, version)
            if key not in self._loaded:
                self._loaded[key] = LoadedVersion(entry.base_path / str(version), version)
            return self._loaded[key]

    def predict(self, request):
        """PredictRequest -> PredictResponse; raises `RequestError`."""
        import tensorflow as tf
        from tensorflow.core.framework import types_pb2
        from tensorflow_serving.apis import predict_pb2

        loaded = self.resolve(request.model_spec)
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        signature = loaded.signatures.get(signature_name)
        if signature is None:
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{signature_name}" not found.'
            )
        sent, expected = set(request.inputs), set(signature.inputs)
        if sent != expected:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{','.join(sorted(expected - sent))}}}.",
            )
        feeds = {}
        for alias, proto in request.inputs.items():
            info = signature.inputs[alias]
            if proto.dtype != info.dtype:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"input {alias!r} must be {types_pb2.DataType.Name(info.dtype)}, got {types_pb2.DataType.Name(proto.dtype)}",
                )
            try:
                feeds[info.name] = tf.make_ndarray(proto)
            except Exception:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"tensor parsing error: {alias}") from None
        aliases = list(request.output_filter) or list(signature.outputs)
        for alias in aliases:
            if alias not in signature.outputs:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                    f"{{{','.join(sorted(signature.outputs))}}}.",
                )
        if len(set(aliases)) != len(aliases):
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "duplicate output tensor alias")
        fetches = [signature.outputs[alias].name for alias in aliases]
        try:
            outputs = self._run(loaded, feeds, fetches)
        except tf.errors.OpError as error:
            code = _GRPC_CODES.get(error.error_code, grpc.StatusCode.UNKNOWN)
            raise RequestError(code, tf_error_message(error.message)) from None
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = loaded.version
        response.model_spec.signature_name = signature_name
        for alias, value in zip(aliases, outputs, strict=True):
            response.outputs[alias].CopyFrom(tf.make_tensor_proto(value))
        return response

    def model_metadata(self, request):
        """GetModelMetadataRequest -> GetModelMetadataResponse (``signature_def`` only, as TF Serving)."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        fields = list(request.metadata_field)
        if not fields:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT, "GetModelMetadataRequest must specify at least one metadata_field"
            )
        for field in fields:
            if field != "signature_def":
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {field} is not supported")
        loaded = self.resolve(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = loaded.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, value in loaded.signatures.items():
            signature_map.signature_def[key].CopyFrom(value)
        response.metadata["signature_def"].Pack(signature_map)
        return response

    # -- gRPC handlers
    def Predict(self, request, context):  # noqa: N802 - gRPC method name
        return self._answer(self.predict, request, context)

    def GetModelMetadata(self, request, context):  # noqa: N802 - gRPC method name
        return self._answer(self.model_metadata, request, context)

    @staticmethod
    def _answer(handler, request, context):
        try:
            return handler(request)
        except RequestError as error:
            context.abort(error.code, error.message)

    def close(self):
        for loaded in self._loaded.values():
            loaded.session.close()


# TensorFlow and gRPC share the canonical status code numbers.
_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}
