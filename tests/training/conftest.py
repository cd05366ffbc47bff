"""Fixtures shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from prodcat.training.dataset import Example, load_flipkart


@pytest.fixture(scope="session")
def examples(data_dir: Path) -> list[Example]:
    """The 20,000 Flipkart examples, loaded once for the session (tests must not mutate them)."""
    return load_flipkart(data_dir)
