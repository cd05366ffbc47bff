"""A ``PredictionService`` gRPC server over the in-process backend (tests and local development).

Speaks TF Serving's wire protocol (``tensorflow.serving.PredictionService/Predict``: TensorProtos,
model spec with name, version or version label, signature name) and runs the same SavedModels from
the model base directory, so the TF Serving client is exercised end to end without the TF Serving
binary (which no package registry here ships; production runs the official image, see helm/).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from prodcat.serving.backends import InProcessBackend
from prodcat.serving.exceptions import (
    BackendUnavailableError,
    ModelInputError,
    ModelNotFoundError,
    ModelSignatureError,
)

logger = logging.getLogger(__name__)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]  # generated code is untyped
    """Serves every model under ``model_base``: latest by default, a version or a label on request."""

    def __init__(
        self,
        model_base: Path,
        *,
        version_labels: Mapping[str, Mapping[str, int]] | None = None,
        poll_interval_s: float = 1.0,
    ) -> None:
        self.model_base = Path(model_base)
        self.version_labels = {k: dict(v) for k, v in (version_labels or {}).items()}
        self.poll_interval_s = poll_interval_s
        self._backends: dict[tuple[str, int | None, str], InProcessBackend] = {}
        self._lock = threading.Lock()

    def _backend(self, name: str, version: int | None, signature: str) -> InProcessBackend:
        key = (name, version, signature)
        with self._lock:
            backend = self._backends.get(key)
            if backend is None:
                backend = InProcessBackend(
                    self.model_base,
                    name,
                    signature=signature,
                    version=version,
                    poll_interval_s=self.poll_interval_s,
                )
                self._backends[key] = backend
            return backend

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:  # gRPC method name
        spec = request.model_spec
        signature = spec.signature_name or "serving_default"
        choice = spec.WhichOneof("version_choice")
        version: int | None = None
        if choice == "version":
            version = int(spec.version.value)
        elif choice == "version_label":
            version = self.version_labels.get(spec.name, {}).get(spec.version_label)
            if version is None:
                context.abort(
                    grpc.StatusCode.NOT_FOUND,
                    f"no version label {spec.version_label!r} for model {spec.name!r}",
                )
        try:
            backend = self._backend(spec.name, version, signature)
            inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
            result = backend.predict(inputs)
        except ModelInputError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except ModelSignatureError as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"signature mismatch: {exc}")
        except (BackendUnavailableError, ModelNotFoundError) as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {exc}")
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.signature_name = signature
        response.model_spec.version.value = result.version
        wanted = set(request.output_filter) or set(result.outputs)
        for key, value in result.outputs.items():
            if key in wanted:
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response

    def close(self) -> None:
        with self._lock:
            for backend in self._backends.values():
                backend.close()
            self._backends.clear()


def serve(
    model_base: Path,
    host: str = "127.0.0.1",
    port: int = 8500,
    *,
    max_workers: int = 8,
    version_labels: Mapping[str, Mapping[str, int]] | None = None,
    poll_interval_s: float = 1.0,
) -> tuple[grpc.Server, PredictionServicer, int]:
    """Start the server (returns at once); ``port`` 0 picks a free one, returned."""
    servicer = PredictionServicer(
        model_base, version_labels=version_labels, poll_interval_s=poll_interval_s
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="predict"),
        options=[
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    logger.info("PredictionService for %s on %s:%d", model_base, host, bound)
    return server, servicer, bound
