"""Fixtures of the stage tests that need more than the shared ones (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from prodcat import localmilvus
from prodcat.core.settings import ImageSettings, MilvusSettings, ServingSettings, Settings


@pytest.fixture
def milvus_server(tmp_path: Path) -> Iterator[localmilvus.LocalMilvus]:
    """A real Milvus standalone server on loopback, stopped after the test."""
    server = localmilvus.start(tmp_path / "milvus-server")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def embed_on_milvus_server(
    pipeline_settings: Settings,
    milvus_server: localmilvus.LocalMilvus,
    data_dir: Path,
    embedder_model_base: Path,
) -> Settings:
    """Settings of an embed stage that reads the Myntra thumbnails and stores on the server."""
    return pipeline_settings.model_copy(
        update={
            "serving": ServingSettings(model_base=embedder_model_base, batch_size=16),
            "images": ImageSettings(file_roots=((data_dir / "myntra" / "images").resolve(),)),
            "milvus": MilvusSettings(uri=milvus_server.uri, dim=1280),
            "worker": pipeline_settings.worker.model_copy(update={"batch_size": 16}),
        }
    )
