"""`prodcat publish`: feed files → one raw JSON event per record on products.raw (real broker)."""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from prodcat.core.settings import KafkaSettings, Settings
from prodcat.streams.exceptions import ReplayError
from prodcat.streams.feeds.publish import (
    add_arguments,
    check_topic,
    feed_events,
    publish_command,
    publish_file,
    source_id_path,
)
from prodcat.streams.feeds.readers import FeedReadError, read_records
from prodcat.streams.readback import Record, read_topics
from tests.conftest import free_port

RSS_ITEM = (
    "<item><g:id>P{i}</g:id><g:title><![CDATA[Hitch & ball {i}]]></g:title>"
    "<g:product_type>COUPLINGS &amp; HITCHES &gt; BALLS</g:product_type>"
    "<g:image_link>https://img.example/{i}a.png</g:image_link>"
    "<g:image_link>https://img.example/{i}b.png</g:image_link><g:gtin></g:gtin></item>"
)


def write_feeds(tmp_path: Path) -> tuple[Path, Path]:
    csv_path = tmp_path / "shop.csv"
    lines = ["Produkt;Preis;Kategorie"] + [
        f"Müsli {i};{i},99 €;Frühstück > Cerealien" for i in range(25)
    ]
    csv_path.write_bytes("\r\n".join(lines).encode("cp1252"))
    xml_path = tmp_path / "shop.xml"
    items = "\n".join(RSS_ITEM.format(i=i) for i in range(40))
    xml_path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" '
        f'xmlns:g="http://base.google.com/ns/1.0"><channel><title>Shop</title>\n{items}\n'
        "</channel></rss>",
        encoding="utf-8",
    )
    return csv_path, xml_path


def by_key(records: list[Record]) -> dict[bytes, Record]:
    keyed = {r.key: r for r in records if r.key is not None}
    assert len(keyed) == len(records), "every event has a key of its own"
    return keyed


@pytest.mark.integration
def test_published_csv_and_xml_records_arrive_with_header_key_and_json_body(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    kafka, topic = pipeline_settings.kafka, pipeline_settings.topics.raw
    csv_path, xml_path = write_feeds(tmp_path)

    csv_result = publish_file(kafka, topic, csv_path, feed="muesli-de", progress=False)
    started = time.monotonic()
    xml_result = publish_file(kafka, topic, xml_path, feed="trailers", rate=100, progress=False)
    assert time.monotonic() - started >= 0.35  # 40 events at 100/s
    assert (csv_result.sent, csv_result.format) == (25, "csv")
    assert (xml_result.sent, xml_result.format) == (40, "xml")

    received = by_key(read_topics(kafka, [topic], expected=65, timeout_s=60))
    assert len(received) == 65
    for position, record in enumerate(read_records(csv_path)):  # no id column: keyed by position
        event = received[f"muesli-de:{position}".encode()]
        assert event.headers["feed"] == b"muesli-de"
        assert event.value is not None and json.loads(event.value) == record
    assert json.loads(received[b"muesli-de:3"].value or b"") == {
        "Produkt": "Müsli 3",
        "Preis": "3,99 €",
        "Kategorie": "Frühstück > Cerealien",
    }
    for record in read_records(xml_path):  # keyed by g:id
        event = received[f"trailers:{record['g:id']}".encode()]
        assert event.headers["feed"] == b"trailers"
        assert event.value is not None and json.loads(event.value) == record
    assert json.loads(received[b"trailers:P7"].value or b"") == {
        "g:id": "P7",
        "g:title": "Hitch & ball 7",
        "g:product_type": "COUPLINGS & HITCHES > BALLS",
        "g:image_link": ["https://img.example/7a.png", "https://img.example/7b.png"],
        "g:gtin": "",
    }


@pytest.mark.integration
def test_publish_command_from_standard_input_with_a_limit(
    pipeline_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, xml_path = write_feeds(tmp_path)
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(xml_path.read_bytes())))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["-", "--feed", "trailers", "--limit", "10", "--no-progress"])

    code = publish_command(args, kafka=pipeline_settings.kafka, topic=pipeline_settings.topics.raw)

    assert code == 0
    assert "sent 10 records of <stdin> (xml) as feed trailers" in capsys.readouterr().out
    received = read_topics(pipeline_settings.kafka, [pipeline_settings.topics.raw], idle_s=1)
    assert sorted(r.key or b"" for r in received) == sorted(
        f"trailers:P{i}".encode() for i in range(10)
    )


@pytest.mark.integration
def test_a_feed_broken_midway_keeps_what_was_published_and_says_where(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    kafka, topic = pipeline_settings.kafka, pipeline_settings.topics.raw
    items = "\n".join(RSS_ITEM.format(i=i) for i in range(300))  # past the id-sniffing sample
    path = tmp_path / "cut.xml"
    path.write_text(f'<rss xmlns:g="http://base.google.com/ns/1.0"><channel>{items}\n<item><g:id>')
    with pytest.raises(FeedReadError, match="not well-formed XML at line 301"):
        publish_file(kafka, topic, path, feed="cut", progress=False)
    received = read_topics(kafka, [topic], expected=300, timeout_s=30)
    assert sorted(r.key or b"" for r in received) == sorted(
        f"cut:P{i}".encode() for i in range(300)
    )


@pytest.mark.integration
def test_a_missing_topic_says_how_to_create_it(pipeline_settings: Settings) -> None:
    with pytest.raises(ReplayError, match="prodcat topics create"):
        check_topic(pipeline_settings.kafka, "no-such-topic")


def test_an_unreachable_broker_names_it_and_how_to_start_one(tmp_path: Path) -> None:
    csv_path, _ = write_feeds(tmp_path)
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    with pytest.raises(ReplayError) as error:
        publish_file(kafka, "products.raw", csv_path, feed="x", progress=False)
    assert kafka.bootstrap_servers in str(error.value)
    assert "prodcat dev kafka start" in str(error.value)


def test_events_are_keyed_by_a_plain_id_else_by_position() -> None:
    records = [
        {"Product ID": f"{i:05d}", "name": f"n{i}", "basic": {"productId": str(i)}}
        for i in range(5)
    ]
    assert source_id_path(records) == ("Product ID",)
    events = list(feed_events(records, "shop", limit=3))
    assert [e.key for e in events] == [b"shop:00000", b"shop:00001", b"shop:00002"]
    assert {e.feed for e in events} == {"shop"}
    assert json.loads(events[1].value) == records[1]

    nested = [{"basic": {"productId": str(i)}, "name": "n"} for i in range(5)]
    assert source_id_path(nested) == ("basic", "productId")
    not_ids = [{"id": "same", "sku": f"has space {i}", "name": f"n{i}"} for i in range(5)]
    assert source_id_path(not_ids) is None
    assert [e.key for e in feed_events(not_ids, "shop")][:2] == [b"shop:0", b"shop:1"]
