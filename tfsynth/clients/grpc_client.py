"""gRPC client for tfsynth served by TensorFlow Serving (``tensorflow-serving-api``).

``SynthesisClient(address).synthesize(slices, source, targets)`` sends raw slices to the
``serving_default`` signature (normalisation happens in the server's graph over the whole
request); ``synthesize_volume(nifti, targets, out_dir)`` sends a whole NIfTI volume, one
request per target, and writes the results on the input's grid under the names
``tfsynth synthesize`` gives (`tfsynth.synthesis.volumes.output_name`, BraSyn by default).
Completion: ``complete(images, target)`` sends several named contrasts to the ``complete``
signature; ``complete_case(case_dir, out_dir)`` completes one BraSyn-layout case (its one missing
contrast from the others) as ``tfsynth synthesize --complete`` does, in one request.

Failures: UNAVAILABLE (server starting, restarting, overloaded) is retried with
exponential backoff; every other error is final and raised as `ServingError`, a
`TfsynthError` carrying the gRPC status code and the server's message (INVALID_ARGUMENT
names the problem with the request: unknown contrast, wrong rank, NaN, ...).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfsynth.clients.volumes import (
    as_channels,
    as_slices,
    target_list,
    write_completion_output,
    write_volume_outputs,
)
from tfsynth.errors import TfsynthError, tf_error_message
from tfsynth.savedmodel.contract import (
    IMAGE,
    INFO_SIGNATURE,
    OUTPUT,
    SOURCE,
    SOURCES,
    TARGET,
    signature,
    signature_for,
)

MAX_MESSAGE_BYTES = 2**31 - 1


class ServingError(TfsynthError):
    """A request the server answered with an error (``code``: the gRPC status code name)."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


MAX_BACKOFF_S = 30.0
# gRPC caps a retry policy's maxAttempts at 5 (gRFC A6, "Retry Policy").
GRPC_MAX_ATTEMPTS = 5


def grpc_retry_options(retries: int, backoff: float) -> list[tuple[str, object]]:
    """Channel options that make gRPC itself retry UNAVAILABLE calls (a ``grpc.service_config``
    retry policy, gRFC A6), with exponential backoff from ``backoff`` seconds (capped at 30 s).

    gRPC draws each wait at random up to the current backoff and allows at most 5 attempts. The
    channel's reconnect backoff starts at ``backoff`` too, so a server that comes up is found by
    the next attempt.
    """
    if retries < 1:
        return [("grpc.enable_retries", 0)]
    policy = {
        "maxAttempts": min(retries + 1, GRPC_MAX_ATTEMPTS),
        "initialBackoff": f"{backoff:g}s",
        "maxBackoff": f"{MAX_BACKOFF_S:g}s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    config = {"methodConfig": [{"name": [{"service": "tensorflow.serving.PredictionService"}], "retryPolicy": policy}]}
    reconnect_ms = max(1, int(backoff * 1000))
    return [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(config)),
        ("grpc.initial_reconnect_backoff_ms", reconnect_ms),
        ("grpc.min_reconnect_backoff_ms", reconnect_ms),
        ("grpc.max_reconnect_backoff_ms", int(MAX_BACKOFF_S * 1000)),
    ]


class BaseClient:
    """What the gRPC and REST clients share: their settings, `synthesize_volume` over their
    ``synthesize``, and ``with Client(...) as client:`` closing the connection on exit.

    Subclasses turn the address into their endpoint (`_endpoint`) and open the connection
    (`_connect`); the arguments are documented on each client.
    """

    def __init__(
        self,
        address: str,
        model_name: str = "tfsynth",
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 0.5,
        version: int | None = None,
        version_label: str | None = None,
    ):
        self.address = self._endpoint(address)
        self.model_name = model_name
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.version = version
        self.version_label = version_label
        self.description = f"{model_name}" + (f" v{version}" if version is not None else "") + f" at {self.address}"
        self._voxel_size: tuple | None = None  # (answer,) once asked
        self._connect()

    def _endpoint(self, address: str) -> str:
        raise NotImplementedError

    def _connect(self) -> None:
        raise NotImplementedError

    def synthesize(
        self,
        slices: np.ndarray,
        sources: str | Sequence[str],
        targets: str | Sequence[str],
        normalized: bool = False,
    ) -> np.ndarray:
        """Synthesises target contrasts for a stack of slices.

        Args:
            slices: float [N, H, W]; raw intensities (background 0), normalised over the whole
                request by the server; or already in [0, 1] with ``normalized=True``.
            sources: the contrast of the slices: one name for every slice, or N names.
            targets: one contrast name for every slice, or N names.
            normalized: use the ``synthesize_normalized`` signature.

        Returns:
            float32 [N, H, W] in [0, 1].
        """
        signature = signature_for(subset=False, raw=not normalized)
        inputs = {IMAGE: as_slices(slices), SOURCE: target_list(sources), TARGET: target_list(targets)}
        return self._predict(signature, inputs)

    def complete(self, images, target: str | Sequence[str], normalized: bool = False) -> np.ndarray:
        """Synthesises a missing contrast from several named ones (the ``complete`` signature).

        Args:
            images: contrast name -> float [N, H, W], the available inputs (at least one, all one
                shape); raw intensities (background 0), each normalised over the whole request by
                the server; or already in [0, 1] with ``normalized=True``.
            target: the contrast to synthesise (not among the inputs): one name, or N names.
            normalized: use the ``complete_normalized`` signature.

        Returns:
            float32 [N, H, W] in [0, 1].

        Raises:
            TfsynthError: inputs of different shapes (checked locally), or `ServingError`
                (INVALID_ARGUMENT: unknown or repeated names, the target among the inputs, ...).
        """
        image, names = as_channels(images)
        signature = signature_for(subset=True, raw=not normalized)
        return self._predict(signature, {IMAGE: image, SOURCES: names, TARGET: target_list(target)})

    def complete_case(
        self,
        case_dir: str | os.PathLike,
        out_dir: str | os.PathLike,
        voxel_size_mm: float | Sequence[float] | None = None,
        overwrite: bool = False,
    ) -> Path | None:
        """Completes one BraSyn-layout case folder into ``out_dir``, as ``tfsynth synthesize --complete``
        does; see `write_completion_output`.

        Returns:
            The written file, named as the missing file would have been; None when it existed and
            was kept (without ``overwrite``).
        """
        return write_completion_output(self, case_dir, out_dir, voxel_size_mm, overwrite)

    def _predict(self, signature: str, inputs: dict) -> np.ndarray:
        """One Predict call: ``image`` float32 array and lists of contrast names -> float32 [N, H, W]."""
        return self._predict_outputs(signature, inputs, [OUTPUT])[OUTPUT].astype(np.float32, copy=False)

    def _predict_outputs(self, signature: str, inputs: dict, outputs: list[str]) -> dict[str, np.ndarray]:
        """One Predict call returning the named ``outputs`` as arrays (strings as ``str``)."""
        raise NotImplementedError

    def served_voxel_size(self) -> list[float] | None:
        """The voxel size [x, y, z] (mm) the served model was trained at, asked once; None if it does not know.

        Raises:
            TfsynthError: the model predates the ``model_info`` signature (the message says which
                flags replace it), or `ServingError`.
        """
        if self._voxel_size is None:
            try:
                self._voxel_size = (self.model_info()["voxel_size_mm"],)
            except ServingError as error:
                if INFO_SIGNATURE not in str(error) or "not found" not in str(error):
                    raise
                raise TfsynthError(
                    f"{self.description}: the served model does not state its voxel size (it was exported "
                    "before the model_info signature); give it as --voxel-size MM (its metadata.json "
                    "voxel_size_mm) or send the volume as it is with --no-resample"
                ) from None
        return self._voxel_size[0]

    def model_info(self) -> dict:
        """What the served model states about itself (the ``model_info`` signature).

        Returns:
            ``{"voxel_size_mm": [x, y, z] or None, "image_size": int or None, "slice_orientation": str,
            "contrasts": [...], "signatures": [...], "metadata": dict}``.

        Raises:
            ServingError: the server is unreachable, or the model has no ``model_info`` signature
                (exported by tfsynth 0.1; FAILED_PRECONDITION).
        """
        declared = signature(INFO_SIGNATURE)
        values = self._predict_outputs(INFO_SIGNATURE, {}, list(declared.outputs))
        voxel = [float(v) for v in np.ravel(values["voxel_size_mm"])]
        size = int(np.ravel(values["image_size"])[0])
        return {
            "voxel_size_mm": voxel if all(v > 0 for v in voxel) else None,
            "image_size": size or None,
            "slice_orientation": _text(values["slice_orientation"])[0],
            "contrasts": _text(values["contrasts"]),
            "signatures": _text(values["signatures"]),
            "metadata": json.loads(_text(values["metadata"])[0]),
        }

    def close(self) -> None:
        raise NotImplementedError

    def synthesize_volume(
        self,
        nifti_path: str | os.PathLike,
        targets: str | Sequence[str],
        out_dir: str | os.PathLike,
        naming: str = "brats2023",
        source: str | None = None,
        brain_mask: str | os.PathLike | None = None,
        background: float | None = None,
        voxel_size_mm: float | Sequence[float] | None = None,
        overwrite: bool = False,
    ) -> list[Path]:
        """Synthesises whole volumes, written on the input's grid and named as ``tfsynth synthesize`` names them.

        The volume is normalised on its own grid as ``tfsynth synthesize`` normalises it, and its
        axial slices (in the slicing orientation) go in one ``synthesize_normalized`` request per
        target, so the files equal ``tfsynth synthesize``'s. Outputs are in [0, 1]. See
        `write_volume_outputs`.

        Args:
            nifti_path: source volume ``.nii`` / ``.nii.gz``.
            targets: contrast name(s).
            out_dir: created if needed.
            naming: ``brats2023`` (``{case}-t2w.nii.gz``, BraSyn), ``brats2020``, ``canonical`` or a
                template; see `tfsynth.synthesis.volumes.output_name`.
            source: the input's contrast (default: from a BraTS file name).
            brain_mask: a NIfTI brain mask on the input's grid, for inputs whose background is not 0.
            background: or the background value of such inputs (e.g. -32768).
            voxel_size_mm: the served model's voxel size (``metadata.json``); the volume is
                resampled to it and back. None: sent at its own voxel size.
            overwrite: replace existing files; else only the missing targets are requested and
                written (a note on stderr names what is kept).

        Returns:
            The written paths, in the order of ``targets`` (empty when all existed).

        Raises:
            TfsynthError: an invalid input volume (naming the file), or `ServingError`.
        """
        return write_volume_outputs(
            self, nifti_path, targets, out_dir, naming, source, brain_mask, background, voxel_size_mm, overwrite
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SynthesisClient(BaseClient):
    """Talks to TF Serving's PredictionService (or tfsynth's dev servicer) over gRPC.

    Args:
        address: ``host:port`` of the gRPC endpoint (TF Serving's ``--port``, 8500 by default).
        model_name: the served model's name.
        timeout: seconds per call, retries included (a whole 240x240x155 volume can take a minute on a CPU).
        retries: extra attempts after UNAVAILABLE (gRPC's retry policy; at most 4).
        backoff: first retry delay in seconds; doubles each retry (capped at 30 s). See
            `grpc_retry_options`.
        version, version_label: pin a model version (default: the server's latest).
    """

    def _endpoint(self, address: str) -> str:
        if ":" not in address:
            raise TfsynthError(f"address must be HOST:PORT, got {address!r}")
        return address

    def _connect(self) -> None:
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            *grpc_retry_options(self.retries, self.backoff),
        ]
        self._channel = grpc.insecure_channel(self.address, options=options)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def _predict_outputs(self, signature: str, inputs: dict, outputs: list[str]) -> dict[str, np.ndarray]:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._fill_spec(request.model_spec)
        request.model_spec.signature_name = signature
        for name, value in inputs.items():
            value = value if isinstance(value, np.ndarray) else np.array(value, dtype=object)  # names -> DT_STRING
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        request.output_filter.extend(outputs)
        response = self._call(self._stub.Predict, request)
        return {name: tf.make_ndarray(response.outputs[name]) for name in outputs}

    def signatures(self) -> dict:
        """The served model's SignatureDefs (GetModelMetadata), keyed by signature name."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._fill_spec(request.model_spec)
        response = self._call(self._stub.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return dict(signature_map.signature_def)

    def _fill_spec(self, spec) -> None:
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = int(self.version)
        elif self.version_label:
            spec.version_label = self.version_label

    def _call(self, method, request):
        import grpc

        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            attempts = min(self.retries + 1, GRPC_MAX_ATTEMPTS) if self.retries > 0 else 1
            raise _serving_error(error, self.address, attempts, self.timeout) from None

    def close(self) -> None:
        self._channel.close()


def _serving_error(error, address: str, attempts: int, timeout: float) -> ServingError:
    import grpc

    code = error.code()
    details = tf_error_message(error.details() or "")
    if code == grpc.StatusCode.UNAVAILABLE:
        message = f"server {address} unavailable after {attempts} attempt(s): {details}"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        message = f"server {address} did not answer within {timeout:g} s (raise --timeout for whole volumes)"
    elif code == grpc.StatusCode.INVALID_ARGUMENT:
        message = f"server rejected the request: {details}"
    else:
        message = f"server {address} answered {code.name}: {details}"
    return ServingError(message, code.name)


def _text(value) -> list[str]:
    """String tensor values (bytes over gRPC, str over REST) as a flat list of str."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.ravel(np.asarray(value, dtype=object))]
