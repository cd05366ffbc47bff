"""Acceptance on the shared development feeds: every feed profiled from its own first records.

The data directory is ``$PRODCAT_DATA_DIR`` or ``../shared/data`` next to the repository; the test
is skipped when it is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prodcat.streams.feeds.evaluate import DEV_FEEDS, TAXONOMY_FILE, evaluate_feed, load_truth
from prodcat.streams.feeds.taxonomy import load_google_taxonomy

DATA_DIR = Path(
    os.environ.get("PRODCAT_DATA_DIR")
    or Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
)
FEEDS_DIR = DATA_DIR / "feeds"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not FEEDS_DIR.is_dir(), reason=f"no development feeds at {FEEDS_DIR}"),
]


@pytest.mark.parametrize("name", DEV_FEEDS)
def test_dev_feed_meets_the_acceptance_numbers(name: str) -> None:
    lines = (FEEDS_DIR / f"{name}.jsonl").read_bytes().splitlines()
    truth = load_truth(FEEDS_DIR / f"{name}.truth.jsonl")
    report = evaluate_feed(lines, truth, feed=name, sample_size=1000)
    assert report.title_rate >= 0.99, report.dead_letters
    assert report.price_rate >= 0.95
    assert report.category_rate >= 0.95, report.mismatches[:5]
    assert report.dead_with_truth == 0  # no record with a category (a real product) dead-lettered
    assert set(report.dead_letters) <= {"no_title"}


def test_google_taxonomy_file_parses() -> None:
    path = DATA_DIR / TAXONOMY_FILE
    if not path.exists():
        pytest.skip("no Google taxonomy file")
    taxonomy = load_google_taxonomy(path)
    assert len(taxonomy) > 5000
    assert all(levels for levels in taxonomy.values())
