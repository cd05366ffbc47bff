"""Measuring feed profiles against truth: coverage per field and category-path match.

:func:`evaluate_feed` infers a profile from a feed's first records (as the stage does), applies
it to every record and compares each record's category path with the truth file
(``{"row": i, "path": [...]}`` per line; exact equality of every level, in order, counted only
on rows whose truth path is non-empty). ``python -m prodcat.streams.feeds.evaluate`` prints the
table for the development feeds in ``<data dir>/feeds``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from prodcat.streams.exceptions import NormalizationError
from prodcat.streams.feeds.extract import apply_profile, parse_event
from prodcat.streams.feeds.infer import choose_profile, infer_profiles
from prodcat.streams.feeds.profile import FeedProfile
from prodcat.streams.feeds.taxonomy import load_google_taxonomy

__all__ = [
    "DEV_FEEDS",
    "Agreement",
    "FeedReport",
    "compare_with_normalizer",
    "evaluate_feed",
    "load_truth",
    "main",
    "report_table",
]

DEV_FEEDS: Final = (
    "trailerparts_au_gmc",
    "systembolaget_se",
    "rewe_de",
    "auchan_pt",
    "continente_pt",
    "marketfiyati_tr",
    "vinmonopolet_no",
)
_ROLES: Final = (
    "title",
    "brand",
    "category_path",
    "description",
    "price",
    "list_price",
    "image_urls",
    "product_url",
    "source_id",
    "gender",
    "sizes",
    "retailer",
)
TAXONOMY_FILE: Final = "taxonomy/google_product_taxonomy_2021-09-21.txt"


@dataclass
class FeedReport:
    """What one feed's profile achieved on all of its records."""

    feed: str
    rows: int
    products: int
    coverage: dict[str, float]
    category_rows: int
    category_matches: int
    dead_letters: Counter[str]
    dead_with_text: int
    dead_with_truth: int
    profiles: list[FeedProfile]
    infer_seconds: float
    mismatches: list[tuple[int, list[str], list[str]]] = field(default_factory=list)

    @property
    def title_rate(self) -> float:
        return self.products / self.rows if self.rows else 0.0

    @property
    def price_rate(self) -> float:
        return self.coverage.get("price", 0.0) * self.products / self.rows if self.rows else 0.0

    @property
    def category_rate(self) -> float:
        return self.category_matches / self.category_rows if self.category_rows else 1.0


def load_truth(path: Path) -> dict[int, list[str]]:
    """Row -> true category path, from a ``*.truth.jsonl`` file."""
    truth: dict[int, list[str]] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                item = json.loads(line)
                truth[int(item["row"])] = [str(level) for level in item["path"]]
    return truth


def _has_text(raw: bytes) -> bool:
    try:
        record = parse_event(raw)
    except NormalizationError:
        return False
    stack: list[Any] = [record]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and any(char.isalpha() for char in item):
            return True
    return False


def evaluate_feed(
    lines: Sequence[bytes],
    truth: Mapping[int, list[str]] | None,
    *,
    feed: str,
    sample_size: int = 1000,
    google_taxonomy: Mapping[int, list[str]] | None = None,
) -> FeedReport:
    """Profile ``lines`` (raw JSON events) from the first ``sample_size``, apply it to all."""
    started = time.perf_counter()
    sample = []
    for raw in lines[:sample_size]:
        try:
            sample.append(parse_event(raw))
        except NormalizationError:
            continue
    profiles = list(infer_profiles(sample, feed=feed, google_taxonomy=google_taxonomy).values())
    infer_seconds = time.perf_counter() - started
    counts: Counter[str] = Counter()
    dead: Counter[str] = Counter()
    dead_text = dead_truth = products = category_rows = matches = 0
    mismatches: list[tuple[int, list[str], list[str]]] = []
    for row, raw in enumerate(lines):
        expected = (truth or {}).get(row) or []
        category_rows += bool(expected)
        try:
            record = parse_event(raw)
            profile = choose_profile(record, profiles)
            if profile is None:
                raise NormalizationError("no_title", "no profile")
            product = apply_profile(
                record, profile, feed=feed, key=None, seen_at_ms=0, google_taxonomy=google_taxonomy
            )
        except NormalizationError as exc:
            dead[exc.kind] += 1
            dead_text += _has_text(raw)
            dead_truth += bool(expected)
            continue
        products += 1
        for role in _ROLES:
            counts[role] += bool(product[role])
        if expected:
            if product["category_path"] == expected:
                matches += 1
            elif len(mismatches) < 20:
                mismatches.append((row, expected, product["category_path"]))
    coverage = {role: counts[role] / products if products else 0.0 for role in _ROLES}
    return FeedReport(
        feed,
        len(lines),
        products,
        coverage,
        category_rows,
        matches,
        dead,
        dead_text,
        dead_truth,
        profiles,
        infer_seconds,
        mismatches,
    )


def report_table(reports: Sequence[FeedReport]) -> str:
    """A Markdown table: feed, rows, title %, price %, category match %, dead letters."""
    lines = [
        "| feed | rows | title % | price % | category match % (rows) "
        "| brand % | image % | url % | dead letters |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in reports:
        dead = ", ".join(f"{kind} {count}" for kind, count in sorted(r.dead_letters.items())) or "0"
        lines.append(
            f"| {r.feed} | {r.rows:,} | {100 * r.title_rate:.2f} | {100 * r.price_rate:.2f} | "
            f"{100 * r.category_rate:.2f} ({r.category_rows:,}) | {100 * r.coverage['brand']:.1f} | "
            f"{100 * r.coverage['image_urls']:.1f} | {100 * r.coverage['product_url']:.1f} | {dead} |"
        )
    return "\n".join(lines)


_COMPARED: Final = ("title", "brand", "price", "category_path")


@dataclass
class Agreement:
    """How a profile's products compare with ``normalize_event``'s on the same events."""

    feed: str
    rows: int
    both: int
    only_profile: int
    only_normalizer: int
    same: dict[str, int]
    filled_profile: dict[str, int]
    filled_normalizer: dict[str, int]


def _compared(product: Mapping[str, Any], role: str) -> Any:
    value = product[role]
    return value["value"] if role == "price" and value is not None else value


def compare_with_normalizer(
    events: Sequence[tuple[bytes, bytes | None]], *, feed: str, sample_size: int = 1000
) -> Agreement:
    """Profile ``events`` ((value, key) pairs) from the first ``sample_size``; compare title,
    brand, price value and category path with :func:`normalize_event` on every event."""
    from prodcat.streams.normalize import normalize_event

    sample = []
    for raw, _ in events[:sample_size]:
        try:
            sample.append(parse_event(raw))
        except NormalizationError:
            continue
    profiles = list(infer_profiles(sample, feed=feed).values())
    same: Counter[str] = Counter()
    mine: Counter[str] = Counter()
    theirs: Counter[str] = Counter()
    both = only_profile = only_normalizer = 0
    for raw, key in events:
        new = old = None
        try:
            record = parse_event(raw)
            profile = choose_profile(record, profiles)
            if profile is not None:
                new = apply_profile(record, profile, feed=feed, key=key, seen_at_ms=0)
        except NormalizationError:
            new = None
        try:
            old = normalize_event(raw, feed=feed, key=key, seen_at_ms=0)
        except NormalizationError:
            old = None
        if new is None or old is None:
            only_profile += new is not None
            only_normalizer += old is not None
            continue
        both += 1
        for role in _COMPARED:
            a, b = _compared(new, role), _compared(old, role)
            same[role] += a == b
            mine[role] += bool(a)
            theirs[role] += bool(b)
    return Agreement(
        feed, len(events), both, only_profile, only_normalizer, dict(same), dict(mine), dict(theirs)
    )


def agreement_table(agreements: Sequence[Agreement]) -> str:
    """A Markdown table of :class:`Agreement` (per field: % equal; filled by profile / normaliser)."""
    lines = [
        "| feed | events | both normalised | only profile | only normalize_event | "
        + " | ".join(f"{role} equal % (filled: profile / old)" for role in _COMPARED)
        + " |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(_COMPARED),
    ]
    for a in agreements:
        cells = [
            f"{100 * a.same.get(role, 0) / max(1, a.both):.1f} "
            f"({100 * a.filled_profile.get(role, 0) / max(1, a.both):.0f} / "
            f"{100 * a.filled_normalizer.get(role, 0) / max(1, a.both):.0f})"
            for role in _COMPARED
        ]
        lines.append(
            f"| {a.feed} | {a.rows:,} | {a.both:,} | {a.only_profile} | {a.only_normalizer} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


@dataclass
class Throughput:
    """Pure-function rates on the same events in the same process (medians of ``runs``)."""

    feed: str
    events: int
    profile_per_s: float
    normalizer_per_s: float
    infer_seconds: float


def _rate(apply: Any, events: Sequence[tuple[bytes, bytes | None]]) -> float:
    started = time.perf_counter()
    for raw, key in events:
        with contextlib.suppress(NormalizationError):  # a dead letter is work done too
            apply(raw, key)
    return len(events) / (time.perf_counter() - started)


def bench_feed(
    events: Sequence[tuple[bytes, bytes | None]],
    *,
    feed: str,
    runs: int = 3,
    sample_size: int = 1000,
) -> Throughput:
    """Raw bytes -> Product: the profile's :class:`Extractor` against ``normalize_event``."""
    from prodcat.streams.feeds.extract import compile_profile
    from prodcat.streams.normalize import normalize_event

    started = time.perf_counter()
    sample = [parse_event(raw) for raw, _ in events[:sample_size]]
    profiles = infer_profiles(sample, feed=feed)
    infer_seconds = time.perf_counter() - started
    extractor = compile_profile(next(iter(profiles.values())))

    def new(raw: bytes, key: bytes | None) -> Any:
        return extractor.apply(raw, feed=feed, key=key, seen_at_ms=0)

    def old(raw: bytes, key: bytes | None) -> Any:
        return normalize_event(raw, feed=feed, key=key, seen_at_ms=0)

    profile_rates = [_rate(new, events) for _ in range(runs)]
    normalizer_rates = [_rate(old, events) for _ in range(runs)]
    return Throughput(
        feed,
        len(events),
        statistics.median(profile_rates),
        statistics.median(normalizer_rates),
        infer_seconds,
    )


def _default_data_dir() -> Path:
    configured = os.environ.get("PRODCAT_DATA_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate the development feeds and print the table (and each inferred profile with -v)."""
    parser = argparse.ArgumentParser(prog="python -m prodcat.streams.feeds.evaluate")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="shared data (default: $PRODCAT_DATA_DIR or ../shared/data)",
    )
    parser.add_argument(
        "--sample", type=int, default=1000, help="records the profile is inferred from"
    )
    parser.add_argument("--feeds", nargs="*", default=list(DEV_FEEDS))
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument(
        "--bench", action="store_true", help="pure throughput vs normalize_event (median of 3)"
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also compare with normalize_event on the demo's feeds",
    )
    args = parser.parse_args(argv)
    data_dir: Path = args.data_dir or _default_data_dir()
    taxonomy_path = data_dir / TAXONOMY_FILE
    taxonomy = load_google_taxonomy(taxonomy_path) if taxonomy_path.exists() else None
    reports = []
    for name in args.feeds:
        lines = (data_dir / "feeds" / f"{name}.jsonl").read_bytes().splitlines()
        truth = load_truth(data_dir / "feeds" / f"{name}.truth.jsonl")
        report = evaluate_feed(
            lines, truth, feed=name, sample_size=args.sample, google_taxonomy=taxonomy
        )
        reports.append(report)
        if args.verbose:
            for profile in report.profiles:
                print(json.dumps(profile.to_dict(), ensure_ascii=False, indent=1))
            for row, expected, got in report.mismatches[:10]:
                print(f"  row {row}: truth {expected} got {got}")
            print(f"  inferred in {report.infer_seconds:.2f}s")
    print(report_table(reports))
    others: dict[str, list[tuple[bytes, bytes | None]]] = {}
    if args.compare or args.bench:
        from prodcat.streams.replay import DEMO_FEEDS, dataset_events

        for feed in DEMO_FEEDS:
            others[feed] = [(e.value, e.key) for e in dataset_events(data_dir, [feed])]
    if args.compare:
        agreements = [
            compare_with_normalizer(pairs, feed=feed, sample_size=args.sample)
            for feed, pairs in others.items()
        ]
        print()
        print(agreement_table(agreements))
    if args.bench:
        first = DEMO_FEEDS[0]
        _print_bench(first, others[first], data_dir, args.feeds, args.sample)
    return 0


def _print_bench(
    demo: str,
    demo_events: list[tuple[bytes, bytes | None]],
    data_dir: Path,
    names: Sequence[str],
    sample: int,
) -> None:
    print()
    print("| feed | events | profile apply /s | normalize_event /s | ratio | inference s |")
    print("|---|---:|---:|---:|---:|---:|")
    feeds = {demo: demo_events}
    for name in names:
        lines = (data_dir / "feeds" / f"{name}.jsonl").read_bytes().splitlines()
        feeds[name] = [(line, None) for line in lines]
    for feed, pairs in feeds.items():
        t = bench_feed(pairs, feed=feed, sample_size=sample)
        print(
            f"| {feed} | {t.events:,} | {t.profile_per_s:,.0f} | {t.normalizer_per_s:,.0f} | "
            f"{t.profile_per_s / t.normalizer_per_s:.2f} | {t.infer_seconds:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
