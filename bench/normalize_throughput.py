"""Normalisation throughput through real Kafka (one worker process) vs the pure function, same run.

    .venv/bin/python bench/normalize_throughput.py [--feeds flipkart,dev] [--events 100000] [--runs 3]
        [--guarantees at_least_once,exactly_once]

``--feeds``: comma-separated event sets, each measured on its own raw topic: ``flipkart`` (the
20,000 Flipkart rows), ``dev`` (the seven development feeds of ``<data_dir>/feeds/*.jsonl``, one
file after the other), or one development feed by name (e.g. ``rewe_de``). Every set is cycled to
``--events`` events; development-feed records are the JSON bytes ``prodcat publish`` sends
(:func:`prodcat.streams.feeds.publish.feed_events`).

1. Starts a fresh single-node broker (var/bench/kafka) and fills one 4-partition raw topic per set.
2. Profiles: per feed, ``infer_profiles`` on its first ``feeds.sample_size`` records (what the stage
   holds), timed separately (ms per 1,000 records).
3. Pure function: ``apply_profile`` with those profiles + Avro encoding of the Product, per feed,
   over the set's events (``choose_profile`` per record only where a feed has several shapes);
   baseline: the old ``normalize_event`` + encoding on the same events, same process. Medians of
   ``--runs``; a set's rate is its events over the summed per-feed times of a run. Also per
   CPU-second of this process (``time.process_time``): on a shared machine the worker's events per
   CPU-second against this says what the stage costs beyond the function, whatever the load.
4. Worker: per run, fresh output topics and a fresh ``feeds.profiles`` topic (so every run infers
   its profiles as a new worker does); one ``prodcat worker normalize`` process drains the backlog.
   Rate = outputs / (last output timestamp - first output timestamp), so start-up and group join
   are excluded (holding the first records and inferring the profile are not); CPU = the worker's
   user+system seconds from ready to the last output.
   With ``--guarantees`` naming both, every run measures one worker of each guarantee, alternating
   (``PRODCAT_WORKER__GUARANTEE``; exactly-once: a transaction per input partition and batch), and
   the two medians are compared.
Prints medians, the worker/pure ratio, and the load average before and after each phase.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import run_settings

from prodcat import localkafka
from prodcat.core.settings import KafkaSettings, Settings, TopicNames, load_settings
from prodcat.schemas.serde import serde_for
from prodcat.streams.exceptions import NormalizationError
from prodcat.streams.feeds.events import parse_event
from prodcat.streams.feeds.extract import apply_profile
from prodcat.streams.feeds.infer import choose_profile, infer_profiles
from prodcat.streams.feeds.profile import FeedProfile
from prodcat.streams.feeds.publish import feed_events
from prodcat.streams.feeds.readers import FeedReader
from prodcat.streams.feeds.taxonomy import configured_google_taxonomy
from prodcat.streams.normalize import normalize_event
from prodcat.streams.readback import read_topics
from prodcat.streams.replay import RawEvent, dataset_events, replay
from prodcat.streams.topics import ensure_topics, topic_specs
from prodcat.streams.worker_process import start_worker, stop_worker, wait_worker_ready

HOME = Path.cwd() / "var" / "bench"
DEV = "dev"


@dataclass
class EventSet:
    name: str
    events: list[RawEvent]
    by_feed: dict[str, list[RawEvent]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for event in self.events:
            self.by_feed.setdefault(event.feed, []).append(event)


def _dev_feeds(data_dir: Path) -> dict[str, Path]:
    paths = sorted((data_dir / "feeds").glob("*.jsonl"))
    return {p.stem: p for p in paths if not p.name.endswith(".truth.jsonl")}


def _feed_file_events(path: Path) -> list[RawEvent]:
    with FeedReader(path) as reader:
        return list(feed_events(reader, path.stem))


def _cycled(name: str, base: list[RawEvent], n: int) -> EventSet:
    out = []
    for i, event in enumerate(itertools.islice(itertools.cycle(base), n)):
        out.append(RawEvent(event.feed, event.key + f"#{i // len(base)}".encode(), event.value))
    return EventSet(name, out)


def _event_set(name: str, data_dir: Path, n: int) -> EventSet:
    dev = _dev_feeds(data_dir)
    if name == "flipkart":
        base = list(dataset_events(data_dir, ["flipkart"]))
    elif name == DEV:
        base = [event for path in dev.values() for event in _feed_file_events(path)]
    elif name in dev:
        base = _feed_file_events(dev[name])
    else:
        known = ", ".join(["flipkart", DEV, *dev])
        raise SystemExit(f"unknown feed set {name!r}; known: {known}")
    return _cycled(name, base, n)


def _infer(
    events: Sequence[RawEvent],
    feed: str,
    sample_size: int,
    taxonomy: Mapping[int, list[str]] | None,
) -> tuple[list[FeedProfile], float]:
    """The feed's profiles from its first ``sample_size`` records, and ms per 1,000 records."""
    sample = [parse_event(e.value) for e in events[:sample_size]]
    started = time.perf_counter()
    profiles = infer_profiles(sample, feed=feed, google_taxonomy=taxonomy)
    ms = (time.perf_counter() - started) * 1000
    return list(profiles.values()), ms * 1000 / len(sample)


def _pure_once(
    events: Sequence[RawEvent],
    profiles: Sequence[FeedProfile],
    taxonomy: Mapping[int, list[str]] | None,
) -> tuple[float, float, int]:
    """Seconds (wall, CPU) for ``apply_profile`` + encoding over ``events`` of one feed, and dead letters."""
    encode = serde_for("Product").encode
    now = time.time_ns() // 1_000_000
    rejected = 0
    single = profiles[0] if len(profiles) == 1 else None
    started, cpu = time.perf_counter(), time.process_time()
    for event in events:
        try:
            if single is not None:
                product = apply_profile(
                    event.value,
                    single,
                    feed=event.feed,
                    key=event.key,
                    seen_at_ms=now,
                    google_taxonomy=taxonomy,
                )
            else:
                record = parse_event(event.value)
                profile = choose_profile(record, profiles)
                assert profile is not None
                product = apply_profile(
                    record,
                    profile,
                    feed=event.feed,
                    key=event.key,
                    seen_at_ms=now,
                    google_taxonomy=taxonomy,
                )
            encode(product)
        except NormalizationError:
            rejected += 1  # the worker dead-letters these: same work, kept in the count
    return time.perf_counter() - started, time.process_time() - cpu, rejected


def _baseline_once(events: Sequence[RawEvent]) -> tuple[float, float, int]:
    """Seconds (wall, CPU) for the old ``normalize_event`` + encoding over ``events``, and dead letters."""
    encode = serde_for("Product").encode
    now = time.time_ns() // 1_000_000
    rejected = 0
    started, cpu = time.perf_counter(), time.process_time()
    for event in events:
        try:
            encode(normalize_event(event.value, feed=event.feed, key=event.key, seen_at_ms=now))
        except NormalizationError:
            rejected += 1
    return time.perf_counter() - started, time.process_time() - cpu, rejected


@dataclass
class PureResult:
    rate: float  # events/s of the set, median of runs
    runs: list[float]
    cpu_rate: float  # events per CPU-second of this process, median of runs
    per_feed: dict[str, tuple[int, float, int]]  # feed -> (events, median events/s, dead letters)


def _measure(
    event_set: EventSet, runs: int, once: Callable[[str, list[RawEvent]], tuple[float, float, int]]
) -> PureResult:
    totals: list[float] = []
    cpu_totals: list[float] = []
    per_feed: dict[str, list[float]] = {feed: [] for feed in event_set.by_feed}
    rejected: dict[str, int] = {}
    for _ in range(runs):
        total = total_cpu = 0.0
        for feed, events in event_set.by_feed.items():
            seconds, cpu, rejected[feed] = once(feed, events)
            per_feed[feed].append(len(events) / seconds)
            total += seconds
            total_cpu += cpu
        totals.append(len(event_set.events) / total)
        cpu_totals.append(len(event_set.events) / total_cpu)
    return PureResult(
        statistics.median(totals),
        totals,
        statistics.median(cpu_totals),
        {
            feed: (len(event_set.by_feed[feed]), statistics.median(rates), rejected[feed])
            for feed, rates in per_feed.items()
        },
    )


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker_run(
    settings: Settings, raw_topic: str, n: int, batch_size: int, run: int, guarantee: str
) -> tuple[float, float, int]:
    """One worker process drains the backlog into fresh topics: (events/s, events/CPU-s, dead)."""
    uid = uuid.uuid4().hex[:8]
    topics = TopicNames(
        raw=raw_topic,
        normalized=f"bench-{uid}.normalized",
        deadletter=f"bench-{uid}.deadletter",
        profiles=f"bench-{uid}.feeds.profiles",
        partitions=4,
    )
    run_cfg = run_settings(settings, topics, uid, batch_size=batch_size, guarantee=guarantee)
    wanted = {topics.normalized, topics.deadletter, topics.profiles}
    ensure_topics(run_cfg.kafka, [s for s in topic_specs(topics) if s.name in wanted])
    proc = start_worker(run_cfg, ["normalize"], HOME / f"worker-{uid}.log")
    try:
        wait_worker_ready(proc, "127.0.0.1", run_cfg.worker.metrics_port, "normalize")
        cpu0 = _cpu_seconds(proc.pid)
        records = read_topics(
            run_cfg.kafka, [topics.normalized, topics.deadletter], expected=n, timeout_s=600
        )
        cpu = _cpu_seconds(proc.pid) - cpu0
    finally:
        stop_worker(proc)
    stamps = sorted(r.timestamp_ms for r in records)
    seconds = (stamps[-1] - stamps[0]) / 1000
    dead = sum(1 for r in records if r.topic == topics.deadletter)
    print(
        f"  worker run {run} ({guarantee}): {len(records):,} outputs ({dead:,} dead letters) "
        f"in {seconds:.2f}s "
        f"→ {len(records) / seconds:,.0f}/s; worker CPU {cpu:.1f}s "
        f"→ {len(records) / cpu:,.0f}/CPU-s",
        flush=True,
    )
    return len(records) / seconds, len(records) / cpu, dead


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def _bench_set(
    name: str, base_settings: Settings, settings: Settings, args: argparse.Namespace
) -> dict[str, Any]:
    event_set = _event_set(name, base_settings.data_dir, args.events)
    n = len(event_set.events)
    raw_topic = f"bench-{uuid.uuid4().hex[:8]}.products.raw"
    ensure_topics(settings.kafka, topic_specs(TopicNames(raw=raw_topic, partitions=4))[:1])
    fill = replay(settings.kafka, raw_topic, iter(event_set.events), progress=False)
    print(
        f"\n[{name}] filled {raw_topic} with {fill.sent:,} events of "
        f"{len(event_set.by_feed)} feed(s) in {fill.seconds:.1f}s ({_load()})",
        flush=True,
    )

    taxonomy = configured_google_taxonomy(
        base_settings.feeds.google_taxonomy, base_settings.data_dir
    )
    profiles: dict[str, list[FeedProfile]] = {}
    infer_ms: dict[str, float] = {}
    for feed, events in event_set.by_feed.items():
        timings = []
        for _ in range(args.runs):
            found, ms = _infer(events, feed, base_settings.feeds.sample_size, taxonomy)
            timings.append(ms)
        profiles[feed], infer_ms[feed] = found, statistics.median(timings)

    print(f"[{name}] pure function ({_load()})", flush=True)
    pure = _measure(
        event_set, args.runs, lambda feed, events: _pure_once(events, profiles[feed], taxonomy)
    )
    base = _measure(event_set, args.runs, lambda feed, events: _baseline_once(events))
    print(f"  {'feed':<22}{'events':>9}{'shapes':>7}{'infer ms/1k':>12}"
          f"{'apply_profile/s':>16}{'dead':>7}{'normalize_event/s':>18}{'dead':>7}{'ratio':>7}")  # fmt: skip
    for feed, (count, rate, dead) in pure.per_feed.items():
        _, old_rate, old_dead = base.per_feed[feed]
        print(
            f"  {feed:<22}{count:>9,}{len(profiles[feed]):>7}{infer_ms[feed]:>12.1f}"
            f"{rate:>16,.0f}{dead:>7,}{old_rate:>18,.0f}{old_dead:>7,}{rate / old_rate:>7.2f}"
        )
    print(
        f"  set: apply_profile {pure.rate:,.0f}/s (runs {_runs(pure.runs)}), "
        f"{pure.cpu_rate:,.0f} per CPU-s; normalize_event {base.rate:,.0f}/s "
        f"(runs {_runs(base.runs)}), {base.cpu_rate:,.0f} per CPU-s ({_load()})",
        flush=True,
    )

    guarantees = [g.strip() for g in args.guarantees.split(",") if g.strip()]
    by_guarantee: dict[str, tuple[list[float], list[float]]] = {g: ([], []) for g in guarantees}
    for run in range(args.runs):
        for guarantee in guarantees:
            rate, cpu_rate, _ = _worker_run(settings, raw_topic, n, args.batch_size, run, guarantee)
            by_guarantee[guarantee][0].append(rate)
            by_guarantee[guarantee][1].append(cpu_rate)
    rates, cpu_rates = by_guarantee[guarantees[0]]
    worker, cpu = statistics.median(rates), statistics.median(cpu_rates)
    if len(guarantees) > 1:
        for guarantee, (g_rates, g_cpu) in by_guarantee.items():
            print(
                f"[{name}] {guarantee}: worker {statistics.median(g_rates):,.0f}/s "
                f"(runs {_runs(g_rates)}), {statistics.median(g_cpu):,.0f} per worker CPU-s; "
                f"against {guarantees[0]}: "
                f"{statistics.median(g_rates) / worker:.2f} of the rate",
                flush=True,
            )
    print(
        f"[{name}] medians of {args.runs}, {n:,} events, batch {args.batch_size}: "
        f"pure {pure.rate:,.0f}/s; worker {worker:,.0f}/s (runs {_runs(rates)}), "
        f"{cpu:,.0f} per worker CPU-s; worker/pure = {worker / pure.rate:.2f} "
        f"(per CPU-s: {cpu / pure.cpu_rate:.2f}); "
        f"baseline normalize_event {base.rate:,.0f}/s ({_load()})",
        flush=True,
    )
    return {"set": name, "events": n, "pure": pure.rate, "baseline": base.rate,
            "worker": worker, "cpu": cpu, "pure_cpu": pure.cpu_rate}  # fmt: skip


def _runs(values: Sequence[float]) -> str:
    return " / ".join(f"{v:,.0f}" for v in values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--feeds", default=f"flipkart,{DEV}", help="event sets: flipkart, dev, or a dev feed name"
    )
    parser.add_argument("--events", type=int, default=100_000, help="events per set (cycled)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument(
        "--guarantees",
        default="at_least_once",
        help="worker guarantees to measure, alternating runs: at_least_once, exactly_once",
    )
    args = parser.parse_args()

    base_settings = load_settings()
    if HOME.exists():
        shutil.rmtree(HOME)
    HOME.mkdir(parents=True)
    cfg = base_settings.local_kafka.model_copy(update={"home": HOME / "kafka"})
    print(f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, {_load()}", flush=True)
    status = localkafka.start(cfg)
    try:
        settings = base_settings.model_copy(
            update={"kafka": KafkaSettings(bootstrap_servers=status.bootstrap)}
        )
        results = [
            _bench_set(name.strip(), base_settings, settings, args)
            for name in args.feeds.split(",")
            if name.strip()
        ]
    finally:
        localkafka.stop(cfg)
    print(f"\nmedians of {args.runs} runs, batch {args.batch_size}, broker on the same machine:")
    print(f"{'set':<16}{'events':>9}{'pure/s':>9}{'worker/s':>10}{'worker/pure':>13}"
          f"{'pure/CPU-s':>12}{'worker/CPU-s':>14}{'ratio':>7}{'normalize_event/s':>19}")  # fmt: skip
    for r in results:
        print(
            f"{r['set']:<16}{r['events']:>9,}{r['pure']:>9,.0f}{r['worker']:>10,.0f}"
            f"{r['worker'] / r['pure']:>13.2f}{r['pure_cpu']:>12,.0f}{r['cpu']:>14,.0f}"
            f"{r['cpu'] / r['pure_cpu']:>7.2f}{r['baseline']:>19,.0f}"
        )
    print(_load())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
