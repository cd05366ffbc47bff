"""Model backends behind one interface: the SavedModel in process, or TF Serving over gRPC.

A backend answers ``predict(inputs)`` for one named model with the outputs of its signature and the
version that produced them, so a caller never mixes the outputs of one version with the metadata
(classes, paths) of another while the model is being hot-swapped.

* :class:`InProcessBackend` loads ``<model_base>/<name>/<version>/`` and polls the directory for a
  newer version (or keeps a pinned one), loading it in the background and swapping atomically.
* :class:`TFServingBackend` (``prodcat.serving.tfserving``) calls TF Serving's ``PredictionService``, which
  does the swap itself; the response names the version that answered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import tensorflow as tf

from prodcat.core.model_store import available_versions
from prodcat.core.settings import ServingSettings
from prodcat.serving.exceptions import (
    BackendUnavailableError,
    ModelInputError,
    ModelNotFoundError,
    ModelSignatureError,
)

logger = logging.getLogger(__name__)

Arrays = Mapping[str, np.ndarray[Any, Any]]


@dataclass(frozen=True, slots=True)
class ModelOutput:
    """The outputs of one call and the model version that computed them."""

    name: str
    version: int
    outputs: dict[str, np.ndarray[Any, Any]]


class ModelBackend(Protocol):
    """What stages and the API need from a model, wherever it runs."""

    name: str

    def predict(self, inputs: Arrays) -> ModelOutput: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Loaded:
    version: int
    function: Any  # a ConcreteFunction of the signature
    module: Any  # keeps the loaded SavedModel (and its variables) alive


def _load(model_dir: Path, version: int, signature: str) -> _Loaded:
    path = model_dir / str(version)
    started = time.perf_counter()
    try:
        module = tf.saved_model.load(str(path))
    except (OSError, ValueError, tf.errors.OpError) as exc:
        raise ModelNotFoundError(f"cannot load SavedModel {path}: {exc}") from exc
    function = module.signatures.get(signature)
    if function is None:
        raise ModelSignatureError(
            f"{path} has no signature {signature!r} (has {sorted(module.signatures)})"
        )
    logger.info("loaded %s in %.1fs", path, time.perf_counter() - started)
    return _Loaded(version, function, module)


class InProcessBackend:
    """Runs a SavedModel from the model base directory in this process, hot-swapping versions.

    With ``version`` unset it serves the latest complete version and a daemon thread polls for newer
    ones every ``poll_interval_s``; a new version is loaded off the request path and swapped in with
    one reference assignment. Calls in flight finish on the version they started with.
    With ``committee_size >= 2`` the ``committee_size - 1`` versions just below the served one stay
    loaded too, for :meth:`predict_members` (query by committee, ``prodcat.serving.committee``).
    """

    def __init__(
        self,
        model_base: Path,
        name: str,
        *,
        signature: str = "serving_default",
        version: int | None = None,
        poll_interval_s: float | None = 2.0,
        wait_s: float = 0.0,
        committee_size: int = 0,
    ) -> None:
        self.name = name
        self.committee_size = committee_size
        self._members: dict[int, _Loaded] = {}
        self.model_dir = Path(model_base) / name
        self.signature = signature
        self.pinned = version
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        deadline = time.monotonic() + wait_s
        while not self.refresh() and time.monotonic() < deadline:
            time.sleep(min(0.5, poll_interval_s or 0.5))
        if version is None and poll_interval_s:
            self._poller = threading.Thread(
                target=self._poll, args=(poll_interval_s,), name=f"model-poll-{name}", daemon=True
            )
            self._poller.start()

    @classmethod
    def from_settings(cls, settings: ServingSettings, name: str, **kwargs: Any) -> InProcessBackend:
        return cls(
            settings.model_base,
            name,
            signature=settings.signature,
            version=settings.version,
            poll_interval_s=settings.poll_interval_s,
            committee_size=settings.committee_size,
            **kwargs,
        )

    @property
    def version(self) -> int | None:
        loaded = self._loaded
        return loaded.version if loaded else None

    def refresh(self) -> bool:
        """Load the wanted version if it is not the one being served; True once one is served."""
        with self._lock:  # one loader at a time (poller vs an explicit call)
            versions = available_versions(self.model_dir)
            if self.pinned is not None:
                wanted: int | None = self.pinned if self.pinned in versions else None
            else:
                wanted = versions[-1] if versions else None
            current = self._loaded
            if wanted is not None and (current is None or current.version != wanted):
                try:
                    loaded = _load(self.model_dir, wanted, self.signature)
                except ModelNotFoundError as exc:  # e.g. removed while loading: try next poll
                    logger.warning("%s", exc)
                else:
                    self._loaded = loaded
                    if current is not None:
                        # the old version may stay as a member (a new dict: readers iterate it)
                        self._members = {**self._members, current.version: current}
                        logger.info(
                            "%s: swapped version %d → %d", self.name, current.version, wanted
                        )
            self._refresh_members(versions)
            return self._loaded is not None

    def _refresh_members(self, versions: list[int]) -> None:
        """Keep the ``committee_size - 1`` versions below the served one loaded (lock held)."""
        served = self._loaded
        if self.committee_size < 2 or served is None:
            self._members = {}
            return
        wanted = [v for v in versions if v < served.version][-(self.committee_size - 1) :]
        members = {v: m for v, m in self._members.items() if v in wanted}
        for version in wanted:
            if version not in members:
                try:
                    members[version] = _load(self.model_dir, version, self.signature)
                except (ModelNotFoundError, ModelSignatureError) as exc:
                    logger.warning("%s: committee member left out: %s", self.name, exc)
        self._members = members

    def predict_members(self, inputs: Arrays, newest: int, size: int) -> list[ModelOutput]:
        """Outputs of up to ``size`` loaded versions older than ``newest``, newest first."""
        members = sorted(self._members.values(), key=lambda m: -m.version)
        outputs = []
        for member in [m for m in members if m.version < newest][:size]:
            try:
                outputs.append(self._call(member, inputs))
            except (ModelInputError, ModelSignatureError) as exc:
                logger.warning("%s: committee member left out of a batch: %s", self.name, exc)
        return outputs

    def _poll(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.refresh()
            except Exception:  # the poller must survive a bad export; the old version keeps serving
                logger.exception("%s: loading a new version failed", self.name)

    def predict(self, inputs: Arrays) -> ModelOutput:
        loaded = self._loaded
        if loaded is None:
            raise BackendUnavailableError(
                f"no version of model {self.name!r} under {self.model_dir} yet"
            )
        return self._call(loaded, inputs)

    def _call(self, loaded: _Loaded, inputs: Arrays) -> ModelOutput:
        try:
            tensors = {key: tf.constant(value) for key, value in inputs.items()}
            outputs = loaded.function(**tensors)
        except tf.errors.InvalidArgumentError as exc:
            raise ModelInputError(f"{self.name} v{loaded.version}: {exc.message}") from exc
        except TypeError as exc:  # wrong input names for the signature
            raise ModelSignatureError(f"{self.name} v{loaded.version}: {exc}") from exc
        return ModelOutput(
            self.name, loaded.version, {key: value.numpy() for key, value in outputs.items()}
        )

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)


#: ``observe(model, backend, seconds, error_kind)`` after every model call (error_kind None: ok).
CallObserver = Callable[[str, str, float, str | None], None]


def error_kind(exc: BaseException) -> str:
    """A bounded label for a failed call."""
    if isinstance(exc, BackendUnavailableError):
        return "unavailable"
    if isinstance(exc, ModelSignatureError):
        return "signature"
    if isinstance(exc, ModelInputError):
        return "input"
    return "other"


class MeteredBackend:
    """A backend whose ``predict`` calls are timed and their failures counted by ``observe``.

    Everything else (committee members, ``version``, ``close``) is the wrapped backend's.
    """

    def __init__(self, backend: ModelBackend, kind: str, observe: CallObserver) -> None:
        self.backend = backend
        self.name = backend.name
        self.kind = kind
        self.observe = observe

    def predict(self, inputs: Arrays) -> ModelOutput:
        started = time.perf_counter()
        try:
            output = self.backend.predict(inputs)
        except Exception as exc:
            self.observe(self.name, self.kind, time.perf_counter() - started, error_kind(exc))
            raise
        self.observe(self.name, self.kind, time.perf_counter() - started, None)
        return output

    def predict_members(self, inputs: Arrays, newest: int, size: int) -> list[ModelOutput]:
        members = getattr(self.backend, "predict_members", None)
        return [] if members is None else list(members(inputs, newest, size))

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.backend, attribute)

    def close(self) -> None:
        self.backend.close()


def create_backend(
    settings: ServingSettings, name: str, *, observe: CallObserver | None = None, **kwargs: Any
) -> ModelBackend:
    """The backend ``settings.backend`` names, for model ``name`` (timed by ``observe`` if given)."""
    backend: ModelBackend
    if settings.backend == "tfserving":
        from prodcat.serving.tfserving import TFServingBackend  # gRPC stack only when asked for

        backend = TFServingBackend.from_settings(settings, name)
    else:
        backend = InProcessBackend.from_settings(settings, name, **kwargs)
    return backend if observe is None else MeteredBackend(backend, settings.backend, observe)
