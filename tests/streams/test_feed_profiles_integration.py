"""Feed profiles through the real broker: a new feed published with ``prodcat publish`` gets a
profile on ``feeds.profiles`` and its products carry the version; an override published while the
worker runs is adopted; a feed that changes its columns mid-stream is re-profiled. Every input is
accounted for (a product or a dead letter) throughout."""

from __future__ import annotations

import csv
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from prodcat.core.settings import Settings
from prodcat.schemas.serde import serde_for
from prodcat.streams.feeds.commands import publish_override
from prodcat.streams.feeds.profile import FeedProfile
from prodcat.streams.feeds.publish import publish_file
from prodcat.streams.feeds.store import read_profiles
from prodcat.streams.readback import Record, read_topics
from prodcat.streams.worker_process import scrape_metric

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NOUNS = ["Schuh", "Jacke", "Hose", "Mütze", "Tasche", "Uhr", "Lampe", "Tisch", "Stuhl", "Decke"]
ADJECTIVES = ["rot", "blau", "leicht", "warm", "klein", "groß", "edel", "robust", "weich"]
BRANDS = ["Nordwind", "Alpina", "Kieselstein", "Morgentau", "Lindgrün", "Sternberg"]
TREE = {
    "Mode": ["Schuhe", "Jacken", "Hosen", "Accessoires"],
    "Wohnen": ["Lampen", "Möbel", "Textilien"],
    "Sport": ["Laufen", "Wandern"],
}


def _rows(n: int, seed: int, start: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(start, start + n):
        top = rng.choice(sorted(TREE))
        rows.append(
            {
                "Artikelnummer": f"A{i:06d}",
                "Bezeichnung": f"{rng.choice(ADJECTIVES).title()} {rng.choice(NOUNS)} "
                f"{rng.choice(BRANDS)} {rng.randint(10, 99)}",
                "Hersteller": rng.choice(BRANDS),
                "Warengruppe": f"{top} > {rng.choice(TREE[top])}",
                "Preis": f"{rng.randint(5, 400)},{rng.randint(0, 99):02d} €",
                "Lieferant": rng.choice(["Lager Nord", "Lager Süd"]),
            }
        )
    return rows


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=";")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _outputs(settings: Settings, expected: int) -> list[Record]:
    return read_topics(
        settings.kafka,
        [settings.topics.normalized, settings.topics.deadletter],
        expected=expected,
        timeout_s=180,
    )


def _products(records: list[Record]) -> list[dict[str, object]]:
    serde = serde_for("Product")
    return [
        dict(serde.decode(r.value))
        for r in records
        if r.topic.endswith("products.normalized") and r.value is not None
    ]


def _profiles(settings: Settings, feed: str, version: int, timeout_s: float = 60) -> FeedProfile:
    deadline = time.monotonic() + timeout_s
    while True:
        found = [p for p in read_profiles(settings).values() if p.feed == feed]
        newest = max(found, key=lambda p: p.version, default=None)
        if newest is not None and newest.version >= version:
            return newest
        assert time.monotonic() < deadline, f"no profile v{version} of {feed}: {found}"
        time.sleep(1)


def _metric(settings: Settings, name: str, **labels: str) -> float:
    worker = settings.worker
    return scrape_metric(worker.metrics_host, worker.metrics_port, name, **labels)


def test_a_new_feed_gets_a_profile_and_its_products_carry_the_version(
    pipeline_settings: Settings, run_worker, tmp_path: Path
) -> None:
    settings = pipeline_settings
    run_worker(settings, ["normalize"])
    rows = _rows(300, seed=1)
    path = _write_csv(tmp_path / "katalog.csv", rows)
    sent = publish_file(
        settings.kafka, settings.topics.raw, path, feed="katalog", progress=False
    ).sent
    assert sent == 300

    outputs = _outputs(settings, expected=300)
    assert len(outputs) == 300
    products = _products(outputs)
    assert len(products) == 300  # every row has a title: no dead letter
    profile = _profiles(settings, "katalog", 1)
    assert profile.version == 1
    assert profile.fields["title"].sources == ("Bezeichnung",)
    assert profile.fields["category"].sources == ("Warengruppe",)
    assert {p["profile_version"] for p in products} == {1}
    by_id = {row["Artikelnummer"]: row for row in rows}
    for product in products:
        row = by_id[str(product["source_id"])]
        assert product["title"] == row["Bezeichnung"]
        assert product["category_path"] == row["Warengruppe"].split(" > ")
        assert product["price"] is not None
    assert _metric(settings, "prodcat_feed_records_total", feed="katalog") == 300
    assert _metric(settings, "prodcat_feed_field_total", feed="katalog", field="category") == 300
    assert _metric(settings, "prodcat_feed_profile_version", feed="katalog") == 1

    # An operator pins the brand to another column while the worker runs.
    pinned = publish_override(settings, "katalog", "brand=Lieferant")
    assert pinned.version == 2
    deadline = time.monotonic() + 30  # the worker follows feeds.profiles
    while _metric(settings, "prodcat_feed_profile_version", feed="katalog") != 2:
        assert time.monotonic() < deadline, "the running worker did not adopt the override"
        time.sleep(0.5)
    assert _metric(settings, "prodcat_feed_profiles_total", feed="katalog", reason="adopted") == 1
    more = _rows(100, seed=2, start=300)
    path2 = _write_csv(tmp_path / "katalog2.csv", more)
    publish_file(settings.kafka, settings.topics.raw, path2, feed="katalog", progress=False)
    outputs = _outputs(settings, expected=400)
    assert len(outputs) == 400
    later = [p for p in _products(outputs) if str(p["source_id"]) >= "A000300"]
    assert len(later) == 100
    assert {p["profile_version"] for p in later} == {2}
    assert {p["brand"] for p in later} <= {"Lager Nord", "Lager Süd"}

    # A network's export of three shops; one writes its path in a column of its own.
    network = []
    for i, row in enumerate(_rows(300, seed=3, start=1000)):
        shop = ["Laden Eins", "Laden Zwei", "Laden Drei"][i % 3]
        own = shop == "Laden Zwei"
        network.append({
            "Artikelnummer": row["Artikelnummer"], "Haendler": shop,
            "Bezeichnung": row["Bezeichnung"], "Preis": row["Preis"],
            "Netzkategorie": "" if own else row["Warengruppe"],
            "Shopkategorie": row["Warengruppe"].replace(" > ", " / ") if own else "",
        })  # fmt: skip
    path3 = _write_csv(tmp_path / "netz.csv", network)
    publish_file(settings.kafka, settings.topics.raw, path3, feed="netz", progress=False)
    outputs = _outputs(settings, expected=700)
    netz = [p for p in _products(outputs) if p["feed"] == "netz"]
    assert len(netz) == 300
    by_id = {row["Artikelnummer"]: row for row in network}
    for product in netz:
        row = by_id[str(product["source_id"])]
        path = row["Netzkategorie"] or row["Shopkategorie"].replace(" / ", " > ")
        assert product["category_path"] == path.split(" > "), row["Haendler"]
    segments = [p.segment for p in read_profiles(settings).values() if p.feed == "netz"]
    assert sorted(segments, key=str) == [("Haendler", ("laden zwei",)), None]

    # An override of the main profile carries the shop's own profile over to the new version,
    # so the running worker keeps reading that shop's category column.
    publish_override(settings, "netz", "brand=Haendler", shape="")
    live = [p for p in read_profiles(settings).values() if p.feed == "netz"]
    assert sorted((p.version, p.segment is not None) for p in live) == [(2, False), (2, True)]
    deadline = time.monotonic() + 30
    while _metric(settings, "prodcat_feed_profile_version", feed="netz") != 2:
        assert time.monotonic() < deadline, "the running worker did not adopt the override"
        time.sleep(0.5)
    later_rows = []
    for row in network[:30]:
        later_rows.append({**row, "Artikelnummer": row["Artikelnummer"].replace("A", "B")})
    path4 = _write_csv(tmp_path / "netz2.csv", later_rows)
    publish_file(settings.kafka, settings.topics.raw, path4, feed="netz", progress=False)
    outputs = _outputs(settings, expected=730)
    later = [p for p in _products(outputs) if str(p["source_id"]).startswith("B")]
    assert len(later) == 30
    for product in later:
        row = by_id[str(product["source_id"]).replace("B", "A")]
        path = row["Netzkategorie"] or row["Shopkategorie"].replace(" / ", " > ")
        assert product["category_path"] == path.split(" > "), row["Haendler"]
        assert product["profile_version"] == 2


def test_a_feed_that_changes_its_columns_is_reprofiled_and_nothing_is_lost(
    pipeline_settings: Settings, run_worker, tmp_path: Path
) -> None:
    settings = pipeline_settings
    run_worker(settings, ["normalize"])
    first = _rows(300, seed=3)
    publish_file(
        settings.kafka,
        settings.topics.raw,
        _write_csv(tmp_path / "a.csv", first),
        feed="wechsel",
        progress=False,
    )
    assert len(_outputs(settings, expected=300)) == 300
    assert _profiles(settings, "wechsel", 1).fields["title"].sources == ("Bezeichnung",)

    # The feed renames its columns: the title now sits under another header, the price too.
    renamed = {
        "Bezeichnung": "Produktname",
        "Preis": "VK-Preis",
        "Warengruppe": "Kategoriepfad",
    }
    second = [{renamed.get(k, k): v for k, v in row.items()} for row in _rows(300, 4, 300)]
    publish_file(
        settings.kafka,
        settings.topics.raw,
        _write_csv(tmp_path / "b.csv", second),
        feed="wechsel",
        progress=False,
    )
    outputs = _outputs(settings, expected=600)
    assert len(outputs) == 600  # every input is a product or a dead letter
    sources = Counter(dict(r.headers).get("prodcat-source") for r in outputs)
    assert len(sources) == 600 and max(sources.values()) == 1
    products = _products(outputs)
    after = [p for p in products if str(p["source_id"]) >= "A000300"]
    assert len(after) == 300, "the renamed records were dead-lettered instead of re-profiled"
    assert all(p["title"] for p in after)
    assert all(p["category_path"] for p in after)
    newest = _profiles(settings, "wechsel", 2)
    assert newest.reason.startswith("re-profiled")
    assert {p["profile_version"] for p in after} == {newest.version}
    assert _metric(settings, "prodcat_feed_profiles_total", feed="wechsel", reason="reprofile") >= 1
