"""``prodcat feeds ...``: the commands for the person adding a feed (docs/feeds.md).

* ``inspect FILE``: the profile inferred from the file's first records (each role's source paths,
  how they are read, confidence, evidence, examples), then what applying it to the whole file
  gives: coverage per field and the dead letters by kind, with examples.
* ``normalize FILE --feed NAME``: one JSON line per input record, in input order: the ``Product``
  (Avro field names) or ``{"dead_letter": {"kind": ..., "message": ...}}``.
* ``evaluate FILE --truth TRUTH``: coverage per field and category paths against a truth file
  (:mod:`prodcat.streams.feeds.evaluate`).
* ``show [FEED]`` and ``override FEED ROLE=PATH[,PATH...]``: the live profiles on
  ``feeds.profiles``, and an operator's pin of one role (a new version, published).

Files are read and serialised exactly as ``prodcat publish`` sends them (:func:`feed_events`) and
normalised with :func:`apply_profile`, the normalise stage's code path, with the profiles
inferred from the file's own first records.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from itertools import chain, islice
from pathlib import Path
from typing import Any, Final, TextIO

from tqdm import tqdm

from prodcat.core.settings import Settings
from prodcat.streams.exceptions import NormalizationError, StreamsError
from prodcat.streams.feeds.evaluate import FeedReport, evaluate_feed, load_truth, report_table
from prodcat.streams.feeds.events import parse_event
from prodcat.streams.feeds.extract import apply_profile
from prodcat.streams.feeds.flatten import parse_path
from prodcat.streams.feeds.infer import choose_profile, infer_profiles
from prodcat.streams.feeds.profile import (
    CATEGORY_KINDS,
    KINDS,
    ROLES,
    FeedProfile,
    FieldSource,
)
from prodcat.streams.feeds.publish import feed_events
from prodcat.streams.feeds.readers import FeedReader, Source
from prodcat.streams.feeds.taxonomy import configured_google_taxonomy
from prodcat.streams.replay import RawEvent

__all__ = [
    "FIELDS",
    "FeedCommandError",
    "Inspection",
    "default_sample",
    "evaluate_file",
    "feed_name",
    "format_profile",
    "inspect_file",
    "normalize_event",
    "normalize_file",
    "normalize_records",
    "normalized",
    "override_profile",
    "parse_override",
    "profile_line",
    "profiled_events",
    "publish_override",
    "show_profiles",
]

logger = logging.getLogger(__name__)

#: The fields ``inspect`` and ``evaluate`` report: (name shown, Product field).
FIELDS: Final = (
    ("title", "title"),
    ("brand", "brand"),
    ("price", "price"),
    ("category", "category_path"),
    ("description", "description"),
    ("images", "image_urls"),
    ("url", "product_url"),
    ("id", "source_id"),
)
_DEAD_EXAMPLES: Final = 3
_PROGRESS_DELAY_S: Final = 2.0  # a bar only for files that take a while
_ROLE_KINDS: Final = {
    "price": "money",
    "list_price": "money",
    "currency": "currency",
    "image_urls": "urls",
    "gender": "gender",
    "sizes": "sizes",
    "attributes": "attributes",
}
_COMMA: Final = re.compile(r"(?<!\\),")


class FeedCommandError(StreamsError):
    """A ``prodcat feeds`` command cannot do what was asked; the message says what to do."""


def default_sample(settings: Settings) -> int:
    """Records a file's profile is inferred from: as many as the stage's last profile sees.

    The stage infers from ``sample_size`` records and re-infers once at ``refine_at``; on the
    development feeds 500, 1,000 and 2,000 give the same numbers (docs/feeds.md), and the larger
    sample keeps a sorted feed from hiding its hierarchy.
    """
    return max(settings.feeds.sample_size, settings.feeds.refine_at)


def feed_name(source: str, feed: str | None) -> str:
    """``feed``, or the file's name without its extensions (``shop.csv.gz`` -> ``shop``)."""
    if feed is not None:
        if not feed.strip():
            raise FeedCommandError("the feed name is empty: give --feed NAME")
        return feed
    if source == "-":
        raise FeedCommandError("reading standard input: give the feed's name with --feed NAME")
    name = Path(source).name
    if name.endswith(".gz"):
        name = name[:-3]
    return Path(name).stem or name


def parse_override(spec: str) -> tuple[str, tuple[str, ...]]:
    """``ROLE=PATH[,PATH...]`` -> (role, paths); a comma inside a key is written ``\\,``."""
    role, sep, rest = spec.partition("=")
    role = role.strip()
    if not sep or not role:
        raise FeedCommandError(
            f"{spec!r} is not ROLE=PATH[,PATH...]: e.g. title=name or "
            "category=cat1,cat2 (roles: " + ", ".join(ROLES) + ")"
        )
    if role not in ROLES:
        raise FeedCommandError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    paths = tuple(p.strip().replace("\\,", ",") for p in _COMMA.split(rest) if p.strip())
    if not paths:
        raise FeedCommandError(
            f"{spec!r} names no source path: give the key(s) after '=', e.g. {role}=name "
            "(`prodcat feeds inspect FILE` shows the paths)"
        )
    for path in paths:
        try:
            parse_path(path)
        except ValueError as exc:
            raise FeedCommandError(f"{role}: cannot read the path {path!r} ({exc})") from exc
    return role, paths


def _overrides(specs: Iterable[str]) -> dict[str, tuple[str, ...]]:
    return dict(parse_override(spec) for spec in specs)


# --- a file, profiled like the stage profiles a feed ---------------------------------------------


@dataclass(frozen=True)
class ProfiledFile:
    """An open feed file: its profiles and every event (the held sample first) in file order."""

    reader: FeedReader
    feed: str
    profiles: list[FeedProfile]
    events: Iterator[RawEvent]
    sample: int
    taxonomy: Mapping[int, list[str]] | None


@contextmanager
def profiled_events(
    settings: Settings,
    source: Source,
    *,
    feed: str,
    sample: int | None = None,
    overrides: Mapping[str, Sequence[str]] | None = None,
    format: str | None = None,
    encoding: str | None = None,
) -> Iterator[ProfiledFile]:
    """Open ``source``, infer its profiles from its first ``sample`` events (held), and give
    every event as ``prodcat publish`` would send it."""
    size = sample or default_sample(settings)
    taxonomy = configured_google_taxonomy(settings.feeds.google_taxonomy, settings.data_dir)
    with FeedReader(source, format=format, encoding=encoding) as reader:
        events = feed_events(reader, feed)
        held = list(islice(events, size))
        records = []
        for event in held:
            try:
                records.append(parse_event(event.value))
            except NormalizationError:
                continue
        try:
            inferred = infer_profiles(
                records, feed=feed, google_taxonomy=taxonomy, overrides=overrides
            )
        except ValueError as exc:
            raise FeedCommandError(f"cannot apply the overrides: {exc}") from exc
        profiles = [replace(p, reason="inferred from the file") for p in inferred.values()]
        yield ProfiledFile(reader, feed, profiles, chain(held, events), len(held), taxonomy)


def normalize_event(
    event: RawEvent,
    profiles: Sequence[FeedProfile],
    *,
    feed: str,
    seen_at_ms: int,
    google_taxonomy: Mapping[int, list[str]] | None = None,
    keyed: bool = True,
) -> Mapping[str, Any]:
    """The ``Product`` dict of one event, or ``{"dead_letter": {"kind": ..., "message": ...}}``.

    ``keyed=False`` leaves the event's key out, so ``source_id`` is only the feed's own id (the
    stage falls back to the key, ``<feed>:<position>`` for a feed without ids)."""
    try:
        if len(profiles) == 1:
            profile: FeedProfile | None = profiles[0]
            raw_or_record: bytes | Mapping[str, Any] = event.value
        else:
            raw_or_record = parse_event(event.value)
            profile = choose_profile(raw_or_record, profiles)
        if profile is None:
            raise NormalizationError("no_title", "no profile: the file had no records")
        return apply_profile(
            raw_or_record,
            profile,
            feed=feed,
            key=event.key if keyed else None,
            seen_at_ms=seen_at_ms,
            google_taxonomy=google_taxonomy,
        )
    except NormalizationError as exc:
        return {"dead_letter": {"kind": exc.kind, "message": exc.message}}


def normalized(
    events: Iterable[RawEvent],
    profiles: Sequence[FeedProfile],
    *,
    feed: str,
    seen_at_ms: int,
    google_taxonomy: Mapping[int, list[str]] | None = None,
) -> Iterator[Mapping[str, Any]]:
    """:func:`normalize_event` of each event, in order."""
    for event in events:
        yield normalize_event(
            event, profiles, feed=feed, seen_at_ms=seen_at_ms, google_taxonomy=google_taxonomy
        )


def _progress(items: Iterator[Any], total: int | None, desc: str) -> Iterator[Any]:
    bar: Iterator[Any] = tqdm(
        items,
        total=total,
        desc=desc,
        unit=" rec",
        file=sys.stderr,
        delay=_PROGRESS_DELAY_S,
        disable=None,  # not on a pipe or a log file
    )
    return bar


def normalize_file(
    settings: Settings,
    source: Source,
    *,
    feed: str,
    out: TextIO,
    sample: int | None = None,
    overrides: Sequence[str] = (),
    format: str | None = None,
    encoding: str | None = None,
) -> Counter[str]:
    """Write one JSON line per record of ``source`` to ``out``; counts by outcome."""
    counts: Counter[str] = Counter()
    for result in normalize_records(
        settings,
        source,
        feed=feed,
        sample=sample,
        overrides=overrides,
        format=format,
        encoding=encoding,
    ):
        dead = result.get("dead_letter")
        counts[f"dead_letter/{dead['kind']}" if dead else "product"] += 1
        out.write(json.dumps(result, ensure_ascii=False, separators=(",", ":")))
        out.write("\n")
    return counts


def normalize_records(
    settings: Settings,
    source: Source,
    *,
    feed: str | None,
    sample: int | None = None,
    overrides: Sequence[str] = (),
    format: str | None = None,
    encoding: str | None = None,
) -> Iterator[Mapping[str, Any]]:
    """Each record of ``source`` read through the profiles inferred from it: a Product record or
    ``{"dead_letter": ...}``, in file order."""
    seen_at_ms = time.time_ns() // 1_000_000
    with profiled_events(
        settings,
        source,
        feed=feed_name(str(source), feed),
        sample=sample,
        overrides=_overrides(overrides),
        format=format,
        encoding=encoding,
    ) as opened:
        yield from normalized(
            opened.events,
            opened.profiles,
            feed=opened.feed,
            seen_at_ms=seen_at_ms,
            google_taxonomy=opened.taxonomy,
        )


def quiet_broken_pipe() -> None:
    """After ``prodcat feeds normalize ... | head``: send the rest of stdout nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


# --- inspect ---------------------------------------------------------------------------------------


@dataclass
class Inspection:
    """A file's profiles and what applying them to all of its records gave."""

    feed: str
    source: str
    file_format: str
    profiles: list[FeedProfile]
    sample: int
    rows: int = 0
    filled: Counter[str] = field(default_factory=Counter)
    dead: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)

    @property
    def products(self) -> int:
        return self.rows - sum(self.dead.values())

    def text(self) -> str:
        lines = [
            f"feed {self.feed}: {self.source} ({self.file_format}); "
            f"profile inferred from its first {self.sample:,} records",
        ]
        if len(self.profiles) > 1:
            lines.append(f"{len(self.profiles)} record shapes, one profile each")
        for profile in self.profiles:
            lines.extend(["", format_profile(profile)])
        lines.extend(
            [
                "",
                f"applied to all {self.rows:,} records: {self.products:,} products, "
                f"{sum(self.dead.values()):,} dead letters",
                "coverage (% of records): "
                + ", ".join(f"{name} {_pct(self.filled[name], self.rows)}" for name, _ in FIELDS),
            ]
        )
        if not self.dead:
            lines.append("dead letters: none")
        for kind, count in self.dead.most_common():
            lines.append(f"dead letters {kind}: {count:,}, e.g.")
            for row, message, raw in self.examples.get(kind, []):
                lines.append(f"  record {row}: {message}")
                lines.append(f"    {raw}")
        return "\n".join(lines)


def _pct(count: int, total: int) -> str:
    return f"{100 * count / total:.1f}%" if total else "-"


def _snippet(raw: bytes, limit: int = 160) -> str:
    text = raw.decode("utf-8", "replace")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def inspect_file(
    settings: Settings,
    source: Source,
    *,
    feed: str | None = None,
    sample: int | None = None,
    overrides: Sequence[str] = (),
    format: str | None = None,
    encoding: str | None = None,
) -> Inspection:
    """Profile ``source`` from its first records and apply the profiles to all of them."""
    name = feed_name(str(source), feed)
    with profiled_events(
        settings,
        source,
        feed=name,
        sample=sample,
        overrides=_overrides(overrides),
        format=format,
        encoding=encoding,
    ) as opened:
        report = Inspection(
            name, opened.reader.name, opened.reader.format, opened.profiles, opened.sample
        )
        events = _progress(opened.events, opened.reader.total, f"inspect {name}")
        for row, event in enumerate(events):
            result = normalize_event(
                event,
                opened.profiles,
                feed=name,
                seen_at_ms=0,
                google_taxonomy=opened.taxonomy,
                keyed=False,  # coverage of "id": the feed's own ids, as `evaluate` counts them
            )
            report.rows += 1
            dead = result.get("dead_letter")
            if dead:
                report.dead[dead["kind"]] += 1
                shown = report.examples.setdefault(dead["kind"], [])
                if len(shown) < _DEAD_EXAMPLES:
                    shown.append((row, dead["message"], _snippet(event.value)))
                continue
            for shown_name, product_field in FIELDS:
                report.filled[shown_name] += bool(result[product_field])
    return report


# --- evaluate ---------------------------------------------------------------------------------------


def evaluate_file(
    settings: Settings,
    source: Source,
    truth_path: Path,
    *,
    feed: str | None = None,
    sample: int | None = None,
    format: str | None = None,
    encoding: str | None = None,
) -> str:
    """Coverage per field and category-path match of ``source`` against ``truth_path``."""
    name = feed_name(str(source), feed)
    try:
        truth = load_truth(truth_path)
    except FileNotFoundError as exc:
        raise FeedCommandError(f"{truth_path}: no such truth file") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise FeedCommandError(
            f'{truth_path}: not a truth file ({exc}): one {{"row": i, "path": [level, ...]}} '
            "per line, row counted from 0 in the feed file"
        ) from exc
    taxonomy = configured_google_taxonomy(settings.feeds.google_taxonomy, settings.data_dir)
    size = sample or default_sample(settings)
    with FeedReader(source, format=format, encoding=encoding) as reader:
        events = _progress(feed_events(reader, name), reader.total, f"read {name}")
        lines = [event.value for event in events]
        label = f"{reader.name} ({reader.format})"
    report = evaluate_feed(lines, truth, feed=name, sample_size=size, google_taxonomy=taxonomy)
    return _evaluation(report, label, size)


def _evaluation(report: FeedReport, source: str, sample: int) -> str:
    rows = report.rows
    roles = {"category": "category_path", "images": "image_urls", "url": "product_url"}
    roles |= {"id": "source_id"}
    lines = [
        f"feed {report.feed}: {source}, {rows:,} records; profile inferred from the first "
        f"{min(sample, rows):,} ({report.infer_seconds:.2f}s)",
        "field        % of records",
        f"{'title':<12} {_pct(report.products, rows):>7}",
    ]
    for name, _ in FIELDS[1:]:
        filled = round(report.coverage[roles.get(name, name)] * report.products)
        lines.append(f"{name:<12} {_pct(filled, rows):>7}")
    lines.append(
        f"category path equal to the truth (every level, in order): "
        f"{100 * report.category_rate:.2f}% of {report.category_rows:,} records with a true path "
        f"({report.category_matches:,})"
    )
    dead = ", ".join(f"{kind} {count:,}" for kind, count in report.dead_letters.most_common())
    lines.append(
        f"dead letters: {dead or 'none'}"
        + (
            f" ({report.dead_with_truth:,} with a true category path, "
            f"{report.dead_with_text:,} with any text)"
            if dead
            else ""
        )
    )
    for row, expected, got in report.mismatches[:5]:
        truth, found = (json.dumps(path, ensure_ascii=False) for path in (expected, got))
        lines.append(f"  record {row}: truth {truth}; got {found}")
    lines.extend(["", report_table([report])])
    return "\n".join(lines)


# --- profiles, as text ------------------------------------------------------------------------------


def _how(source: FieldSource) -> str:
    parts = [source.kind]
    if source.delimiter is not None:
        parts.append(
            f"delimiter {source.delimiter!r}" + (f" ({source.split})" if source.split else "")
        )
    if source.kind == "money" and source.scale != 1.0:
        parts.append(f"scale {source.scale:g}")
    if source.currency:
        parts.append(f"currency {source.currency}")
    return ", ".join(parts)


def format_profile(profile: FeedProfile) -> str:
    """A profile as text: per role its source(s), how it is read, confidence, evidence, examples."""
    shape = f" shape {profile.shape}" if profile.shape else ""
    lines = [
        f"{profile.feed}{shape} v{profile.version}: from {profile.sample_size:,} records"
        + (f"; {profile.reason}" if profile.reason else ""),
        f"  keys: {', '.join(profile.keys) or '-'}",
    ]
    if profile.segment:
        path, names = profile.segment
        lines.append(f"  for retailer {', '.join(names)} (field {path}) only")
    for role in ROLES:
        source = profile.fields.get(role)
        if source is None:
            continue
        pinned = " (override)" if role in profile.overrides else ""
        joiner = " > " if source.kind == "columns" else ", "
        lines.append(
            f"  {role:<12} {joiner.join(source.sources)}  [{_how(source)}]  "
            f"confidence {source.confidence:.2f}{pinned}"
        )
        if source.evidence:
            lines.append(f"  {'':<12} evidence: {source.evidence}")
        if source.examples:
            lines.append(f"  {'':<12} e.g. " + " | ".join(repr(e) for e in source.examples))
    missing = [role for role in ROLES if role not in profile.fields]
    if missing:
        lines.append(f"  not found: {', '.join(missing)}")
    return "\n".join(lines)


def profile_line(profile: FeedProfile) -> str:
    """One line: key, version, roles (``*`` marks an override), why this version exists."""
    key = f"{profile.feed}/{profile.shape}" if profile.shape else profile.feed
    if profile.segment:
        key += f" (retailer {', '.join(profile.segment[1])})"
    roles = " ".join(
        role + ("*" if role in profile.overrides else "")
        for role in ROLES
        if role in profile.fields
    )
    return f"{key}  v{profile.version}  {roles}" + (
        f"  ({profile.reason})" if profile.reason else ""
    )


def _live(settings: Settings, feed: str) -> list[FeedProfile]:
    from prodcat.streams.feeds.store import latest_for, read_profiles

    profiles = read_profiles(settings)
    found = latest_for(profiles, feed)
    if not found:
        known = sorted({p.feed for p in profiles.values()})
        raise FeedCommandError(
            f"feed {feed!r} has no profile on {settings.topics.profiles}: publish it first "
            f"(`prodcat publish FILE --feed {feed}`) and let a worker running normalize profile "
            f"it (`prodcat worker normalize`); feeds with a profile: {', '.join(known) or 'none'}"
        )
    return found


def show_profiles(settings: Settings, feed: str | None = None) -> str:
    """The live profiles: one line per feed (and shape), or the full mapping of one feed."""
    from prodcat.streams.feeds.store import read_profiles

    if feed is not None:
        return "\n\n".join(format_profile(p) for p in _live(settings, feed))
    profiles = read_profiles(settings)
    if not profiles:
        return (
            f"no profiles on {settings.topics.profiles} yet: publish a feed "
            "(`prodcat publish FILE --feed NAME`) with a worker running normalize"
        )
    return "\n".join(profile_line(profiles[key]) for key in sorted(profiles))


# --- override ----------------------------------------------------------------------------------------


def _category_source(
    paths: tuple[str, ...],
    kind: str | None,
    delimiter: str | None,
    current: FieldSource | None,
) -> FieldSource:
    same = current if current is not None and current.sources == paths else None
    if kind is None:
        if delimiter is not None:
            kind = "delimited"
        elif len(paths) > 1:
            kind = "columns"
        elif same is not None:
            kind = same.kind
        else:
            raise FeedCommandError(
                f"category={paths[0]}: say how to read one field: --delimiter ' > ' (a path in "
                "one string), --kind list (a list of levels), --kind google_id (numeric Google "
                "category ids) or --kind columns (one level)"
            )
    if kind not in CATEGORY_KINDS:
        raise FeedCommandError(
            f"--kind {kind} does not read a category: use one of {', '.join(CATEGORY_KINDS)}"
        )
    if delimiter is not None and kind != "delimited":
        raise FeedCommandError(f"--delimiter goes with --kind delimited, not --kind {kind}")
    split = None
    if kind == "delimited":
        if delimiter is None and same is not None and same.delimiter:
            delimiter, split = same.delimiter, same.split
        elif delimiter is None:
            raise FeedCommandError("--kind delimited needs --delimiter D, e.g. --delimiter ' > '")
        elif delimiter.strip() != delimiter and delimiter.strip():
            delimiter, split = delimiter.strip(), "spaced"  # ' / ': only a spaced '/' splits
        else:
            split = "any"
    return FieldSource(
        "category",
        paths,
        kind=kind,
        delimiter=delimiter,
        split=split,
        confidence=1.0,
        evidence="operator override",
        examples=same.examples if same is not None else (),
    )


def _seen(profile: FeedProfile, path: str) -> bool:
    known = {p for s in (*profile.fields.values(), *profile.overrides.values()) for p in s.sources}
    if path in known:
        return True
    steps = parse_path(path)
    top = steps[0] if steps and isinstance(steps[0], str) else None
    return top is not None and (
        top in profile.keys or any(parse_path(p)[:1] == (top,) for p in known)
    )


def override_profile(
    profile: FeedProfile,
    spec: str,
    *,
    kind: str | None = None,
    delimiter: str | None = None,
    scale: float | None = None,
    currency: str | None = None,
) -> tuple[FeedProfile, list[str]]:
    """The next version of ``profile`` with ``ROLE=PATH[,PATH...]`` pinned, and warnings."""
    role, paths = parse_override(spec)
    current = profile.fields.get(role)
    same = current if current is not None and current.sources == paths else None
    if role == "category":
        source = _category_source(paths, kind, delimiter, current)
    else:
        if delimiter is not None:
            raise FeedCommandError("--delimiter reads a category path: leave it out for " + role)
        chosen = kind or (same.kind if same is not None else _ROLE_KINDS.get(role, "text"))
        if chosen not in KINDS:
            raise FeedCommandError(
                f"--kind {chosen} reads a category, not {role}: use one of {', '.join(KINDS)}"
            )
        money = chosen == "money"
        source = FieldSource(
            role,
            paths,
            kind=chosen,
            scale=scale if scale is not None else (same.scale if same and money else 1.0),
            currency=currency or (same.currency if same else None),
            confidence=1.0,
            evidence="operator override",
            examples=same.examples if same is not None else (),
        )
    warnings = [
        f"{role}: the path {path!r} was not seen in the sample of v{profile.version} (its keys: "
        f"{', '.join(profile.keys) or 'none'}); check its spelling with `prodcat feeds show "
        f"{profile.feed}` or `prodcat feeds inspect FILE`"
        for path in paths
        if not _seen(profile, path)
    ]
    fields = {**profile.fields, role: source}
    overrides = {**profile.overrides, role: source}
    detail = f"{role}={','.join(paths)} ({_how(source)})"
    new = replace(
        profile,
        fields={r: fields[r] for r in ROLES if r in fields},
        overrides={r: overrides[r] for r in ROLES if r in overrides},
        version=profile.version + 1,
        reason=f"override: {detail}",
    )
    return new, warnings


def publish_override(
    settings: Settings,
    feed: str,
    spec: str,
    *,
    shape: str | None = None,
    kind: str | None = None,
    delimiter: str | None = None,
    scale: float | None = None,
    currency: str | None = None,
) -> FeedProfile:
    """Read ``feed``'s live profile, pin ``spec`` in it, publish the next version; return it.

    A feed with several profiles (record shapes, retailers) gets its other current profiles
    published again at the same next version, unchanged: a worker takes a newer version as a
    new generation of every profile of the feed, so none of them is dropped."""
    from prodcat.streams.feeds.store import publish_profile

    live = _live(settings, feed)
    newest = max(p.version for p in live)
    found = [p for p in live if p.version == newest]  # older shapes are gone from the feed
    if shape is not None:
        chosen = [p for p in found if p.shape == shape]
        if not chosen:
            shapes = ", ".join(p.shape or '""' for p in found)
            raise FeedCommandError(f"feed {feed} has no shape {shape!r}: its shapes are {shapes}")
        profile = chosen[0]
    elif len(found) > 1:
        shapes = ", ".join(p.shape for p in found)
        raise FeedCommandError(
            f"feed {feed} has {len(found)} record shapes ({shapes}): say which with --shape S "
            f"(`prodcat feeds show {feed}` shows each)"
        )
    else:
        profile = found[0]
    new, warnings = override_profile(
        profile, spec, kind=kind, delimiter=delimiter, scale=scale, currency=currency
    )
    for warning in warnings:
        logger.warning("%s", warning)
    publish_profile(settings, new)
    for other in found:
        if other.shape != profile.shape:
            reason = f"carried over: override of shape {profile.shape or '(main)'}"
            publish_profile(settings, replace(other, version=new.version, reason=reason))
    return new
