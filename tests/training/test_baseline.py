"""The TF-IDF + LinearSVC baseline on the fixed protocol: the bar prodcat's models must clear."""

from __future__ import annotations

from pathlib import Path

import pytest

from prodcat.training.baseline import tfidf_linearsvc
from prodcat.training.dataset import load_flipkart, protocol_split


@pytest.mark.slow
def test_baseline_reaches_the_published_level_on_l3(data_dir: Path) -> None:
    split = protocol_split(load_flipkart(data_dir), 3)
    result = tfidf_linearsvc(split)
    assert (result.train_size, result.test_size) == (14_024, 3_504)
    # The issue quotes ≈ 0.962 for this baseline on this protocol; split variance is ±0.005.
    assert 0.955 <= result.accuracy <= 0.975
    assert 0.85 <= result.macro_f1 <= 0.95
