"""The TF Serving backend: gRPC ``PredictionService.Predict`` through tensorflow-serving-api.

One channel per backend (HTTP/2 connection reuse); every call has a deadline; calls that fail because
the server is unavailable, overloaded or slow are retried with exponential backoff and then reported
as :class:`BackendUnavailableError` (stages retry the batch, never drop it). TF Serving hot-swaps
versions itself; the response names the version that answered.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from prodcat.core.model_store import available_versions
from prodcat.core.settings import ServingSettings
from prodcat.serving.backends import Arrays, ModelOutput
from prodcat.serving.exceptions import BackendUnavailableError, ModelInputError, ModelSignatureError

logger = logging.getLogger(__name__)

#: Status codes worth another attempt: the server is down, overloaded, slow or still loading.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.NOT_FOUND,  # "Servable not found": the version is not loaded (yet)
    }
)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: TF Serving's messages for a request that does not fit the signature (names, not values).
_SIGNATURE_MISMATCH = re.compile(
    r"not found in signature def|does not match signature|signature_def|input size does not match",
    re.IGNORECASE,
)


class TFServingBackend:
    """Calls one model on a TF Serving (or any ``PredictionService``) endpoint."""

    def __init__(
        self,
        target: str,
        name: str,
        *,
        signature: str = "serving_default",
        version: int | None = None,
        version_label: str | None = None,
        deadline_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.1,
        channel: grpc.Channel | None = None,
        model_dir: Path | None = None,
    ) -> None:
        if version is not None and version_label is not None:
            raise ValueError("give a version or a version label, not both")
        self.name = name
        self.target = target
        self.signature = signature
        self.version = version
        self.version_label = version_label
        self.deadline_s = deadline_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.model_dir = model_dir  # the model store, to find committee members' versions
        self._channel = channel or grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.keepalive_time_ms", 30_000),
            ],
        )
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    @classmethod
    def from_settings(cls, settings: ServingSettings, name: str) -> TFServingBackend:
        return cls(
            settings.target,
            name,
            signature=settings.signature,
            version=settings.version,
            version_label=settings.version_label,
            deadline_s=settings.deadline_s,
            retries=settings.retries,
            model_dir=settings.model_base / name if settings.committee_size >= 2 else None,
        )

    def request(self, inputs: Arrays) -> Any:
        """The ``PredictRequest`` for ``inputs`` (TensorProtos; strings as bytes)."""
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.name
        request.model_spec.signature_name = self.signature
        if self.version is not None:
            request.model_spec.version.value = self.version
        elif self.version_label is not None:
            request.model_spec.version_label = self.version_label
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        return request

    def predict(self, inputs: Arrays) -> ModelOutput:
        request = self.request(inputs)
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                response = self._stub.Predict(request, timeout=self.deadline_s)
            except grpc.RpcError as exc:
                code = exc.code()
                details = str(exc.details())
                if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
                    if code == grpc.StatusCode.FAILED_PRECONDITION or _SIGNATURE_MISMATCH.search(
                        details
                    ):
                        # the deployment does not match the caller, not this input's fault
                        raise ModelSignatureError(f"{self.name}: {details}") from exc
                    raise ModelInputError(f"{self.name}: {details}") from exc
                if code not in RETRYABLE or attempt == self.retries:
                    raise BackendUnavailableError(
                        f"{self.name} at {self.target}: {code.name}: {details}"
                    ) from exc
                logger.warning(
                    "%s at %s: %s (attempt %d/%d); retrying in %.2fs",
                    self.name,
                    self.target,
                    code.name,
                    attempt + 1,
                    self.retries + 1,
                    delay,
                )
                time.sleep(delay)
                delay *= 2
                continue
            outputs = {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}
            return ModelOutput(self.name, int(response.model_spec.version.value), outputs)
        raise AssertionError("unreachable")  # the loop returns or raises

    def predict_members(self, inputs: Arrays, newest: int, size: int) -> list[ModelOutput]:
        """Outputs of up to ``size`` versions older than ``newest`` (from the model store), asked
        for by number, newest first. One attempt each: a version the server does not serve (its
        ``model_version_policy`` must keep them) is left out with a warning."""
        if self.model_dir is None or size < 1:
            return []
        older = [v for v in available_versions(self.model_dir) if v < newest][-size:][::-1]
        outputs = []
        for version in older:
            request = self.request(inputs)
            request.model_spec.ClearField("version_label")
            request.model_spec.version.value = version
            try:
                response = self._stub.Predict(request, timeout=self.deadline_s)
            except grpc.RpcError as exc:
                logger.warning(
                    "%s v%d: committee member left out: %s", self.name, version, exc.code().name
                )
                continue
            arrays = {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}
            outputs.append(ModelOutput(self.name, version, arrays))
        return outputs

    def close(self) -> None:
        self._channel.close()
