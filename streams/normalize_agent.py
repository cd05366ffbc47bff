"""The normalisation agent: ``products.raw`` (bytes, any JSON) → ``products.normalized`` (Avro).

Every feed is read through its **profile** (:mod:`prodcat.streams.feeds`), inferred from the
content of its first records. :class:`NormalizeAgent` keeps a :class:`ProfileBook`: a new feed's
first records are held (unanswered, so not committed: a crash re-delivers them) until
``feeds.sample_size`` of them arrived or ``feeds.wait_s`` passed; then the profile is inferred,
published on ``feeds.profiles`` (acknowledged before the products that carry its version are
committed) and the held records are normalised with it. Records that stop fitting their profile
are held as well and either trigger a re-profile (a new version) or are released after
``wait_s`` (see :mod:`prodcat.streams.feeds.book`). The worker follows ``feeds.profiles``
(:mod:`prodcat.streams.profile_follower`), so operator overrides and other workers' profiles are
adopted while it runs.

``NormalizeStage.process`` (one raw event → its outgoing record; pure, testable without Kafka)
does the per-record work; the stage runtime (:mod:`prodcat.streams.runtime`) sends the outputs
and commits only what every output answers (at-least-once): every input ends as a product or a
dead letter.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka import TopicPartition

from prodcat.core.metrics import FeedMetrics, StageMetrics
from prodcat.core.settings import Settings, TopicNames
from prodcat.schemas.exceptions import RegistryError, SerdeError
from prodcat.schemas.serde import AvroSerde, serde_for
from prodcat.streams.deadletter import DeadLetters, dead_letter
from prodcat.streams.exceptions import NormalizationError
from prodcat.streams.feeds.book import BookSettings, ProfileBook
from prodcat.streams.feeds.drift import fits
from prodcat.streams.feeds.events import parse_event
from prodcat.streams.feeds.extract import apply_profile
from prodcat.streams.feeds.infer import choose_profile, infer_profiles
from prodcat.streams.feeds.profile import FeedProfile, FieldSource
from prodcat.streams.feeds.store import encode_profile, profile_key, profile_serde
from prodcat.streams.feeds.taxonomy import configured_google_taxonomy
from prodcat.streams.normalize import normalize_event
from prodcat.streams.profile_follower import ProfileFollower
from prodcat.streams.runtime import StageHandler, register_stage
from prodcat.streams.stage import (
    FEED_HEADER,
    SOURCE_HEADER,
    Input,
    Outgoing,
    Outputs,
    Position,
    header_map,
    record_batch,
    source_headers,
)

__all__ = [
    "SOURCE_HEADER",
    "STAGE",
    "NormalizeAgent",
    "NormalizeStage",
    "build_stage",
    "register_normalize",
]

logger = logging.getLogger(__name__)

STAGE = "normalize"


class NormalizeStage:
    """Turns one raw input message into its outgoing record.

    Never raises because of the input; only an unreachable schema registry (RegistryError) escapes.
    """

    def __init__(
        self,
        topics: TopicNames,
        products: AvroSerde,
        dead_letters: AvroSerde,
        worker: str | None = None,
    ) -> None:
        self.topics = topics
        self.products = products
        self.dead_letters = dead_letters
        self.worker = worker

    def process(
        self,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
        topic: str,
        partition: int,
        offset: int,
        now_ms: int,
        profile: FeedProfile | None = None,
        record: Mapping[str, Any] | None = None,
        google_taxonomy: Mapping[int, list[str]] | None = None,
        seen: Callable[[str | None, Mapping[str, Any] | None], None] | None = None,
    ) -> Outgoing:
        """The product (or dead letter) of one input: with ``profile`` read through it (from
        ``record`` when the caller has parsed the value already), else by the profile-free
        normaliser. ``seen(feed, product or None)`` is told every outcome (metrics)."""
        out_headers, feed = source_headers(headers, topic, partition, offset)
        source = Position(topic, partition, offset)
        product: Mapping[str, Any] | None = None
        try:
            if profile is not None:
                product = apply_profile(
                    record if record is not None else value or b"",
                    profile,
                    feed=feed,
                    key=key,
                    seen_at_ms=now_ms,
                    google_taxonomy=google_taxonomy,
                )
            else:
                product = normalize_event(value or b"", feed=feed, key=key, seen_at_ms=now_ms)
            encoded = self.products.encode(product)
        except NormalizationError as exc:
            kind, message = exc.kind, str(exc)
        except RegistryError:
            raise  # infrastructure, not input: the batch is retried, nothing is dead-lettered
        except SerdeError as exc:
            kind, message = "encode_error", str(exc)
            logger.error(
                "normalised record failed its schema at %s/%d/%d: %s", topic, partition, offset, exc
            )
        except Exception as exc:  # a bug must not stop the stream: dead-letter and log it
            kind, message = "internal_error", f"{type(exc).__name__}: {exc}"
            logger.exception(
                "normalisation failed unexpectedly at %s/%d/%d", topic, partition, offset
            )
        else:
            if seen is not None:
                seen(feed, product)
            return Outgoing(
                self.topics.normalized,
                product["product_id"].encode(),
                encoded,
                out_headers,
                feed,
                None,
                None,
                source,
            )
        if seen is not None:
            seen(feed, None)
        return self._dead_letter(
            key, value, header_map(headers), out_headers, feed, source, now_ms, kind, message
        )

    def dead(self, record: Input, now_ms: int, kind: str, message: str) -> Outgoing:
        """The dead letter of ``record`` with reason ``kind``."""
        hdrs = header_map(record.headers)
        out_headers, feed = source_headers(hdrs, record.topic, record.partition, record.offset)
        source = Position(record.topic, record.partition, record.offset)
        return self._dead_letter(
            record.key, record.value, hdrs, out_headers, feed, source, now_ms, kind, message
        )

    def _dead_letter(
        self,
        key: bytes | None,
        value: bytes | None,
        hdrs: Mapping[str, bytes],
        out_headers: list[tuple[str, bytes]],
        feed: str | None,
        source: Position,
        now_ms: int,
        kind: str,
        message: str,
    ) -> Outgoing:
        letter = dead_letter(
            stage=STAGE,
            error_kind=kind,
            message=message,
            key=key,
            value=value,
            headers=hdrs,
            feed=feed,
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
            worker=self.worker,
            now_ms=now_ms,
        )
        return Outgoing(
            self.topics.deadletter,
            key,
            self.dead_letters.encode(letter),
            out_headers,
            feed,
            kind,
            None,
            source,
        )


def build_stage(settings: Settings) -> NormalizeStage:
    registry = settings.serde.registry_url
    return NormalizeStage(
        settings.topics,
        serde_for("Product", registry, topic=settings.topics.normalized),
        serde_for("DeadLetter", registry, topic=settings.topics.deadletter),
        worker=f"{socket.gethostname()}:{settings.worker.app_id}",
    )


@dataclass(slots=True)
class _FeedSeries:
    """One feed's labelled metric children (``labels()`` costs ~1 µs a call) and what the current
    batch added to them (applied once per batch: a child's ``inc`` takes a lock). ``filled``
    counts products per coverage field, in the order of ``_COVERAGE``."""

    label: str
    records: Any
    fields: list[Any] = field(default_factory=lambda: [None] * len(_COVERAGE))
    version: Any = None
    seen: int = 0
    filled: list[int] = field(default_factory=lambda: [0] * len(_COVERAGE))
    latest_version: int | None = None


@dataclass
class _Held:
    """An input held until its feed's profile is ready (or re-made)."""

    record: Input
    parsed: Mapping[str, Any]


class NormalizeAgent(StageHandler):
    """``NormalizeStage`` over micro-batches of ``products.raw``, reading each feed through its
    profile (see the module docstring)."""

    def __init__(
        self,
        stage: NormalizeStage,
        topic: str,
        book: ProfileBook,
        *,
        profiles_topic: str,
        profile_serde: AvroSerde,
        google_taxonomy: Mapping[int, list[str]] | None = None,
        metrics: StageMetrics | None = None,
        follower: ProfileFollower | None = None,
    ) -> None:
        super().__init__(
            STAGE,
            topic,
            DeadLetters(
                stage.topics.deadletter, stage.dead_letters, stage=STAGE, worker=stage.worker
            ),
        )
        self.stage = stage
        self.book = book
        self.profiles_topic = profiles_topic
        self.profile_serde = profile_serde
        self.google_taxonomy = google_taxonomy
        # Per-feed series, labelled as the stage's other series are (bounded, validated names).
        self.feeds: FeedMetrics | None = metrics.feeds() if metrics is not None else None
        self._feed_label: Callable[[str | None], str] = (
            metrics.feed_label if metrics is not None else _no_label
        )
        if follower is not None:
            self.followers.append(follower)
        self.held: dict[str, list[_Held]] = {}
        self._series: dict[str | None, _FeedSeries] = {}

    @classmethod
    def for_settings(
        cls, stage: NormalizeStage, settings: Settings, metrics: StageMetrics | None = None
    ) -> NormalizeAgent:
        """The agent of a worker: profiles inferred with the settings' Google taxonomy, followed
        on ``feeds.profiles``."""
        cfg = settings.feeds
        taxonomy = configured_google_taxonomy(cfg.google_taxonomy, settings.data_dir)

        def infer(
            records: Sequence[Mapping[str, Any]], feed: str, overrides: Mapping[str, FieldSource]
        ) -> Mapping[str, FeedProfile]:
            return infer_profiles(records, feed=feed, google_taxonomy=taxonomy, overrides=overrides)

        book = ProfileBook(
            infer,
            BookSettings(
                sample_size=cfg.sample_size,
                wait_s=cfg.wait_s,
                quiet_s=cfg.quiet_s,
                min_quiet_sample=cfg.min_quiet_sample,
                refine_at=cfg.refine_at,
                min_misfits=cfg.min_misfits,
                drift_share=cfg.drift_share,
            ),
        )
        agent = cls(
            stage,
            settings.topics.raw,
            book,
            profiles_topic=settings.topics.profiles,
            profile_serde=profile_serde(settings),
            google_taxonomy=taxonomy,
            metrics=metrics,
        )
        agent.followers.append(ProfileFollower(settings, agent.adopt, serde=agent.profile_serde))
        return agent

    # --- lifecycle ----------------------------------------------------------------------------

    def adopt(self, profile: FeedProfile) -> None:
        """A profile read from ``feeds.profiles`` (an override, another worker's, our own)."""
        if self.book.adopt(profile):
            logger.info("feed %s: profile version %d adopted", profile.feed, profile.version)
            self._count_profile(profile, "adopted")

    def on_revoked(self, partitions: Set[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        for feed, held in list(self.held.items()):
            kept = [h for h in held if (h.record.topic, h.record.partition) not in revoked]
            if kept:
                self.held[feed] = kept
            else:
                del self.held[feed]
                self.book.released(feed)
            self._gauge_held(feed)

    # --- the stage ----------------------------------------------------------------------------

    def process(self, batch: Sequence[Input]) -> Outputs:
        now_ms = time.time_ns() // 1_000_000
        outgoing: list[Outgoing] = []
        held: list[Position] = []
        # A feed's profiles change only between batches (settled below, or adopted).
        book_profiles: dict[str, list[FeedProfile]] = {}
        for record in batch:
            feed = _feed_of(record)
            try:
                parsed = parse_event(record.value or b"")
            except NormalizationError:
                outgoing.append(self._answer(record, now_ms, None, None))  # its dead letter
                continue
            profiles = book_profiles.get(feed)
            if profiles is None:
                profiles = book_profiles[feed] = self.book.profiles(feed)
            profile = choose_profile(parsed, profiles) if profiles else None
            if profile is None or not fits(parsed, profile):
                self.book.hold(feed, parsed)
                self.held.setdefault(feed, []).append(_Held(record, parsed))
                held.append(Position(record.topic, record.partition, record.offset))
                continue
            self.book.fitted(feed, parsed)
            outgoing.append(self._answer(record, now_ms, profile, parsed))
        outgoing.extend(self._settle_feeds(now_ms))
        self._flush_metrics()
        return Outputs.of(outgoing, held=held)

    def on_tick(self, now: float) -> Outputs | None:
        outgoing = self._settle_feeds(time.time_ns() // 1_000_000)
        self._flush_metrics()
        return Outputs.of(outgoing) if outgoing else None

    def _settle_feeds(self, now_ms: int) -> list[Outgoing]:
        """Profiles that are due (inferred, re-made, refined) and the held records they free."""
        out: list[Outgoing] = []
        for feed, action in self.book.due_feeds().items():
            new: list[FeedProfile] = []
            if action == "infer":
                new = self.book.infer(feed)
            elif action == "reprofile":
                new = self.book.reprofile(feed)
            elif action == "refine":
                new = self.book.refine(feed)
            for profile in new:
                logger.info(
                    "feed %s: profile version %d (%s)", feed, profile.version, profile.reason
                )
                out.append(self._profile_output(profile, now_ms))
                self._count_profile(profile, action)
            if action != "refine":
                out.extend(self._release(feed, now_ms))
        return out

    def _release(self, feed: str, now_ms: int) -> list[Outgoing]:
        profiles = self.book.profiles(feed)
        out = []
        for item in self.held.pop(feed, []):
            profile = choose_profile(item.parsed, profiles) if profiles else None
            if profile is not None and not fits(item.parsed, profile):
                profile = None  # a stray record: the profile-free normaliser says what it lacks
            out.append(self._answer(item.record, now_ms, profile, item.parsed))
        self.book.released(feed)
        self._gauge_held(feed)
        return out

    def _answer(
        self,
        record: Input,
        now_ms: int,
        profile: FeedProfile | None,
        parsed: Mapping[str, Any] | None,
    ) -> Outgoing:
        return self.stage.process(
            key=record.key,
            value=record.value,
            headers=record.headers,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            now_ms=now_ms,
            profile=profile,
            record=parsed if profile is not None else None,
            google_taxonomy=self.google_taxonomy,
            seen=self._seen if self.feeds is not None else None,
        )

    def _profile_output(self, profile: FeedProfile, now_ms: int) -> Outgoing:
        return Outgoing(
            self.profiles_topic,
            profile_key(profile),
            encode_profile(self.profile_serde, profile, now_ms=now_ms),
            [],
            profile.feed,
            None,
            skipped=PROFILE_OUTPUT,
        )

    def observe(
        self, metrics: StageMetrics, outputs: Outputs, seconds: float, oldest_ts: float | None
    ) -> None:
        answers = Outputs([o for o in outputs.oks if o.skipped != PROFILE_OUTPUT], outputs.dead)
        record_batch(metrics, answers, seconds, oldest_ts)

    # --- metrics ------------------------------------------------------------------------------

    def _seen(self, feed: str | None, product: Mapping[str, Any] | None) -> None:
        series = self._series.get(feed)
        if series is None:  # labelled children looked up once per feed, not per record
            assert self.feeds is not None
            label = self._feed_label(feed)
            series = self._series[feed] = _FeedSeries(label, self.feeds.records.labels(label))
        series.seen += 1
        if product is None:
            return
        # Unrolled over _COVERAGE: this runs once per product.
        get, filled = product.get, series.filled
        if get("title"):
            filled[0] += 1
        if get("brand"):
            filled[1] += 1
        if get("category_path"):
            filled[2] += 1
        if get("price") is not None:
            filled[3] += 1
        if get("description"):
            filled[4] += 1
        if get("image_urls"):
            filled[5] += 1
        if get("product_url"):
            filled[6] += 1
        version = get("profile_version")
        if version is not None:
            series.latest_version = version

    def _flush_metrics(self) -> None:
        """Apply what this batch counted to the per-feed series."""
        if self.feeds is None:
            return
        for series in self._series.values():
            if series.seen:
                series.records.inc(series.seen)
                series.seen = 0
            filled, children = series.filled, series.fields
            for index, count in enumerate(filled):
                if not count:
                    continue
                child = children[index]
                if child is None:  # made when first filled, as before
                    name = _COVERAGE[index]
                    child = children[index] = self.feeds.fields.labels(series.label, name)
                child.inc(count)
                filled[index] = 0
            if series.latest_version is not None:
                if series.version is None:
                    series.version = self.feeds.profile_version.labels(series.label)
                series.version.set(series.latest_version)
                series.latest_version = None

    def _count_profile(self, profile: FeedProfile, why: str) -> None:
        if self.feeds is not None:
            label = self._feed_label(profile.feed)
            self.feeds.profiles.labels(label, why).inc()
            self.feeds.profile_version.labels(label).set(profile.version)

    def _gauge_held(self, feed: str) -> None:
        if self.feeds is not None:
            self.feeds.held.labels(self._feed_label(feed)).set(len(self.held.get(feed, ())))


#: ``Outgoing.skipped`` of a profile published by the stage: not the answer to an input.
PROFILE_OUTPUT = "feed_profile"


def _no_label(feed: str | None) -> str:
    return feed or "unknown"


def _feed_of(record: Input) -> str:
    for name, value in record.headers or ():
        if name == FEED_HEADER and value:
            return bytes(value).decode("utf-8", "replace")
    return "unknown"


#: The coverage series' field names, in the order ``NormalizeAgent._seen`` counts them (title,
#: brand, category_path, price (present), description, image_urls, product_url).
_COVERAGE: tuple[str, ...] = ("title", "brand", "category", "price", "description", "image", "url")


def register_normalize(app: faust.App, settings: Settings, metrics: StageMetrics) -> Any:
    """Declare normalisation on ``app``: a task of the stage runtime."""
    agent = NormalizeAgent.for_settings(build_stage(settings), settings, metrics)
    return register_stage(app, settings, metrics, agent)
