"""`prodcat feeds ...`: inspect, normalize, evaluate on synthetic files; show/override on a broker."""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
from pathlib import Path

import pytest

import prodcat.schemas
from prodcat import demo
from prodcat.cli import main
from prodcat.core.settings import Settings, load_settings
from prodcat.schemas.serde import serde_for
from prodcat.streams.feeds.commands import (
    FeedCommandError,
    default_sample,
    feed_name,
    format_profile,
    override_profile,
    parse_override,
    profile_line,
)
from prodcat.streams.feeds.infer import infer_profile
from prodcat.streams.feeds.profile import ROLES, FeedProfile
from tests.streams.feeds.synthetic import catalogue

AVRO_FIELDS = [
    f["name"]
    for f in json.loads((Path(prodcat.schemas.__file__).parent / "product.avsc").read_text())[
        "fields"
    ]
]
BLANK_ROWS = (7, 31)  # rows with a price and a category but no title: dead letters


def write_csv(path: Path, n: int = 80) -> list[dict[str, str]]:
    """A German-headed, semicolon CSV: decimal commas, a ' > ' path, two rows without a title."""
    rows = []
    for i, item in enumerate(catalogue(n, seed=3)):
        rows.append(
            {
                "Artikelnummer": item.sku,
                "Bezeichnung": "" if i in BLANK_ROWS else item.title,
                "Hersteller": item.brand,
                "Preis": f"{item.price:.2f}".replace(".", ",") + " €",
                "Warengruppe": " > ".join(item.path),
                "Link": item.url,
            }
        )
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=";")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def write_nested_jsonl(path: Path, n: int = 60) -> list[dict[str, object]]:
    """Nested objects, categories one key per level in shuffled order."""
    records: list[dict[str, object]] = []
    for item in catalogue(n, seed=5):
        records.append(
            {
                "basic": {"code": item.sku, "shortName": item.title, "maker": item.brand},
                "classes": {"sub": item.path[1], "main": item.path[0], "leaf": item.path[2]},
                "prices": {"sales": item.price},
                "web": item.url,
            }
        )
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return records


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def json_lines(out: str) -> list[dict[str, object]]:
    assert out.endswith("\n")
    return [json.loads(line) for line in out.splitlines()]


# --- normalize: the JSON-lines contract -------------------------------------------------------------


def test_normalize_writes_one_line_per_record_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = write_csv(tmp_path / "shop.csv")
    code, out = run(capsys, "feeds", "normalize", str(tmp_path / "shop.csv"), "--feed", "shop")
    assert code == 0
    lines = json_lines(out)
    assert len(lines) == len(rows)
    products = serde_for("Product")
    for i, (line, row) in enumerate(zip(lines, rows, strict=True)):
        if i in BLANK_ROWS:
            assert list(line) == ["dead_letter"]
            dead = line["dead_letter"]
            assert isinstance(dead, dict) and sorted(dead) == ["kind", "message"]
            assert dead["kind"] == "no_title" and isinstance(dead["message"], str)
            continue
        assert list(line) == AVRO_FIELDS  # the Avro field names, in the schema's order
        assert line["title"] == row["Bezeichnung"]
        assert line["source_id"] == row["Artikelnummer"]
        assert line["brand"] == row["Hersteller"]
        assert line["category_path"] == row["Warengruppe"].split(" > ")
        assert line["price"] == {
            "value": float(row["Preis"].split()[0].replace(",", ".")),
            "currency": "EUR",
        }
        assert line["feed"] == "shop" and line["profile_version"] == 1
        assert products.decode(products.encode(line))["title"] == line["title"]  # valid Avro


def test_normalize_reads_stdin_and_nested_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    records = write_nested_jsonl(tmp_path / "nested.jsonl")
    data = (tmp_path / "nested.jsonl").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out = run(capsys, "feeds", "normalize", "-", "--feed", "nested")
    assert code == 0
    lines = json_lines(out)
    assert len(lines) == len(records)
    for line, record in zip(lines, records, strict=True):
        basic, classes = record["basic"], record["classes"]
        assert isinstance(basic, dict) and isinstance(classes, dict)
        assert line["title"] == basic["shortName"]
        assert line["category_path"] == [classes["main"], classes["sub"], classes["leaf"]]


def test_normalize_applies_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = write_csv(tmp_path / "shop.csv")
    code, out = run(
        capsys,
        "feeds", "normalize", str(tmp_path / "shop.csv"), "--feed", "shop",
        "--override", "title=Hersteller", "--override", "category=Warengruppe",
    )  # fmt: skip
    assert code == 0
    lines = json_lines(out)
    assert len(lines) == len(rows)  # the brand is now the title: no row without one
    assert [line["title"] for line in lines] == [row["Hersteller"] for row in rows]
    assert lines[0]["category_path"] == rows[0]["Warengruppe"].split(" > ")


def test_normalize_unknown_role_says_which_roles_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    write_csv(tmp_path / "shop.csv", n=30)
    with caplog.at_level(logging.ERROR, logger="prodcat"):
        code, out = run(
            capsys, "feeds", "normalize", str(tmp_path / "shop.csv"), "--feed", "shop",
            "--override", "headline=Bezeichnung",
        )  # fmt: skip
    assert code == 2 and out == ""
    assert "unknown role 'headline'" in caplog.text and ", ".join(ROLES) in caplog.text


def test_normalize_missing_file_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    code, out = run(capsys, "feeds", "normalize", str(tmp_path / "none.csv"), "--feed", "x")
    assert code == 2 and out == ""
    assert "no such file" in caplog.text


# --- inspect and evaluate ---------------------------------------------------------------------------


def test_inspect_shows_mapping_and_dead_letters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_csv(tmp_path / "shop.csv")
    code, out = run(capsys, "feeds", "inspect", str(tmp_path / "shop.csv"))
    assert code == 0
    assert "feed shop:" in out  # the name defaults to the file's
    assert "title        Bezeichnung  [text]" in out
    assert "category     Warengruppe  [delimited, delimiter '>' (spaced)]" in out
    assert "price        Preis  [money, currency EUR]" in out
    assert "evidence:" in out and "e.g." in out
    assert "applied to all 80 records: 78 products, 2 dead letters" in out
    assert "dead letters no_title: 2, e.g." in out
    assert f"  record {BLANK_ROWS[0]}: " in out
    assert "coverage (% of records): title 97.5%" in out


def test_evaluate_against_a_truth_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = write_csv(tmp_path / "shop.csv")
    truth = tmp_path / "shop.truth.jsonl"
    truth.write_text(
        "".join(
            json.dumps({"row": i, "path": row["Warengruppe"].split(" > ")}) + "\n"
            for i, row in enumerate(rows)
        )
    )
    code, out = run(capsys, "feeds", "evaluate", str(tmp_path / "shop.csv"), "--truth", str(truth))
    assert code == 0
    assert "title          97.5%" in out
    assert "price          97.5%" in out
    assert "category       97.5%" in out
    assert "97.50% of 80 records with a true path (78)" in out  # the two dead letters miss
    assert "dead letters: no_title 2 (2 with a true category path" in out
    assert "| shop | 80 | 97.50 | 97.50 | 97.50 (80) |" in out


def test_evaluate_without_truth_file_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    write_csv(tmp_path / "shop.csv", n=30)
    code, _ = run(
        capsys, "feeds", "evaluate", str(tmp_path / "shop.csv"), "--truth", str(tmp_path / "t")
    )
    assert code == 2 and "no such truth file" in caplog.text


# --- helpers: names, override specs, profiles as text, overrides ------------------------------------


def test_feed_name_and_sample() -> None:
    assert feed_name("data/shop.csv.gz", None) == "shop"
    assert feed_name("shop.csv", "mine") == "mine"
    with pytest.raises(FeedCommandError, match="--feed NAME"):
        feed_name("-", None)
    settings = load_settings()
    assert default_sample(settings) == max(settings.feeds.sample_size, settings.feeds.refine_at)


def test_parse_override() -> None:
    assert parse_override("category=a.b,c") == ("category", ("a.b", "c"))
    assert parse_override(r"title=Name\, long") == ("title", ("Name, long",))
    with pytest.raises(FeedCommandError, match="ROLE=PATH"):
        parse_override("title")
    with pytest.raises(FeedCommandError, match="names no source path"):
        parse_override("title=")


def profile_of(tmp_path: Path) -> FeedProfile:
    rows = write_csv(tmp_path / "shop.csv", n=60)
    return infer_profile(rows, feed="shop")


def test_override_profile_pins_a_role_and_bumps_the_version(tmp_path: Path) -> None:
    profile = profile_of(tmp_path)
    new, warnings = override_profile(profile, "title=Hersteller")
    assert warnings == []
    assert new.version == profile.version + 1
    assert new.reason == "override: title=Hersteller (text)"
    title = new.fields["title"]
    assert title.sources == ("Hersteller",) and title.confidence == 1.0
    assert title.evidence == "operator override" and new.overrides == {"title": title}
    assert FeedProfile.from_dict(new.to_dict()) == new


def test_override_category_kinds(tmp_path: Path) -> None:
    profile = profile_of(tmp_path)
    columns, _ = override_profile(profile, "category=Hersteller,Warengruppe")
    assert columns.fields["category"].kind == "columns"
    delimited, _ = override_profile(profile, "category=Warengruppe", delimiter=" / ")
    category = delimited.fields["category"]
    assert (category.kind, category.delimiter, category.split) == ("delimited", "/", "spaced")
    same, _ = override_profile(profile, "category=Warengruppe")  # keeps how it is read
    assert same.fields["category"].delimiter == profile.fields["category"].delimiter
    with pytest.raises(FeedCommandError, match="--delimiter"):
        override_profile(profile, "category=Link")
    with pytest.raises(FeedCommandError, match="does not read a category"):
        override_profile(profile, "category=Link", kind="money")
    with pytest.raises(FeedCommandError, match="reads a category, not price"):
        override_profile(profile, "price=Preis", kind="columns")


def test_override_warns_about_unseen_paths(tmp_path: Path) -> None:
    profile = profile_of(tmp_path)
    new, warnings = override_profile(profile, "price=Prise", scale=0.01)
    assert len(warnings) == 1 and "'Prise' was not seen" in warnings[0]
    assert new.fields["price"].scale == 0.01 and new.fields["price"].kind == "money"
    with pytest.raises(FeedCommandError, match="use one of title, brand"):
        override_profile(profile, "name=Bezeichnung")


def test_profile_as_text(tmp_path: Path) -> None:
    profile, _ = override_profile(profile_of(tmp_path), "brand=Hersteller")
    text = format_profile(profile)
    assert text.startswith("shop v2: from 60 records; override: brand=Hersteller")
    assert "  brand        Hersteller  [text]  confidence 1.00 (override)" in text
    line = profile_line(profile)
    assert line.startswith("shop  v2  title brand* category price")


# --- the demo's development feeds -------------------------------------------------------------------


def test_demo_picks_development_feeds_generically(tmp_path: Path) -> None:
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    for name in ("b.jsonl", "a.jsonl", "a.truth.jsonl", "README.md"):
        (feeds / name).write_text("{}\n")
    assert [p.name for p in demo.dev_feed_files(tmp_path, 5)] == ["a.jsonl", "b.jsonl"]
    assert [p.name for p in demo.dev_feed_files(tmp_path, 1)] == ["a.jsonl"]
    assert demo.dev_feed_files(tmp_path / "none", 1) == []


def test_demo_prints_a_local_profile_when_none_is_live(tmp_path: Path) -> None:
    write_csv(tmp_path / "shop.csv", n=40)
    lines = demo.dev_feed_profiles(load_settings(), [tmp_path / "shop.csv"], live={})
    assert "not on feeds.profiles yet" in lines[0]
    assert any("title        Bezeichnung" in line for line in lines)


# --- show and override through feeds.profiles (real broker) -----------------------------------------


@pytest.mark.integration
def test_override_and_show_round_trip_through_feeds_profiles(
    pipeline_settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prodcat.streams.feeds.store import latest_for, publish_profile, read_profiles

    monkeypatch.setattr("prodcat.cli.load_settings", lambda: pipeline_settings)
    profile = profile_of(tmp_path)
    publish_profile(pipeline_settings, profile)  # (the producer waits for the new topic's leader)
    code, out = run(capsys, "feeds", "override", "other", "title=Hersteller")
    assert code == 2 and out == ""  # no profile yet: says what to do
    assert "publish it first" in caplog.text and "feeds with a profile: shop" in caplog.text

    code, out = run(capsys, "feeds", "show")
    assert code == 0 and out.startswith("shop  v1  title brand category price")

    code, out = run(capsys, "feeds", "override", "shop", "title=Hersteller")
    assert code == 0 and "published v2 of shop" in out
    live = latest_for(read_profiles(pipeline_settings), "shop")
    assert [p.version for p in live] == [2]
    assert live[0].fields["title"].sources == ("Hersteller",)
    assert live[0].overrides["title"].evidence == "operator override"
    assert live[0].reason == "override: title=Hersteller (text)"
    assert live[0].fields["category"] == profile.fields["category"]  # the rest is unchanged

    code, out = run(capsys, "feeds", "show", "shop")
    assert code == 0
    assert "shop v2: from 60 records; override: title=Hersteller" in out
    assert "title        Hersteller  [text]  confidence 1.00 (override)" in out
    code, out = run(capsys, "feeds", "show")
    assert out.strip() == profile_line(live[0])
