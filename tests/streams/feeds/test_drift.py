"""Telling when records stop fitting their profile."""

from __future__ import annotations

import pytest

from prodcat.streams.feeds.drift import DriftMonitor, fits, misfit
from prodcat.streams.feeds.infer import infer_profile

from .synthetic import catalogue

PRODUCTS = catalogue(200)
RECORDS = [
    {"name": p.title, "price": p.price, "category": " > ".join(p.path), "sku": p.sku}
    for p in PRODUCTS
]
PROFILE = infer_profile(RECORDS, feed="d")


def test_fitting_and_misfitting_records() -> None:
    assert all(fits(record, PROFILE) for record in RECORDS)
    renamed = {"productName": PRODUCTS[0].title, "cost": 1.0, "cat": "A > B", "id": "x"}
    assert misfit(renamed, PROFILE) == "keys"
    assert misfit({**RECORDS[0], "name": " "}, PROFILE) == "title"


def test_monitor_reports_drift_after_enough_misfits() -> None:
    monitor = DriftMonitor(PROFILE, window=100, threshold=0.3, min_records=20)
    assert not any(monitor.observe(record) for record in RECORDS[:100])
    renamed = [{"productName": p.title, "cost": p.price} for p in PRODUCTS]
    verdicts = [monitor.observe(record) for record in renamed[:40]]
    assert verdicts[-1] and not verdicts[0]
    assert monitor.reasons == {"keys": 40}
    assert monitor.misfit_rate == pytest.approx(0.4)
    monitor.reset(infer_profile(renamed, feed="d", version=2))
    assert not any(monitor.observe(record) for record in renamed)


def test_monitor_validates_threshold() -> None:
    with pytest.raises(ValueError, match="threshold"):
        DriftMonitor(PROFILE, threshold=0)
