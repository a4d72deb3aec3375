"""TF Serving's REST API over the dev `DevPredictionServicer`: ``:predict`` and ``/metadata``.

Not part of the package: the packaged dev server (`tfsynth.clients.dev_server`) speaks gRPC
only, and this gateway lets the tests exercise the package's REST client
(`tfsynth.clients.rest_client`) without ``tensorflow_model_server --rest_api_port``.
`RestDevModelServer` is the dev server with the gateway beside it; ``tests/dev_serving.py``
takes ``--rest_api_port`` for it.

``POST /v1/models/NAME[/versions/V | /labels/L]:predict`` with the columnar
``{"signature_name": ..., "inputs": ...}`` or the row ``{"instances": [...]}`` format (TF Serving's
RESTful API guide, https://www.tensorflow.org/tfx/serving/api_rest), and
``GET /v1/models/NAME[/versions/V]/metadata``.

As in TF Serving, every request gets an HTTP status and a JSON body: a malformed request (not
JSON, not an object, an instance without one of the signature's inputs, a ragged or mistyped
tensor, bad base64) is 400 ``{"error": message}``; unknown models 404; a failed in-graph check
400; anything unexpected 500 -- the connection is never dropped without an answer. String
tensors take the encodings TF Serving accepts: JSON strings, and ``{"b64": "<base64>"}``
objects for binary values, anywhere in the nested lists.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading

import grpc
import numpy as np

from tfsynth.clients.dev_server import DevModelServer
from tfsynth.clients.dev_servicer import DevPredictionServicer, RequestError

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAVAILABLE: 503,
}
_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?(?::(predict)|/(metadata))$")
_BAD = grpc.StatusCode.INVALID_ARGUMENT


class RestDevModelServer(DevModelServer):
    """`DevModelServer` plus TF Serving's REST API on ``rest_port`` (0: a free one) of the same host.

    ``rest_address`` is ``"<host>:<rest port>"``; the other arguments are `DevModelServer`'s.
    """

    def __init__(self, models, rest_port: int = 0, **kwargs):
        super().__init__(models, **kwargs)
        self._rest = make_rest_server(self.servicer, self.host, rest_port)
        self.rest_address = f"{self.host}:{self._rest.server_address[1]}"
        self._rest_thread = None

    def start(self) -> RestDevModelServer:
        super().start()
        self._rest_thread = threading.Thread(target=self._rest.serve_forever, name="rest", daemon=True)
        self._rest_thread.start()
        return self

    def stop(self, grace: float | None = 1.0):
        if self._rest_thread is not None:  # shutdown() waits for a serve_forever that never began
            self._rest.shutdown()
        self._rest.server_close()
        super().stop(grace)


def make_rest_server(servicer: DevPredictionServicer, host: str, port: int):
    """A threading HTTP server answering TF Serving's REST calls through ``servicer``."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test and benchmark output clean
            pass

        def _reply(self, status: int, body: dict):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str):
            try:
                status, body = 200, answer(servicer, method, self.path, self._body(method))
            except RequestError as error:
                status, body = _HTTP_STATUS.get(error.code, 500), {"error": error.message}
            except Exception as error:  # a bug must still answer, not drop the connection
                status, body = 500, {"error": f"Internal: {type(error).__name__}: {error}"}
            self._reply(status, body)

        def _body(self, method: str) -> bytes:
            if method != "POST":
                return b""
            try:
                length = int(self.headers.get("Content-Length", 0))
            except ValueError:
                length = -1
            if length < 0:
                self.close_connection = True
                raise RequestError(_BAD, f"Invalid Content-Length: {self.headers.get('Content-Length')!r}")
            return self.rfile.read(length)

        def do_POST(self):  # noqa: N802 - http.server API
            self._handle("POST")

        def do_GET(self):  # noqa: N802 - http.server API
            self._handle("GET")

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def answer(servicer: DevPredictionServicer, method: str, path: str, body: bytes) -> dict:
    """The JSON answer to one REST call; raises `RequestError` for every bad request."""
    match = _PATH.match(path)
    if not match or (method == "POST") != bool(match.group(4)):
        raise RequestError(_BAD, f"Malformed request: {method} {path}")
    name, version, label = match.group(1), match.group(2), match.group(3)
    if match.group(4):
        return rest_predict(servicer, name, version, label, body)
    return rest_metadata(servicer, name, version, label)


def _model_spec(spec, name: str, version: str | None, label: str | None) -> None:
    spec.name = name
    if version is not None:
        spec.version.value = int(version)
    if label is not None:
        spec.version_label = label


def _strings(value, alias: str):
    """JSON strings and ``{"b64": ...}`` objects (nested in lists) -> bytes, as TF Serving decodes them."""
    if isinstance(value, list):
        return [_strings(item, alias) for item in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(_BAD, f'input {alias!r}: invalid base64 in {{"b64": ...}}') from None
    raise RequestError(
        _BAD, f'input {alias!r}: a string tensor takes JSON strings or {{"b64": "..."}} objects, got {value!r:.60}'
    )


def _tensor(value, alias: str, dtype) -> np.ndarray:
    """One input's JSON value as an array of the signature's dtype; `RequestError` if it cannot be one."""
    import tensorflow as tf

    try:
        if dtype == tf.string:
            array = np.asarray(_strings(value, alias), dtype=object)
            if any(isinstance(item, list) for item in array.flat):
                raise ValueError("lists of different lengths")
            return array
        if any(isinstance(item, (str, dict)) or item is None for item in _leaves(value)):
            raise ValueError(f"{dtype.name} tensor holds a non-number")
        return np.asarray(value, dtype=dtype.as_numpy_dtype)
    except (TypeError, ValueError, OverflowError) as error:
        raise RequestError(_BAD, f"input {alias!r}: cannot be a {dtype.name} tensor ({error})") from None


def _leaves(value):
    if isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _columns(payload: dict, signature) -> tuple[dict, bool]:
    """``{alias: JSON value}`` from the columnar or row format, and whether it was the row format."""
    aliases = list(signature.inputs)
    if "inputs" in payload and "instances" in payload:
        raise RequestError(_BAD, 'Request body may have only one of "inputs" or "instances"')
    if "inputs" in payload:
        inputs = payload["inputs"]
        if isinstance(inputs, dict) and not (len(aliases) == 1 and set(inputs) == {"b64"}):
            return inputs, False  # named inputs; predict() names missing and extra ones
        if len(aliases) != 1:
            raise RequestError(_BAD, f'"inputs" must be a JSON object naming the inputs {aliases}')
        return {aliases[0]: inputs}, False
    if "instances" not in payload:
        raise RequestError(_BAD, 'Missing "inputs" or "instances" key')
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise RequestError(_BAD, '"instances" must be a non-empty JSON list')
    if len(aliases) == 1 and not all(isinstance(i, dict) and aliases[0] in i for i in instances):
        return {aliases[0]: instances}, True
    columns: dict[str, list] = {alias: [] for alias in aliases}
    for index, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise RequestError(
                _BAD,
                f"Failed to process element: {index} of 'instances' list. JSON object expected with keys {aliases}",
            )
        for alias in aliases:
            if alias not in instance:
                raise RequestError(
                    _BAD,
                    f"Failed to process element: {index} key: {alias} of 'instances' list. "
                    f"Error: Invalid argument: JSON object: does not have named input: {alias}",
                )
            columns[alias].append(instance[alias])
        extra = set(instance) - set(aliases)
        if extra:
            raise RequestError(
                _BAD, f"Failed to process element: {index} of 'instances' list: unknown input(s) {sorted(extra)}"
            )
    return columns, True


def rest_predict(servicer: DevPredictionServicer, name, version, label, body: bytes) -> dict:
    """``:predict``: the JSON request -> PredictRequest -> the JSON response (TF Serving's formats)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RequestError(_BAD, f"JSON Parse error: {error}") from None
    if not isinstance(payload, dict):
        raise RequestError(_BAD, f"JSON Value: the request body must be a JSON object, got {type(payload).__name__}")
    signature_name = payload.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise RequestError(_BAD, '"signature_name" must be a string')
    request = predict_pb2.PredictRequest()
    _model_spec(request.model_spec, name, version, label)
    request.model_spec.signature_name = signature_name
    signature = servicer.resolve(request.model_spec).signatures.get(signature_name or "serving_default")
    if signature is None:
        raise RequestError(_BAD, f'Serving signature name: "{signature_name}" not found in signature def')
    inputs, row_format = _columns(payload, signature)
    for alias, value in inputs.items():
        if alias not in signature.inputs:
            continue  # predict() names the extra alias
        dtype = tf.dtypes.as_dtype(signature.inputs[alias].dtype)
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(_tensor(value, alias, dtype), dtype=dtype))
    response = servicer.predict(request)
    outputs = {}
    for alias, proto in response.outputs.items():
        value = tf.make_ndarray(proto)
        if value.dtype == object:
            encode = (lambda b: {"b64": base64.b64encode(b).decode()}) if alias.endswith("_bytes") else bytes.decode
            value = np.vectorize(encode, otypes=[object])(value) if value.size else value
        outputs[alias] = value.tolist()
    if row_format:
        rows = len(next(iter(outputs.values())))
        return {"predictions": [{alias: out[i] for alias, out in outputs.items()} for i in range(rows)]}
    return {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}


def rest_metadata(servicer: DevPredictionServicer, name, version, label) -> dict:
    """``/metadata``: GetModelMetadata's ``signature_def`` as JSON."""
    from google.protobuf import json_format
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    _model_spec(request.model_spec, name, version, label)
    return json.loads(json_format.MessageToJson(servicer.model_metadata(request)))
