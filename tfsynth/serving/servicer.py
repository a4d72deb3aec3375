"""A development / test stand-in for TensorFlow Serving: a PredictionService over real gRPC.

NOT a production server. TF Serving's ``tensorflow_model_server`` cannot be installed on
every machine (no Python registry ships it), so the test suite and the load script run this
servicer instead. It follows TF Serving's rules where a client can see them:

- Models come from ``--model_name/--model_base_path`` or a ``--model_config_file``
  (``model_server_config_pb2`` text format: version policy ``latest`` / ``all`` /
  ``specific``, ``version_labels``). Integer-named version folders are rescanned on every
  request, so a newly exported version is served without a restart; ``.tmp-*`` folders are
  ignored, as TF Serving ignores them.
- Each version is loaded with the TF1 SavedModel loader into a ``tf.compat.v1.Session``, and
  signatures run by their tensor names, as TF Serving's C++ loader does.
- ``model_spec``: unknown name or version -> NOT_FOUND "Servable not found for request: ...";
  unknown ``version_label`` -> INVALID_ARGUMENT; no version -> the latest available; empty
  ``signature_name`` -> ``serving_default``; unknown signature -> FAILED_PRECONDITION
  ``Serving signature key "x" not found.`` (TF Serving's code and text for Predict).
- Input aliases must match the signature exactly (INVALID_ARGUMENT naming the extra and
  missing ones), dtypes must match, ``output_filter`` selects outputs. Graph errors keep their
  code (a failed in-graph assertion is INVALID_ARGUMENT) and the server keeps answering.
- Optional server-side batching with TF Serving's ``BatchingParameters`` semantics
  (``max_batch_size`` rows, ``batch_timeout_micros``, ``num_batch_threads``): concurrent
  requests for the same signature are concatenated along dimension 0, run once and split.
  As in TF Serving, every input of a request must share dimension 0, and batching joins
  requests: never enable it for ``serving_default`` traffic, whose normalisation spans the
  whole request (see export/README.md).

Run it: ``python -m tfsynth.serving.servicer --port 8500 --model_name tfsynth
--model_base_path /models/tfsynth [--rest_api_port 8501] [--enable_batching
--batching_parameters_file export/batching_parameters.txt]`` (TF Serving's flag names).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np

from ..errors import TfsynthError, cli_entry
from ..inference import tf_error_message
from .client import MAX_MESSAGE_BYTES  # TF Serving accepts messages up to INT_MAX.


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


def load_model_config(path: str | os.PathLike) -> list[ModelEntry]:
    """Parses a TF Serving ``--model_config_file`` (text ``ModelServerConfig``)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    path = Path(path)
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(path.read_text(), config)
    except (OSError, text_format.ParseError) as error:
        raise TfsynthError(f"model config {path}: {error}") from None
    entries = []
    for model in config.model_config_list.config:
        base = Path(model.base_path)
        if not base.is_absolute():
            base = path.parent / base
        policy = model.model_version_policy.WhichOneof("policy_choice") or "latest"
        entries.append(
            ModelEntry(
                name=model.name,
                base_path=base,
                policy=policy,
                num_versions=max(1, model.model_version_policy.latest.num_versions) if policy == "latest" else 1,
                specific_versions=tuple(model.model_version_policy.specific.versions),
                labels=dict(model.version_labels),
            )
        )
    if not entries:
        raise TfsynthError(f"model config {path}: no model_config_list entries")
    return entries


@dataclasses.dataclass
class BatchingOptions:
    """TF Serving's ``BatchingParameters`` fields this servicer honours."""

    max_batch_size: int = 8
    batch_timeout_micros: int = 2000
    num_batch_threads: int = 2
    max_enqueued_batches: int = 100


def _config_message(file_name: str, messages: dict[str, list[tuple[str, int, str, bool]]], root: str):
    """Declares TF Serving config messages that ``tensorflow-serving-api`` does not ship.

    Args:
        file_name: a unique name for the declared .proto file.
        messages: message name (in package ``tensorflow.serving``) -> fields
            ``(name, number, type, repeated)``; type is ``int64``, ``bool``, ``string`` or a full
            message name such as ``.google.protobuf.Int64Value``.
        root: the message whose class is returned.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    field_type = descriptor_pb2.FieldDescriptorProto
    scalars = {"int64": field_type.TYPE_INT64, "bool": field_type.TYPE_BOOL, "string": field_type.TYPE_STRING}
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    proto = descriptor_pb2.FileDescriptorProto(
        name=file_name, package="tensorflow.serving", dependency=[wrappers_pb2.DESCRIPTOR.name]
    )
    for message_name, fields in messages.items():
        message = proto.message_type.add(name=message_name)
        for name, number, type_name, repeated in fields:
            label = field_type.LABEL_REPEATED if repeated else field_type.LABEL_OPTIONAL
            if type_name in scalars:
                message.field.add(name=name, number=number, type=scalars[type_name], label=label)
            else:
                message.field.add(
                    name=name, number=number, type=field_type.TYPE_MESSAGE, type_name=type_name, label=label
                )
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{root}"))


def batching_parameters_proto():
    """The message class of TF Serving's ``BatchingParameters`` (``--batching_parameters_file``).

    ``tensorflow-serving-api`` does not ship ``session_bundle_config_pb2``; the fields tfsynth
    documents are declared with TF Serving's names and numbers.
    """
    wrapped = ".google.protobuf.Int64Value"
    fields = [
        ("max_batch_size", 1, wrapped, False),
        ("batch_timeout_micros", 2, wrapped, False),
        ("max_enqueued_batches", 3, wrapped, False),
        ("num_batch_threads", 4, wrapped, False),
        ("thread_pool_name", 5, ".google.protobuf.StringValue", False),
        ("allowed_batch_sizes", 6, "int64", True),
        ("pad_variable_length_inputs", 7, "bool", False),
    ]
    return _config_message("tfsynth_batching.proto", {"BatchingParameters": fields}, "BatchingParameters")


def monitoring_config_proto():
    """The message class of TF Serving's ``MonitoringConfig`` (``--monitoring_config_file``)."""
    messages = {
        "PrometheusConfig": [("enable", 1, "bool", False), ("path", 2, "string", False)],
        "MonitoringConfig": [("prometheus_config", 1, ".tensorflow.serving.PrometheusConfig", False)],
    }
    return _config_message("tfsynth_monitoring.proto", messages, "MonitoringConfig")


def load_batching_parameters(path: str | os.PathLike) -> BatchingOptions:
    """Reads a TF Serving ``--batching_parameters_file``."""
    from google.protobuf import text_format

    path = Path(path)
    params = batching_parameters_proto()()
    try:
        text_format.Parse(path.read_text(), params)
    except (OSError, text_format.ParseError) as error:
        raise TfsynthError(f"batching parameters {path}: {error}") from None
    options = BatchingOptions()
    for field in ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches"):
        if params.HasField(field):
            setattr(options, field, int(getattr(params, field).value))
    return options


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


@dataclasses.dataclass
class _Task:
    feeds: dict[str, np.ndarray]
    rows: int
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    result: list[np.ndarray] | None = None
    error: BaseException | None = None


class Batcher:
    """Joins concurrent requests with the same (version, fetches, input shapes) along dimension 0."""

    def __init__(self, options: BatchingOptions):
        self.options = options
        self._queues: dict[tuple, collections.deque] = collections.defaultdict(collections.deque)
        self._runners: dict[tuple, tuple[LoadedVersion, list[str]]] = {}
        self._ready: collections.deque = collections.deque()  # keys in arrival order of first task
        self._cv = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._worker, name=f"batch-{i}", daemon=True)
            for i in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, loaded: LoadedVersion, feeds: dict[str, np.ndarray], fetches: list[str]) -> list[np.ndarray]:
        rows = {int(np.shape(value)[0]) if np.ndim(value) else -1 for value in feeds.values()}
        if len(rows) != 1 or -1 in rows:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "Batching session Run() input tensors must have equal 0th-dimension size",
            )
        task = _Task(feeds=feeds, rows=rows.pop())
        if task.rows > self.options.max_batch_size:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Task size {task.rows} is larger than maximum input batch size {self.options.max_batch_size}",
            )
        key = (id(loaded), tuple(fetches)) + tuple(
            (name, np.asarray(value).dtype.str, np.shape(value)[1:]) for name, value in sorted(feeds.items())
        )
        with self._cv:
            if (
                sum(len(q) for q in self._queues.values())
                >= self.options.max_enqueued_batches * self.options.max_batch_size
            ):
                raise RequestError(grpc.StatusCode.UNAVAILABLE, "The batch scheduling queue is full")
            self._runners[key] = (loaded, fetches)
            if key not in self._ready:
                self._ready.append(key)
            self._queues[key].append(task)
            self._cv.notify()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.result

    def _take_batch(self):
        with self._cv:
            while not self._stopping:
                while self._ready and not self._queues[self._ready[0]]:
                    self._ready.popleft()  # another worker already took these tasks
                if self._ready:
                    break
                self._cv.wait()
            if self._stopping:
                return None
            key = self._ready.popleft()
            queue = self._queues[key]
            deadline = time.monotonic() + self.options.batch_timeout_micros / 1e6
            batch, rows = [], 0
            while True:
                while queue and rows + queue[0].rows <= self.options.max_batch_size:
                    task = queue.popleft()
                    batch.append(task)
                    rows += task.rows
                remaining = deadline - time.monotonic()
                if rows >= self.options.max_batch_size or remaining <= 0 or (queue and batch):
                    break
                self._cv.wait(remaining)
            if queue and key not in self._ready:
                self._ready.append(key)
                self._cv.notify()
            return self._runners[key], batch

    def _worker(self):
        while True:
            taken = self._take_batch()
            if taken is None:
                return
            (loaded, fetches), batch = taken
            try:
                feeds = {name: np.concatenate([t.feeds[name] for t in batch]) for name in batch[0].feeds}
                outputs = loaded.run(feeds, fetches)
                start = 0
                for task in batch:
                    task.result = [out[start : start + task.rows] for out in outputs]
                    start += task.rows
            except BaseException as error:  # every task of a failed batch gets the error
                for task in batch:
                    task.error = error
            for task in batch:
                task.done.set()

    def stop(self):
        with self._cv:
            self._stopping = True
            self._cv.notify_all()


# --------------------------------------------------------------------------- the service


class DevPredictionServicer:
    """PredictionService (Predict, GetModelMetadata) over tfsynth SavedModels; for tests and dev only."""

    def __init__(self, models: list[ModelEntry], batching: BatchingOptions | None = None):
        self.models = {entry.name: entry for entry in models}
        self._loaded: dict[tuple[str, int], LoadedVersion] = {}
        self._load_lock = threading.Lock()
        self.batcher = Batcher(batching) if batching else None

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
        signature_name = request.model_spec.signature_name or "serving_default"
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
            outputs = self.batcher.run(loaded, feeds, fetches) if self.batcher else loaded.run(feeds, fetches)
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
        if self.batcher:
            self.batcher.stop()
        for loaded in self._loaded.values():
            loaded.session.close()


# TensorFlow and gRPC share the canonical status code numbers.
_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


class DevModelServer:
    """The dev servicer on a gRPC server (and optionally TF Serving's REST API) on loopback.

    Use as a context manager; ``address`` is ``"127.0.0.1:<port>"`` (a free port by default).
    """

    def __init__(
        self,
        models: list[ModelEntry],
        port: int = 0,
        host: str = "127.0.0.1",
        batching: BatchingOptions | None = None,
        rest_port: int | None = None,
        max_workers: int = 16,
    ):
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.servicer = DevPredictionServicer(models, batching)
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
        self.address = f"{host}:{self.port}"
        self._rest = None
        if rest_port is not None:
            from .rest_gateway import make_rest_server

            self._rest = make_rest_server(self.servicer, host, rest_port)
            self.rest_address = f"{host}:{self._rest.server_address[1]}"

    def start(self) -> DevModelServer:
        self._server.start()
        if self._rest:
            threading.Thread(target=self._rest.serve_forever, name="rest", daemon=True).start()
        return self

    def stop(self, grace: float | None = 1.0):
        self._server.stop(grace).wait()
        if self._rest:
            self._rest.shutdown()
            self._rest.server_close()
        self.servicer.close()

    def __enter__(self) -> DevModelServer:
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tfsynth.serving.servicer",
        description="Development stand-in for tensorflow_model_server (NOT for production): PredictionService "
        "Predict/GetModelMetadata for tfsynth SavedModels. Flag names follow tensorflow_model_server.",
    )
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (0: pick a free one)")
    parser.add_argument("--rest_api_port", type=int, default=None, help="REST port (0: free one; default: no REST)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    parser.add_argument("--model_name", default="tfsynth")
    parser.add_argument("--model_base_path", help="directory of integer version folders")
    parser.add_argument("--model_config_file", help="ModelServerConfig text file (instead of --model_base_path)")
    parser.add_argument("--enable_batching", action="store_true")
    parser.add_argument("--batching_parameters_file", help="BatchingParameters text file")
    args = parser.parse_args(argv)
    if bool(args.model_base_path) == bool(args.model_config_file):
        raise TfsynthError("give exactly one of --model_base_path and --model_config_file")
    models = (
        load_model_config(args.model_config_file)
        if args.model_config_file
        else [ModelEntry(args.model_name, Path(args.model_base_path))]
    )
    batching = None
    if args.enable_batching:
        batching = (
            load_batching_parameters(args.batching_parameters_file)
            if args.batching_parameters_file
            else BatchingOptions()
        )
    server = DevModelServer(models, port=args.port, host=args.host, batching=batching, rest_port=args.rest_api_port)
    server.start()
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    ready = {
        "grpc": server.address,
        "rest": getattr(server, "rest_address", None),
        "batching": dataclasses.asdict(batching) if batching else None,
    }
    print(json.dumps(ready), flush=True)
    stopped.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
