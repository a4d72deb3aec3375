"""REST client for tfsynth on TensorFlow Serving (``POST /v1/models/NAME:predict``, columnar JSON).

Same calls as the gRPC `SynthesisClient`. JSON is ~5x larger than the gRPC tensor
encoding; prefer gRPC for whole volumes.
"""

from __future__ import annotations

import numpy as np

from tfsynth.clients.grpc_client import MAX_BACKOFF_S, BaseClient, ServingError
from tfsynth.errors import tf_error_message

_RETRY_STATUS = (502, 503, 504)
_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 503: "UNAVAILABLE"}


class RestSynthesisClient(BaseClient):
    """Talks to TF Serving's REST API (``--rest_api_port``, 8501 by default).

    Args:
        address: ``host:port`` or ``http(s)://host:port``.
        model_name, timeout, version, version_label: as `SynthesisClient`.
        retries: extra attempts after a refused connection or a 502/503/504 answer (the REST form
            of UNAVAILABLE), by a `urllib3.util.Retry` on the session's adapter.
        backoff: urllib3's ``backoff_factor``: waits ``backoff * 2**(n - 1)`` s before retry n >= 2
            (the first retry is immediate), capped at 30 s.
    """

    def _endpoint(self, address: str) -> str:
        return address if address.startswith(("http://", "https://")) else f"http://{address}"

    def _connect(self) -> None:
        import requests

        path = f"/v1/models/{self.model_name}"
        if self.version is not None:
            path += f"/versions/{int(self.version)}"
        elif self.version_label:
            path += f"/labels/{self.version_label}"
        self.url = self.address.rstrip("/") + path
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(max_retries=_retry_policy(self.retries, self.backoff))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def _predict_outputs(self, signature: str, inputs: dict, outputs: list[str]) -> dict[str, np.ndarray]:
        payload = {
            "signature_name": signature,
            "inputs": {
                name: value.tolist() if isinstance(value, np.ndarray) else value for name, value in inputs.items()
            },
        }
        body = self._request("post", self.url + ":predict", payload)
        answer = body["outputs"]
        # TF Serving's REST API answers every output (it has no output filter); the columnar
        # answer is the bare tensor when the signature has one output.
        answer = answer if isinstance(answer, dict) else {outputs[0]: answer}
        return {name: np.asarray(answer[name]) for name in outputs}

    def metadata(self) -> dict:
        """The model's metadata JSON (signature defs), as TF Serving's ``GET .../metadata`` returns it."""
        return self._request("get", self.url + "/metadata", None)

    def _request(self, method: str, url: str, payload):
        import requests

        try:
            response = self._session.request(method, url, json=payload, timeout=self.timeout)
        except requests.Timeout:
            raise ServingError(f"server {url} did not answer within {self.timeout:g} s", "DEADLINE_EXCEEDED") from None
        except requests.ConnectionError as error:
            raise ServingError(
                f"server {url} unavailable after {self.retries + 1} attempt(s): {error}", "UNAVAILABLE"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:500]}
        if response.status_code == 200:
            return body
        code = _CODES.get(response.status_code, f"HTTP_{response.status_code}")
        details = tf_error_message(body.get("error", ""))
        prefix = "server rejected the request" if code == "INVALID_ARGUMENT" else f"server {url} answered {code}"
        raise ServingError(f"{prefix}: {details}", code)

    def close(self) -> None:
        self._session.close()


def _retry_policy(retries: int, backoff: float):
    """Retries of refused connections and 502/503/504 answers, for every method (predict is a
    POST, and safe to repeat); the last answer is returned rather than raised."""
    from urllib3.util import Retry

    return Retry(
        total=retries,
        connect=retries,
        read=0,
        status=retries,
        other=0,
        allowed_methods=None,
        status_forcelist=_RETRY_STATUS,
        backoff_factor=backoff,
        backoff_max=MAX_BACKOFF_S,
        raise_on_status=False,
    )
