"""Serving: the real tensorflow-serving-api client over real gRPC against the dev PredictionService.

The dev servicer loads versions with the TF1 session loader (as TF Serving's C++ loader) and
follows TF Serving's model-spec rules; a test against a real ``tensorflow_model_server`` runs
when the binary is on PATH.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import grpc
import nibabel as nib
import numpy as np
import pytest
import tensorflow as tf
from dev_rest_gateway import RestDevModelServer
from dev_serving import (
    BatchingOptions,
    batching_parameters_proto,
    load_batching_parameters,
    load_model_config,
    monitoring_config_proto,
)
from google.protobuf import text_format
from helpers import free_ports
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from tfsynth.clients.dev_server import DevModelServer
from tfsynth.clients.dev_servicer import ModelEntry
from tfsynth.clients.grpc_client import ServingError, SynthesisClient
from tfsynth.clients.rest_client import RestSynthesisClient
from tfsynth.commands.request import main as request_main
from tfsynth.errors import TfsynthError
from tfsynth.models.generator import StarGANGenerator
from tfsynth.savedmodel import contract
from tfsynth.savedmodel.export import export_run
from tfsynth.savedmodel.io import write_saved_model
from tfsynth.synthesis.local import load_synthesizer

EXPORT = Path(__file__).resolve().parents[1] / "export"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """TF Serving layout <base>/tfsynth/{1,2}: two versions of one tiny generator (filters 8, 32x32)."""
    tf.keras.utils.set_random_seed(2)
    generator = StarGANGenerator(filters=8, residual_blocks=1)
    root = tmp_path_factory.mktemp("serving")
    write_saved_model(generator, root / "run" / "saved_model", {"image_size": 32})
    export_run(root / "run", root / "models")
    export_run(root / "run", root / "models")
    return root / "models"


@pytest.fixture(scope="module")
def local(base):
    return load_synthesizer(base / "tfsynth")


@pytest.fixture(scope="module")
def server(base):
    with RestDevModelServer([ModelEntry("tfsynth", base / "tfsynth", num_versions=2)], rest_port=0) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with SynthesisClient(server.address, timeout=30, retries=0) as c:
        yield c


def slices(n=3, h=24, w=24, seed=0):
    data = np.random.default_rng(seed).gamma(2.0, 50.0, (n, h, w)).astype(np.float32)
    data[:, :2] = 0
    return data


def skull_stripped(data):
    """``data`` [X, Y, Z] with a zero border, as a skull-stripped volume has."""
    data = data.copy()
    for axis in range(3):
        index = [slice(None)] * 3
        for end in (0, -1):
            index[axis] = end
            data[tuple(index)] = 0
    return data


def test_grpc_round_trip_equals_local_synthesis(client, local):
    x = slices()
    np.testing.assert_allclose(client.synthesize(x, "t1", "t2"), local.synthesize_raw(x, "t1", "t2"), atol=1e-6)
    x01 = np.clip(x / x.max(), 0, 1)
    targets = ["t1", "t1c", "flair"]
    np.testing.assert_allclose(
        client.synthesize(x01, "t1", targets, normalized=True),
        local.synthesize_normalized(x01, "t1", targets),
        atol=1e-6,
    )


def test_rest_round_trip_equals_local_synthesis(server, local):
    x = slices(2, 20, 28)
    with RestSynthesisClient(server.rest_address, timeout=30, retries=0) as rest:
        np.testing.assert_allclose(rest.synthesize(x, "t1", "flair"), local.synthesize_raw(x, "t1", "flair"), atol=1e-6)
        assert "serving_default" in rest.metadata()["metadata"]["signature_def"]["signatureDef"]
        with pytest.raises(ServingError, match="unknown target contrast") as info:
            rest.synthesize(x, "t1", "pd")
        assert info.value.code == "INVALID_ARGUMENT"


def test_get_model_metadata_lists_named_signatures(client):
    signatures = client.signatures()
    assert {"serving_default", "synthesize_normalized"} <= set(signatures)
    sig = signatures["serving_default"]
    assert set(sig.inputs) == {"image", "source", "target"} and set(sig.outputs) == {"synthesized"}
    assert sig.method_name == "tensorflow/serving/predict"


def test_synthesize_volume_writes_nifti_on_the_input_grid_named_as_tfsynth_synthesize(server, local, base, tmp_path):
    from tfsynth.commands.synthesize import main as synthesize_main

    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = [-20, 10, 5]
    data = skull_stripped(slices(5, 20, 22, seed=4).transpose(1, 2, 0))  # [X, Y, Z], stored RAS
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "case-t1n.nii.gz")
    with SynthesisClient(server.address) as c:
        written = c.synthesize_volume(tmp_path / "case-t1n.nii.gz", ["t2", "flair"], tmp_path / "out")
        assert [p.name for p in written] == ["case-t2w.nii.gz", "case-t2f.nii.gz"]  # BraSyn, like tfsynth synthesize
        renamed = c.synthesize_volume(
            tmp_path / "case-t1n.nii.gz", "t2", tmp_path / "tpl", naming="{case}_{contrast}_from_{source}.nii.gz"
        )
        assert [p.name for p in renamed] == ["case_t2_from_t1.nii.gz"]
    img = nib.load(written[0])
    assert img.shape == data.shape and np.allclose(img.affine, affine)
    # The server sees the volume in the LPS slicing orientation: x and y of this RAS volume flipped.
    expected = np.moveaxis(local.synthesize_raw(np.moveaxis(data[::-1, ::-1], -1, 0), "t1", "t2"), 0, -1)[::-1, ::-1]
    np.testing.assert_allclose(np.asarray(img.dataobj), expected, atol=1e-6)
    assert img.header["descrip"].tobytes().startswith(b"tfsynth: t2 synthesised from t1 by tfsynth at ")
    args = ["--model", str(base / "tfsynth"), "--source", "t1", "--target", "t2", "flair", "--quiet"]
    assert synthesize_main([*args, "--out", str(tmp_path / "local"), str(tmp_path / "case-t1n.nii.gz")]) == 0
    for path in written:
        local_file = tmp_path / "local" / path.name  # same name, same volume
        np.testing.assert_allclose(
            np.asarray(nib.load(local_file).dataobj), np.asarray(nib.load(path).dataobj), atol=1e-5
        )


def test_request_cli(server, tmp_path, capsys):
    nib.save(nib.Nifti1Image(skull_stripped(slices(4, 18, 18).transpose(1, 2, 0)), np.eye(4)), tmp_path / "in.nii")
    for targets in (["--target", "t1c", "t2"], ["--target", "t1c", "--target", "t2"]):  # both forms
        output = tmp_path / f"o{len(targets)}"
        assert (
            request_main(
                [
                    "--address",
                    server.address,
                    "--no-resample",
                    "--source",
                    "t1",
                    *targets,
                    str(tmp_path / "in.nii"),
                    str(output),
                ]
            )
            == 0
        )
        # {case}-{contrast}: a non-BraTS name is the case
        assert sorted(p.name for p in output.iterdir()) == ["in-t1c.nii.gz", "in-t2w.nii.gz"]
    padded = np.where(nib.load(tmp_path / "in.nii").get_fdata() == 0, -32768, nib.load(tmp_path / "in.nii").get_fdata())
    nib.save(nib.Nifti1Image(padded.astype(np.float32), np.eye(4)), tmp_path / "padded.nii")
    argv = [
        "--address",
        server.address,
        "--no-resample",
        "--source",
        "t1",
        "--target",
        "t2",
        str(tmp_path / "padded.nii"),
        str(tmp_path / "p"),
    ]
    assert request_main(argv) == 2
    assert "padded.nii: its background is not 0" in capsys.readouterr().err and not (tmp_path / "p").exists()
    # The source checks of tfsynth synthesize: one of --brain-mask and --background, an existing mask.
    assert request_main([*argv, "--background", "-32768", "--brain-mask", str(tmp_path / "in.nii")]) == 2
    assert "not both" in capsys.readouterr().err
    assert request_main([*argv, "--brain-mask", str(tmp_path / "no-mask.nii")]) == 2
    assert "no-mask.nii: no such file" in capsys.readouterr().err
    assert request_main([*argv, "--background", "-32768"]) == 0
    np.testing.assert_array_equal(
        nib.load(tmp_path / "p" / "padded-t2w.nii.gz").get_fdata(),
        nib.load(tmp_path / "o4" / "in-t2w.nii.gz").get_fdata(),
    )
    assert (
        request_main(
            [
                "--address",
                server.address,
                "--no-resample",
                "--source",
                "t1",
                "--target",
                "pd",
                str(tmp_path / "in.nii"),
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "unknown contrast" in capsys.readouterr().err


def raw_predict(address, image, target, name="tfsynth", version=None, signature="", image_dtype=None, source=("t1",)):
    """A PredictRequest built by hand, as a C++ or Go client would send it (no local checks)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(np.asarray(image, dtype=image_dtype or np.float32)))
    if source is not None:
        request.inputs["source"].CopyFrom(tf.make_tensor_proto(np.asarray(source, dtype=object)))
    if target is not None:
        request.inputs["target"].CopyFrom(tf.make_tensor_proto(np.asarray(target, dtype=object)))
    with grpc.insecure_channel(address) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)


def test_model_spec_rules(server, base):
    x = slices(1, 16, 16)
    assert raw_predict(server.address, x, ["t2"]).model_spec.version.value == 2  # latest
    assert raw_predict(server.address, x, ["t2"], version=1).model_spec.version.value == 1
    for kwargs, code, text in [
        ({"name": "other"}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(other)"),
        ({"version": 9}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(tfsynth, 9)"),
        # TF Serving answers FAILED_PRECONDITION (not NOT_FOUND) for an unknown signature key.
        ({"signature": "nope"}, grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.'),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            raw_predict(server.address, x, ["t2"], **kwargs)
        assert info.value.code() == code and text in info.value.details()


BAD = {
    "unknown contrast": (dict(image=slices(2, 16, 16), target=["t2", "pd"]), "unknown target contrast name(s)"),
    "unknown source": (dict(image=slices(2, 16, 16), target=["t2"], source=["pd"]), "unknown source contrast name(s)"),
    "missing source": (dict(image=slices(1, 16, 16), target=["t2"], source=None), "Missing but required: {source}"),
    "wrong rank": (dict(image=np.ones((16, 16)), target=["t2"]), "image must be a rank-3 tensor"),
    "NaN": (dict(image=np.full((1, 16, 16), np.nan), target=["t2"]), "NaN or infinite"),
    "H < 16": (dict(image=np.ones((1, 12, 16)), target=["t2"]), "at least 16"),
    "target count": (dict(image=slices(3, 16, 16), target=["t1", "t2"]), "target must hold 1 or N"),
    "missing input": (dict(image=slices(1, 16, 16), target=None), "Missing but required: {target}"),
    "wrong dtype": (dict(image=slices(1, 16, 16), target=["t2"], image_dtype=np.float64), "must be DT_FLOAT"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_request_is_invalid_argument_and_server_keeps_answering(server, local, case):
    kwargs, text = BAD[case]
    with pytest.raises(grpc.RpcError) as info:
        raw_predict(server.address, **kwargs)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert text in info.value.details()
    good = slices(1, 16, 16)
    out = tf.make_ndarray(raw_predict(server.address, good, ["t2"]).outputs["synthesized"])
    np.testing.assert_allclose(out, local.synthesize_raw(good, "t1", "t2"), atol=1e-6)


def test_client_raises_serving_error_with_the_server_message(client):
    with pytest.raises(
        ServingError, match=r"server rejected the request: .*unknown target contrast name\(s\):\] \[pd\]"
    ) as info:
        client.synthesize(slices(1, 16, 16), "t1", "pd")
    assert info.value.code == "INVALID_ARGUMENT"


def run_concurrently(address, local, normalized, threads=4, requests=5):
    errors, checked = [], []

    def worker(i):
        with SynthesisClient(address, timeout=60, retries=0) as c:
            for j in range(requests):
                x = slices(1, 16, 16, seed=10 * i + j)
                if normalized:
                    x = x / x.max()
                target = ["t1", "t1c", "t2", "flair"][(i + j) % 4]
                try:
                    out = c.synthesize(x, "t1", target, normalized=normalized)
                    want = (
                        local.synthesize_normalized(x, "t1", target)
                        if normalized
                        else local.synthesize_raw(x, "t1", target)
                    )
                    checked.append(np.allclose(out, want, atol=1e-5))
                except Exception as error:  # any failure counts
                    errors.append(repr(error))

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return errors, checked


def test_concurrent_clients_get_correct_answers(server, local):
    errors, checked = run_concurrently(server.address, local, normalized=False)
    assert errors == [] and len(checked) == 20 and all(checked)


@contextlib.contextmanager
def server_started_later(base, server_class=DevModelServer, **ports):
    """A ``server_class`` on ``ports`` that starts 0.6 s after the block begins, stopped when it ends."""
    holder = {}

    def start_later():
        time.sleep(0.6)
        holder["server"] = server_class([ModelEntry("tfsynth", base / "tfsynth")], **ports).start()

    starter = threading.Thread(target=start_later)
    starter.start()
    try:
        yield
    finally:
        starter.join()
        holder["server"].stop()


def test_client_retries_unavailable_with_backoff_until_the_server_is_up(base):
    (port,) = free_ports(1)
    with server_started_later(base, port=port):
        with SynthesisClient(f"127.0.0.1:{port}", timeout=30, retries=6, backoff=0.1) as c:
            assert c.synthesize(slices(1, 16, 16), "t1", "t2").shape == (1, 16, 16)


def test_client_gives_up_on_unavailable_after_retries():
    (port,) = free_ports(1)
    start = time.monotonic()
    with SynthesisClient(f"127.0.0.1:{port}", timeout=5, retries=2, backoff=0.05) as c:
        with pytest.raises(ServingError, match="unavailable after 3 attempt") as info:
            c.synthesize(slices(1, 16, 16), "t1", "t2")
    assert info.value.code == "UNAVAILABLE" and time.monotonic() - start < 10


def test_rest_client_retries_refused_connections_until_the_server_is_up(base):
    grpc_port, rest_port = free_ports(2)
    with server_started_later(base, RestDevModelServer, port=grpc_port, rest_port=rest_port):
        with RestSynthesisClient(f"127.0.0.1:{rest_port}", timeout=30, retries=6, backoff=0.2) as rest:
            assert rest.synthesize(slices(1, 16, 16), "t1", "t2").shape == (1, 16, 16)


def test_rest_client_gives_up_after_its_retries():
    (port,) = free_ports(1)
    with RestSynthesisClient(f"127.0.0.1:{port}", timeout=5, retries=2, backoff=0.05) as rest:
        with pytest.raises(ServingError, match="unavailable after 3 attempt") as info:
            rest.synthesize(slices(1, 16, 16), "t1", "t2")
    assert info.value.code == "UNAVAILABLE"


def test_models_config_parses_with_tf_serving_proto_and_serves(base, tmp_path):
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((EXPORT / "models.config").read_text(), config)
    (model,) = config.model_config_list.config
    assert model.name == "tfsynth" and model.base_path == "/models/tfsynth" and model.model_platform == "tensorflow"
    assert model.model_version_policy.latest.num_versions == 2
    # The same file with the base path pointed at the test export serves through the dev server.
    model.base_path = str(base / "tfsynth")
    model.model_version_policy.latest.num_versions = 1
    (tmp_path / "models.config").write_text(text_format.MessageToString(config))
    with DevModelServer(load_model_config(tmp_path / "models.config")) as dev:
        assert raw_predict(dev.address, slices(1, 16, 16), ["t2"]).model_spec.version.value == 2
        with pytest.raises(grpc.RpcError) as info:  # latest{1}: version 1 is unloaded
            raw_predict(dev.address, slices(1, 16, 16), ["t2"], version=1)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


# TF Serving's own field numbers, types and labels (tensorflow_serving/servables/tensorflow/
# session_bundle_config.proto and tensorflow_serving/config/monitoring_config.proto), which
# tensorflow-serving-api does not ship as Python modules.
TF_SERVING_FIELDS = {
    "BatchingParameters": {
        "max_batch_size": (1, "google.protobuf.Int64Value", False),
        "batch_timeout_micros": (2, "google.protobuf.Int64Value", False),
        "max_enqueued_batches": (3, "google.protobuf.Int64Value", False),
        "num_batch_threads": (4, "google.protobuf.Int64Value", False),
        "thread_pool_name": (5, "google.protobuf.StringValue", False),
        "allowed_batch_sizes": (6, "int64", True),
        "pad_variable_length_inputs": (7, "bool", False),
    },
    "MonitoringConfig": {"prometheus_config": (1, "tensorflow.serving.PrometheusConfig", False)},
    "PrometheusConfig": {"enable": (1, "bool", False), "path": (2, "string", False)},
}


def _fields(message_class):
    """``{name: (number, type, repeated)}`` of a message class, in `TF_SERVING_FIELDS`' notation."""
    scalar_names = {8: "bool", 3: "int64", 9: "string"}
    fields = {}
    for field in message_class.DESCRIPTOR.fields:
        kind = field.message_type.full_name if field.message_type else scalar_names[field.type]
        repeated = field.is_repeated
        fields[field.name] = (field.number, kind, repeated)
    return fields


def test_monitoring_and_batching_configs_match_tf_serving_and_parse():
    """The declared messages are TF Serving's (a wrong field number would encode another field),
    and the shipped files parse with them and say what the README promises."""
    monitoring_class = monitoring_config_proto()
    batching_class = batching_parameters_proto()
    assert _fields(batching_class) == TF_SERVING_FIELDS["BatchingParameters"]
    assert _fields(monitoring_class) == TF_SERVING_FIELDS["MonitoringConfig"]
    prometheus = monitoring_class.DESCRIPTOR.fields_by_name["prometheus_config"].message_type
    assert _fields(SimpleNamespace(DESCRIPTOR=prometheus)) == TF_SERVING_FIELDS["PrometheusConfig"]

    monitoring = text_format.Parse((EXPORT / "monitoring.config").read_text(), monitoring_class())
    assert monitoring.prometheus_config.enable and monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"
    text = (EXPORT / "batching_parameters.txt").read_text()
    parsed = text_format.Parse(text, batching_class())
    assert parsed.max_batch_size.value == 8 and parsed.batch_timeout_micros.value == 5000
    assert parsed.num_batch_threads.value == 2 and parsed.max_enqueued_batches.value == 64
    assert load_batching_parameters(EXPORT / "batching_parameters.txt") == BatchingOptions(8, 5000, 2, 64)


def test_readme_documents_the_docker_command_with_these_files():
    readme = (EXPORT / "README.md").read_text()
    assert "docker run" in readme and "tensorflow/serving" in readme
    for flag in ("--model_config_file=", "--monitoring_config_file=", "--rest_api_port="):
        assert flag in readme


@pytest.mark.skipif(shutil.which("tensorflow_model_server") is None, reason="tensorflow_model_server is not on PATH")
def test_real_tensorflow_model_server(base, local):
    (port,) = free_ports(1)
    process = subprocess.Popen(
        ["tensorflow_model_server", f"--port={port}", "--model_name=tfsynth", f"--model_base_path={base / 'tfsynth'}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with SynthesisClient(f"127.0.0.1:{port}", timeout=30, retries=8, backoff=0.5) as c:
            x = slices()
            np.testing.assert_allclose(c.synthesize(x, "t1", "t2"), local.synthesize_raw(x, "t1", "t2"), atol=1e-5)
            with pytest.raises(ServingError) as info:
                c.synthesize(x, "t1", "pd")
            assert info.value.code == "INVALID_ARGUMENT" and "unknown target contrast" in str(info.value)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_dev_serving_script_serves_a_model_config_with_batching(base, local, tmp_path):
    """``python tests/dev_serving.py`` (as the load test starts it): config file, batching, one answer."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(name="tfsynth", base_path=str(base / "tfsynth"))
    model.model_platform = "tensorflow"
    (tmp_path / "models.config").write_text(text_format.MessageToString(config))
    command = [sys.executable, str(Path(__file__).with_name("dev_serving.py")), "--port", "0"]
    command += ["--model_config_file", str(tmp_path / "models.config"), "--enable_batching"]
    command += ["--batching_parameters_file", str(EXPORT / "batching_parameters.txt")]
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        ready = json.loads(process.stdout.readline())
        assert ready["batching"]["max_batch_size"] == 8
        x = slices(1, 16, 16)
        x = x / x.max()
        with SynthesisClient(ready["grpc"], timeout=60, retries=0) as c:
            got = c.synthesize(x, "t1", "t2", normalized=True)
        np.testing.assert_allclose(got, local.synthesize_normalized(x, "t1", "t2"), atol=1e-5)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_client_resamples_to_the_served_model_voxel_size_like_synthesize(tmp_path):
    from tfsynth.quality.full_reference import psnr

    """Given the model's voxel size, the client sends the volume on the model's grid and writes back on
    the input's: the same files as ``tfsynth synthesize``, which reads the size from metadata.json."""
    from tfsynth.commands.synthesize import main as synthesize_main

    tf.keras.utils.set_random_seed(3)
    write_saved_model(
        StarGANGenerator(filters=8, residual_blocks=1),
        tmp_path / "run" / "saved_model",
        {"image_size": 32, "voxel_size_mm": [4.0, 4.0, 3.0]},
    )
    export_run(tmp_path / "run", tmp_path / "models")
    data = skull_stripped(slices(6, 40, 44, seed=5).transpose(1, 2, 0))  # 2 x 2 x 3 mm, half the model's in-plane size
    nib.save(nib.Nifti1Image(data, np.diag([-2.0, -2.0, 3.0, 1.0])), tmp_path / "case-t1n.nii.gz")
    args = ["--model", str(tmp_path / "models" / "tfsynth"), "--source", "t1", "--target", "t2", "--quiet"]
    assert synthesize_main([*args, "--out", str(tmp_path / "local"), str(tmp_path / "case-t1n.nii.gz")]) == 0
    with RestDevModelServer([ModelEntry("tfsynth", tmp_path / "models" / "tfsynth")], rest_port=0) as running:
        with SynthesisClient(running.address) as c:
            resampled = c.synthesize_volume(
                tmp_path / "case-t1n.nii.gz", "t2", tmp_path / "r", voxel_size_mm=[4.0, 4.0, 3.0]
            )
            native = c.synthesize_volume(tmp_path / "case-t1n.nii.gz", "t2", tmp_path / "n")
            with pytest.raises(TfsynthError, match="one or three positive numbers"):
                c.synthesize_volume(tmp_path / "case-t1n.nii.gz", "t2", tmp_path / "x", voxel_size_mm=[4.0, 4.0])
            info = c.model_info()
        with RestSynthesisClient(running.rest_address) as rest:
            assert rest.model_info() == info
        # Unasked, `tfsynth request` takes the voxel size from the model itself, over gRPC and REST.
        for flags, folder in (([], "asked"), (["--rest"], "asked_rest")):
            address = running.rest_address if flags else running.address
            argv = ["--address", address, *flags, "--source", "t1", "--target", "t2"]
            assert request_main([*argv, str(tmp_path / "case-t1n.nii.gz"), str(tmp_path / folder)]) == 0
            asked = np.asarray(nib.load(tmp_path / folder / "case-t2w.nii.gz").dataobj)
            np.testing.assert_allclose(asked, np.asarray(nib.load(resampled[0]).dataobj), atol=1e-5)
    assert info["voxel_size_mm"] == [4.0, 4.0, 3.0] and info["image_size"] == 32
    assert info["contrasts"] == ["t1", "t1c", "t2", "flair"] and info["slice_orientation"] == "LPS"
    assert info["signatures"] == list(contract.SIGNATURES)
    written = json.loads((tmp_path / "run" / "saved_model" / "metadata.json").read_text())
    assert (
        info["metadata"]["voxel_size_mm"] == written["voxel_size_mm"] and info["metadata"]["model"] == written["model"]
    )
    got, without = (np.asarray(nib.load(paths[0]).dataobj) for paths in (resampled, native))
    local = np.asarray(nib.load(tmp_path / "local" / "case-t2w.nii.gz").dataobj)
    assert got.shape == without.shape == data.shape
    # Normalised on the input's grid, then resampled, as synthesize does: the same file. Without
    # resampling the random network sees features at twice their size: another answer.
    np.testing.assert_allclose(got, local, atol=1e-5)
    assert psnr(local, without) < 40.0
    assert not (tmp_path / "x").exists()


def test_request_on_a_model_without_model_info_says_which_flag_replaces_it(tmp_path, monkeypatch, capsys):
    """Exports older than the model_info signature keep serving; the client names the flags it then needs."""
    from tfsynth.savedmodel import graph

    monkeypatch.setattr(graph, "exported", lambda completion: contract.exported(completion)[:2])
    write_saved_model(
        StarGANGenerator(filters=8, residual_blocks=1), tmp_path / "run" / "saved_model", {"image_size": 32}
    )
    export_run(tmp_path / "run", tmp_path / "models")
    nib.save(nib.Nifti1Image(skull_stripped(slices(4, 18, 18).transpose(1, 2, 0)), np.eye(4)), tmp_path / "in.nii")
    with DevModelServer([ModelEntry("tfsynth", tmp_path / "models" / "tfsynth")]) as running:
        argv = ["--address", running.address, "--source", "t1", "--target", "t2", str(tmp_path / "in.nii")]
        assert request_main([*argv, str(tmp_path / "out")]) == 2
        error = capsys.readouterr().err
        assert "does not state its voxel size" in error and "--voxel-size" in error and "--no-resample" in error
        assert not (tmp_path / "out").exists()
        assert request_main([*argv, str(tmp_path / "flagged"), "--no-resample"]) == 0
