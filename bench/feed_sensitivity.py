"""How sensitive profile inference is to the sample it sees and to the feed's key names.

    .venv/bin/python bench/feed_sensitivity.py [--feeds a,b] [--quick]

Each development feed (``../shared/data/feeds``) is profiled from several samples and with its
keys disguised, and each profile is applied to every record of the feed (as
``prodcat feeds evaluate`` does). A run **passes** when the acceptance numbers of the
feed-profiles issue hold: title on >= 99% of rows, price on >= 95% where the feed has one, and
the category path equal to the truth on >= 95% of rows with a true path. Variants:

* ``first N``: the first N records (100, 300, 500, 1,000, 2,000, 5,000);
* ``from X%``: N records (300 and 1,000) starting a third, half or three quarters into the file;
* ``opaque N seed S``: every key, nested ones too, renamed ``c1``, ``c2``, ... and the keys of
  each record shuffled (1,000 and 300 records, two seeds);
* ``keys LANG``: the common keys (title, name, price, category, brand, description, URL, image,
  id) translated into another language.

``--formats`` instead writes each feed's first 1,500 records as other files a person might
be sent, and reads them back through :class:`~prodcat.streams.feeds.readers.FeedReader` (as
``prodcat feeds evaluate`` does); a run passes when it gives the same records and the same
title, price and category figures as the JSON lines themselves. The files: ``;``-separated
CSV (nested values as JSON text in their cells), XML of ``<product>`` elements (no ``<item>``;
lists as repeated ``<value>`` elements), a JSON object wrapping the products, and xlsx with
banner rows above the header.

Prints one line per failing run and a summary; ``--csv`` writes every run.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from prodcat.streams.feeds.evaluate import (
    DEV_FEEDS,
    TAXONOMY_FILE,
    FeedReport,
    evaluate_feed,
    load_truth,
)
from prodcat.streams.feeds.publish import feed_events
from prodcat.streams.feeds.taxonomy import load_google_taxonomy

# Common key words in other languages: a person's feed keeps the shape, the words change.
_TRANSLATIONS: dict[str, dict[str, str]] = {
    "fr": {
        "title": "titre",
        "name": "nom",
        "price": "prix",
        "category": "categorie",
        "brand": "marque",
        "description": "descriptif",
        "url": "lien",
        "image": "photo",
        "id": "identifiant",
    },
    "it": {
        "title": "titolo",
        "name": "nome",
        "price": "prezzo",
        "category": "categoria",
        "brand": "marca",
        "description": "descrizione",
        "url": "collegamento",
        "image": "immagine",
        "id": "codice",
    },
    "id": {
        "title": "judul",
        "name": "nama",
        "price": "harga",
        "category": "kategori",
        "brand": "merek",
        "description": "deskripsi",
        "url": "tautan",
        "image": "gambar",
        "id": "kode",
    },
    "pl": {
        "title": "tytul",
        "name": "nazwa",
        "price": "cena",
        "category": "kategoria",
        "brand": "marka",
        "description": "opis",
        "url": "adres",
        "image": "zdjecie",
        "id": "identyfikator",
    },
    "ja": {
        "title": "タイトル",
        "name": "名前",
        "price": "価格",
        "category": "カテゴリ",
        "brand": "ブランド",
        "description": "説明",
        "url": "リンク",
        "image": "画像",
        "id": "番号",
    },
}


def _rename(value: Any, rename: Callable[[str], str]) -> Any:
    if isinstance(value, dict):
        return {rename(key): _rename(item, rename) for key, item in value.items()}
    if isinstance(value, list):
        return [_rename(item, rename) for item in value]
    return value


def _opaque(records: list[Any], seed: int) -> list[Any]:
    names: dict[str, str] = {}
    rng = random.Random(seed)

    def rename(key: str) -> str:
        return names.setdefault(key, f"c{len(names) + 1}")

    out = []
    for record in records:
        renamed = _rename(record, rename)
        if isinstance(renamed, dict):
            items = list(renamed.items())
            rng.shuffle(items)
            renamed = dict(items)
        out.append(renamed)
    return out


def _translated(records: list[Any], words: Mapping[str, str]) -> list[Any]:
    def rename(key: str) -> str:
        out = key
        for english, other in words.items():
            if english in out.casefold():
                out = out.casefold().replace(english, other)
        return out

    return [_rename(record, rename) for record in records]


def _encode(records: list[Any]) -> list[bytes]:
    return [json.dumps(record, ensure_ascii=False).encode() for record in records]


def _passes(report: FeedReport, has_price: bool) -> bool:
    return (
        report.title_rate >= 0.99
        and (not has_price or report.price_rate >= 0.95)
        and report.category_rate >= 0.95
    )


def _variants(records: list[Any], quick: bool) -> list[tuple[str, list[bytes], int, int]]:
    """(name, lines, sample start, sample size): the sample is lines[start:start + size]."""
    n = len(records)
    plain = _encode(records)
    out: list[tuple[str, list[bytes], int, int]] = []
    for size in (300, 1000) if quick else (100, 300, 500, 1000, 2000, 5000):
        out.append((f"first {size}", plain, 0, size))
    for fraction in () if quick else (1 / 3, 1 / 2, 3 / 4):
        for size in (300, 1000):
            out.append((f"from {fraction:.0%} {size}", plain, int(n * fraction), size))
    for seed in (0,) if quick else (0, 1):
        opaque = _encode(_opaque(records, seed))
        for size in (1000, 300):
            out.append((f"opaque {size} seed {seed}", opaque, 0, size))
    for language, words in _TRANSLATIONS.items():
        out.append((f"keys {language}", _encode(_translated(records, words)), 0, 1000))
    return out


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def _tag(key: str) -> str:
    tag = "".join(c if c.isalnum() or c in "_-" else "_" for c in key)
    return tag if tag and not tag[0].isdigit() else f"f_{tag}"


def _xml(value: Any) -> str:
    from xml.sax.saxutils import escape

    if isinstance(value, dict):
        return "".join(f"<{_tag(k)}>{_xml(v)}</{_tag(k)}>" for k, v in value.items())
    if isinstance(value, list):
        return "".join(f"<value>{_xml(v)}</value>" for v in value)
    return escape("" if value is None else str(value))


def _write_formats(records: list[Any], folder: Path) -> dict[str, Path]:
    """The records as other files: name -> path."""
    import openpyxl

    keys = list(dict.fromkeys(key for record in records for key in record))
    out = {name: folder / f"feed.{name}" for name in ("csv", "xml", "json", "xlsx")}
    with out["csv"].open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(keys)
        writer.writerows([_cell(record.get(key)) for key in keys] for record in records)
    with out["xml"].open("w", encoding="utf-8") as handle:
        handle.write('<?xml version="1.0" encoding="utf-8"?>\n<catalog><products>\n')
        handle.writelines(f"<product>{_xml(record)}</product>\n" for record in records)
        handle.write("</products></catalog>\n")
    wrapped = {"meta": {"count": len(records)}, "data": {"products": records}}
    out["json"].write_text(json.dumps(wrapped, ensure_ascii=False), encoding="utf-8")
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Product export"])
    sheet.append(["generated for a partner"])
    sheet.append([])
    sheet.append(keys)
    for record in records:
        sheet.append([_cell(record.get(key)) for key in keys])
    book.save(out["xlsx"])
    return out


def _formats(args: argparse.Namespace, taxonomy: Any) -> list[dict[str, Any]]:
    import tempfile

    from prodcat.streams.feeds.readers import FeedReader

    rows: list[dict[str, Any]] = []
    for feed in args.feeds.split(","):
        lines = (args.data_dir / "feeds" / f"{feed}.jsonl").read_bytes().splitlines()[:1500]
        records = [json.loads(line) for line in lines]
        truth = load_truth(args.data_dir / "feeds" / f"{feed}.truth.jsonl")
        truth = {row: path for row, path in truth.items() if row < len(records)}
        base = evaluate_feed(lines, truth, feed=feed, google_taxonomy=taxonomy)
        with tempfile.TemporaryDirectory() as folder:
            for name, path in _write_formats(records, Path(folder)).items():
                with FeedReader(path) as reader:
                    read = [event.value for event in feed_events(reader, feed)]
                report = evaluate_feed(read, truth, feed=feed, google_taxonomy=taxonomy)
                # the same records and the same figures as from the JSON lines themselves
                ok = len(read) == len(lines) and all(
                    abs(getattr(report, rate) - getattr(base, rate)) < 1e-9
                    for rate in ("title_rate", "price_rate", "category_rate")
                )
                rows.append(
                    {
                        "feed": feed,
                        "variant": f"file {name}",
                        "title": round(report.title_rate, 4),
                        "price": round(report.price_rate, 4),
                        "category": round(report.category_rate, 4),
                        "pass": ok,
                    }
                )
                if not ok:
                    print(
                        f"FAIL {feed:22s} file {name:5s} records {len(read)} of {len(lines)} "
                        f"title {report.title_rate:.2%} price {report.price_rate:.2%} "
                        f"category {report.category_rate:.2%}",
                        flush=True,
                    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--feeds", default=",".join(DEV_FEEDS))
    parser.add_argument("--quick", action="store_true", help="fewer variants")
    parser.add_argument("--formats", action="store_true", help="other file formats instead")
    parser.add_argument("--csv", type=Path, default=None)
    args = parser.parse_args(argv)
    taxonomy_path = args.data_dir / TAXONOMY_FILE
    taxonomy = load_google_taxonomy(taxonomy_path) if taxonomy_path.exists() else None
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for feed in [] if args.formats else args.feeds.split(","):
        lines = (args.data_dir / "feeds" / f"{feed}.jsonl").read_bytes().splitlines()
        records = [json.loads(line) for line in lines]
        truth = load_truth(args.data_dir / "feeds" / f"{feed}.truth.jsonl")
        base: FeedReport | None = None
        for name, encoded, start, size in _variants(records, args.quick):
            # The sample is taken from ``start``: rotate so that evaluate_feed's first records
            # are the sample, and rotate the truth with it.
            shifted = encoded[start:] + encoded[:start]
            moved = {(row - start) % len(encoded): path for row, path in truth.items()}
            report = evaluate_feed(
                shifted, moved, feed=feed, sample_size=size, google_taxonomy=taxonomy
            )
            if base is None:
                base = report
            has_price = base.price_rate > 0.5
            ok = _passes(report, has_price)
            row = {
                "feed": feed,
                "variant": name,
                "title": round(report.title_rate, 4),
                "price": round(report.price_rate, 4),
                "category": round(report.category_rate, 4),
                "pass": ok,
            }
            rows.append(row)
            if not ok:
                print(
                    f"FAIL {feed:22s} {name:22s} title {report.title_rate:.2%} "
                    f"price {report.price_rate:.2%} category {report.category_rate:.2%}",
                    flush=True,
                )
    if args.formats:
        rows = _formats(args, taxonomy)
    failed = sum(not row["pass"] for row in rows)
    print(f"{len(rows) - failed} of {len(rows)} runs pass ({time.perf_counter() - started:.0f} s)")
    if args.csv:
        with args.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
