"""Model backends: the SavedModel in process, and TF Serving's gRPC API against a real server."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from prodcat.core.model_store import available_versions
from prodcat.serving.backends import InProcessBackend, ModelBackend
from prodcat.serving.exceptions import (
    BackendUnavailableError,
    ModelInputError,
    ModelSignatureError,
)
from prodcat.serving.grpc_server import serve
from prodcat.serving.tfserving import TFServingBackend
from tests.conftest import TrainedClassifier, free_port

pytestmark = [pytest.mark.integration]

INPUTS = {
    "title": np.array(
        ["Sonata Analog Watch - For Men", "Alisha Solid Women's Cycling Shorts"], object
    ),
    "brand": np.array(["Sonata", "Alisha"], object),
    "category_text": np.array(["", ""], object),
    "description": np.array(["", "cotton lycra"], object),
}


def _wait_for(predicate, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


@pytest.fixture
def model_base(tmp_path: Path, trained_classifier: TrainedClassifier) -> Path:
    """A private copy of the model store holding version 1."""
    base = tmp_path / "models"
    shutil.copytree(trained_classifier.model_base, base)
    return base


def _check_outputs(backend: ModelBackend, classes: int) -> dict[str, np.ndarray]:
    result = backend.predict(INPUTS)
    out = result.outputs
    assert out["exclusive_probs"].shape == (2, classes)
    np.testing.assert_allclose(out["exclusive_probs"].sum(axis=1), 1.0, rtol=1e-4)
    assert out["top_k_ids"].shape == (2, 5) and out["top_k_ids"][0, 0].startswith(b"c_")
    assert out["rule_based_probs"].shape[0] == 2 and out["rule_based_probs"].shape[1] > 0
    return out


def test_in_process_serves_the_latest_version_and_swaps_to_a_new_one(
    model_base: Path, trained_classifier: TrainedClassifier
) -> None:
    backend = InProcessBackend(model_base, "classifier", poll_interval_s=0.2)
    try:
        classes = len(trained_classifier.class_ids)
        first = _check_outputs(backend, classes)
        assert backend.predict(INPUTS).version == 1
        # A half-written export is never picked up; a complete one is, without a restart.
        (model_base / "classifier" / ".2.partial").mkdir()
        trained_classifier.export(model_base)
        assert available_versions(model_base / "classifier") == [1, 2]
        _wait_for(lambda: backend.predict(INPUTS).version == 2)
        np.testing.assert_allclose(
            backend.predict(INPUTS).outputs["exclusive_probs"], first["exclusive_probs"], rtol=1e-5
        )
    finally:
        backend.close()


def test_a_pinned_version_is_kept(model_base: Path, trained_classifier: TrainedClassifier) -> None:
    trained_classifier.export(model_base)
    backend = InProcessBackend(model_base, "classifier", version=1, poll_interval_s=0.2)
    try:
        time.sleep(0.5)
        assert backend.predict(INPUTS).version == 1
    finally:
        backend.close()


def test_no_model_yet_is_transient_until_one_is_exported(
    tmp_path: Path, trained_classifier: TrainedClassifier
) -> None:
    base = tmp_path / "empty"
    backend = InProcessBackend(base, "classifier", poll_interval_s=0.2)
    try:
        with pytest.raises(BackendUnavailableError, match="no version"):
            backend.predict(INPUTS)
        trained_classifier.export(base)
        _wait_for(lambda: backend.version == 1)
        assert backend.predict(INPUTS).version == 1
    finally:
        backend.close()


def test_in_process_input_errors(model_base: Path) -> None:
    backend = InProcessBackend(model_base, "classifier", poll_interval_s=None)
    with pytest.raises(ModelSignatureError):
        backend.predict({"title": INPUTS["title"]})
    with pytest.raises(ModelInputError):
        backend.predict({**INPUTS, "brand": np.array(["only one"], object)})


@pytest.fixture
def grpc_server(model_base: Path):
    server, servicer, port = serve(
        model_base, port=0, version_labels={"classifier": {"stable": 1}}, poll_interval_s=0.2
    )
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)
    servicer.close()


def test_tfserving_client_speaks_the_prediction_service_protocol(
    grpc_server: str, model_base: Path, trained_classifier: TrainedClassifier
) -> None:
    local = InProcessBackend(model_base, "classifier", poll_interval_s=None)
    remote = TFServingBackend(grpc_server, "classifier", deadline_s=10)
    try:
        classes = len(trained_classifier.class_ids)
        out = _check_outputs(remote, classes)
        expected = local.predict(INPUTS).outputs
        for key, value in expected.items():
            if value.dtype == object:
                assert (out[key] == value).all(), key
            else:
                np.testing.assert_allclose(out[key], value, rtol=1e-5, err_msg=key)
        assert remote.predict(INPUTS).version == 1
        # The server hot-swaps; the response names the version that answered.
        trained_classifier.export(model_base)
        _wait_for(lambda: remote.predict(INPUTS).version == 2)
        pinned = TFServingBackend(grpc_server, "classifier", version=1)
        labelled = TFServingBackend(grpc_server, "classifier", version_label="stable")
        assert pinned.predict(INPUTS).version == 1
        assert labelled.predict(INPUTS).version == 1
        pinned.close()
        labelled.close()
    finally:
        remote.close()


def test_tfserving_errors_are_classified(grpc_server: str) -> None:
    backend = TFServingBackend(grpc_server, "classifier", retries=1, backoff_s=0.01)
    try:
        with pytest.raises(ModelInputError):
            backend.predict({**INPUTS, "brand": np.array(["only one"], object)})
        with pytest.raises(ModelSignatureError):
            backend.predict({"title": INPUTS["title"]})
        unknown = TFServingBackend(grpc_server, "no_such_model", retries=1, backoff_s=0.01)
        with pytest.raises(BackendUnavailableError, match="NOT_FOUND"):
            unknown.predict(INPUTS)
        unknown.close()
    finally:
        backend.close()


def test_tfserving_outage_is_retried_then_reported_quickly() -> None:
    backend = TFServingBackend(
        f"127.0.0.1:{free_port()}", "classifier", deadline_s=1, retries=2, backoff_s=0.05
    )
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="UNAVAILABLE"):
        backend.predict(INPUTS)
    assert time.monotonic() - started < 10
    backend.close()


def test_in_process_committee_keeps_the_older_versions_loaded(
    model_base: Path, trained_classifier: TrainedClassifier
) -> None:
    trained_classifier.export(model_base)  # version 2
    trained_classifier.export(model_base)  # version 3
    backend = InProcessBackend(model_base, "classifier", poll_interval_s=None, committee_size=2)
    try:
        served = backend.predict(INPUTS)
        assert served.version == 3
        members = backend.predict_members(INPUTS, served.version, 5)
        assert [m.version for m in members] == [2]  # committee_size 2: one member besides v3
        np.testing.assert_allclose(
            members[0].outputs["exclusive_probs"], served.outputs["exclusive_probs"], rtol=1e-4
        )
        trained_classifier.export(model_base)  # version 4: v3 becomes the member, v2 unloaded
        backend.refresh()
        assert backend.version == 4
        assert [m.version for m in backend.predict_members(INPUTS, 4, 5)] == [3]
    finally:
        backend.close()
    single = InProcessBackend(model_base, "classifier", poll_interval_s=None)
    try:
        assert single.predict_members(INPUTS, 4, 5) == []
    finally:
        single.close()


def test_tfserving_committee_asks_for_older_versions_by_number(
    model_base: Path, trained_classifier: TrainedClassifier
) -> None:
    trained_classifier.export(model_base)  # version 2
    port = free_port()
    server, servicer, _ = serve(model_base, port=port)
    try:
        backend = TFServingBackend(
            f"127.0.0.1:{port}", "classifier", model_dir=model_base / "classifier"
        )
        served = backend.predict(INPUTS)
        assert served.version == 2
        assert [m.version for m in backend.predict_members(INPUTS, 2, 3)] == [1]
        assert backend.predict_members(INPUTS, 1, 3) == []
        backend.close()
    finally:
        server.stop(grace=None)
        servicer.close()
