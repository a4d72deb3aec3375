"""Test and load-test scaffolding around the dev PredictionService (`tfsynth.clients.dev_servicer`).

Not part of the package: what TF Serving's deployment files need in order to be exercised
without ``tensorflow_model_server``:

- `load_model_config`: a ``--model_config_file`` (text ``ModelServerConfig``: version policy
  ``latest`` / ``all`` / ``specific``, ``version_labels``);
- `BatchingOptions` / `Batcher`: server-side batching with TF Serving's ``BatchingParameters``
  semantics (``max_batch_size`` rows, ``batch_timeout_micros``, ``num_batch_threads``):
  concurrent requests for the same signature are concatenated along dimension 0, run once and
  split. As in TF Serving, every input of a request must share dimension 0, and batching joins
  requests: never enable it for ``serving_default`` traffic, whose normalisation spans the whole
  request (see export/README.md);
- the ``BatchingParameters`` and ``MonitoringConfig`` messages, which tensorflow-serving-api
  does not ship, declared with TF Serving's names and numbers;
- ``--rest_api_port``: TF Serving's REST API beside gRPC (``tests/dev_rest_gateway.py``).

Run it as the dev server with those flags too (``benchmarks/load_test.py`` does)::

    python tests/dev_serving.py --port 8500 --model_config_file models.config \
        [--enable_batching --batching_parameters_file export/batching_parameters.txt] [--rest_api_port 8501]
"""

from __future__ import annotations

import collections
import dataclasses
import os
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
from dev_rest_gateway import RestDevModelServer

from tfsynth.clients.dev_server import DevModelServer, serve_until_stopped
from tfsynth.clients.dev_servicer import LoadedVersion, ModelEntry, RequestError
from tfsynth.commands.dev_server import build_parser
from tfsynth.errors import TfsynthError, cli_entry


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


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = build_parser(model_base_path_required=False)
    parser.prog = "python tests/dev_serving.py"
    parser.add_argument("--model_config_file", help="ModelServerConfig text file (instead of --model_base_path)")
    parser.add_argument("--enable_batching", action="store_true")
    parser.add_argument("--batching_parameters_file", help="BatchingParameters text file")
    parser.add_argument("--rest_api_port", type=int, default=None, help="REST port (0: free one; default: no REST)")
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
    batcher = Batcher(batching) if batching else None
    options = {"port": args.port, "host": args.host, "run": batcher.run if batcher else None}
    if args.rest_api_port is None:
        server = DevModelServer(models, **options)
    else:
        server = RestDevModelServer(models, rest_port=args.rest_api_port, **options)
    extra = {
        "rest": getattr(server, "rest_address", None),
        "batching": dataclasses.asdict(batching) if batching else None,
    }
    try:
        serve_until_stopped(server, extra)
    finally:
        if batcher:
            batcher.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
