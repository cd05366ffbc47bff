"""``make demo``: the whole pipeline on one machine with embedded defaults, and a printed summary.

Makes sure a classifier and an image embedder exist in the model store (trains / exports them the
first time), starts a fresh local Kafka broker, creates the topics, starts one worker process running
the normalize, classify, embed and sample agents (in-process models, milvus-lite), replays the
shared Flipkart, Myntra and thumbnail feeds plus a few malformed events, publishes the first
development feed file (``<data dir>/feeds/*.jsonl``, by name order, not by name) as a new feed the
normaliser must profile, waits until every stage has consumed everything, reads all outputs back,
shows predictions, the new feed's inferred profile, the products the sampler asks humans to label,
and visually similar products, and stops everything.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prodcat import localkafka
from prodcat.core.settings import PACKAGE_ROOT, MilvusSettings, Settings
from prodcat.schemas.serde import serde_for
from prodcat.streams.drift_agent import SIGNALS
from prodcat.streams.readback import Record, read_topics
from prodcat.streams.replay import RawEvent, dataset_events, replay
from prodcat.streams.topics import ensure_topics, topic_specs
from prodcat.streams.worker_process import (
    scrape_metric,
    start_worker,
    stop_worker,
    wait_metric,
    wait_worker_ready,
)
from prodcat.training.rules import DEMO_RULES

if TYPE_CHECKING:
    from prodcat.streams.feeds.profile import FeedProfile

logger = logging.getLogger(__name__)


#: What real feeds also send now and then; each must end as a dead letter with its reason.
MALFORMED = [
    RawEvent("flipkart", b"flipkart:truncated", b'{"uniq_id": "x1", "product_name": "Blue Sh'),
    RawEvent("flipkart", b"flipkart:html", b"<html><body>502 Bad Gateway</body></html>"),
    RawEvent("myntra", b"myntra:no-title", b'{"data": {"id": 7, "brandName": "Roadster"}}'),
    RawEvent("myntra", b"myntra:empty", b"{}"),
]


STAGES = ("normalize", "classify", "embed", "sample", "drift")
#: The sampler closes a selection window this often in the demo (default 30 s).
DEMO_SAMPLER_WINDOW_S = 5.0
FEEDS = ["flipkart", "myntra", "thumbnails"]
#: Development feed files published as new feeds (the first ones in name order) and records of
#: each at most (``--limit`` lowers it): enough for the stage's sample and its refinement.
DEV_FEED_FILES = 1
DEV_FEED_RECORDS = 1000


def ensure_models(settings: Settings) -> list[str]:
    """Train the classifier / export the embedder into the model store if they are missing."""
    from prodcat.core.model_store import available_versions

    serving, notes = settings.serving, []
    base = serving.model_base
    if not available_versions(base / serving.classifier):
        print(f"      no classifier under {base}: training one (`prodcat train`, ~2-3 min)")
        from prodcat.training.train_command import train_and_export

        config = PACKAGE_ROOT / "training" / "configs" / "cnn.yaml"
        result, target = train_and_export(config, settings.data_dir, base, serving.classifier, 3)
        notes.append(f"trained {target} (L3 accuracy {result.accuracy:.4f})")
    if not available_versions(base / serving.embedder):
        from prodcat.training.image_commands import export_image_embedder

        finetuned = base / "image_embedder_finetuned.weights.h5"
        source = finetuned if finetuned.is_file() else settings.data_dir
        target = export_image_embedder(
            source, base, serving.embedder, max_pixels=settings.images.max_pixels
        )
        notes.append(
            f"exported {target} from {'fine-tuned' if source == finetuned else 'pretrained'} weights"
        )
    return notes


def store_demo_taxonomy(settings: Settings) -> None:
    """The demo's taxonomy: the cleaned Flipkart tree, stored on the taxonomy topic."""
    from prodcat.streams.taxonomy_store import publish_taxonomy
    from prodcat.training.dataset import demo_examples, tree_of_examples

    tree = tree_of_examples(demo_examples(settings.data_dir))
    stored, _ = publish_taxonomy(settings, tree, reason="demo: the Flipkart tree")
    print(f"      taxonomy v{stored.sequence}: the Flipkart tree ({len(tree)} nodes)", flush=True)


def run_demo(settings: Settings, limit: int | None = None) -> int:
    demo_home = settings.home / "var" / "demo"
    if demo_home.exists():
        shutil.rmtree(demo_home)
    demo_home.mkdir(parents=True)
    kafka_cfg = settings.local_kafka.model_copy(update={"home": demo_home / "kafka"})
    bootstrap = f"{kafka_cfg.host}:{kafka_cfg.port}"
    images = (settings.data_dir / "myntra" / "images").resolve()
    settings = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"bootstrap_servers": bootstrap}),
            "images": settings.images.model_copy(
                update={"file_roots": (*settings.images.file_roots, images)}
            ),
            "milvus": MilvusSettings(uri=str(demo_home / "milvus" / "vectors.db")),
            "sampler": settings.sampler.model_copy(update={"window_s": DEMO_SAMPLER_WINDOW_S}),
            # the demo's configuration: the Flipkart tree and its rules (`labels rules` uses them)
            "taxonomy": settings.taxonomy.model_copy(update={"rules": DEMO_RULES}),
        }
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"[1/7] models in {settings.serving.model_base}", flush=True)
    notes = ensure_models(settings)
    print(f"[2/7] starting Apache Kafka on {bootstrap} (data in {kafka_cfg.home})", flush=True)
    localkafka.start(kafka_cfg)
    worker = None
    host, port = settings.worker.metrics_host, settings.worker.metrics_port
    try:
        print("[3/7] creating topics", flush=True)
        ensure_topics(settings.kafka, topic_specs(settings.topics))
        store_demo_taxonomy(settings)
        print(f"[4/7] starting a worker running {', '.join(STAGES)}", flush=True)
        worker = start_worker(settings, list(STAGES), demo_home / "worker.log")
        for stage in STAGES:
            wait_worker_ready(worker, host, port, stage, timeout_s=180)
        dev_files = dev_feed_files(settings.data_dir)
        print("[5/7] replaying the Flipkart, Myntra and thumbnail feeds; publishing "
              f"{', '.join(p.name for p in dev_files) or 'no development feed'}", flush=True)  # fmt: skip
        started = time.time()
        sent = replay(
            settings.kafka,
            settings.topics.raw,
            itertools.chain(dataset_events(settings.data_dir, FEEDS, limit), MALFORMED),
        )
        dev_sent, dev_s = publish_dev_feeds(settings, dev_files, limit)
        total = sent.sent + sum(dev_sent.values())
        print("[6/7] waiting for every stage, reading the outputs back", flush=True)
        wait_metric(worker, host, port, "prodcat_events_in_total", total, stage="normalize")
        normalized = wait_metric(
            worker, host, port, "prodcat_events_out_total", 0, stage="normalize"
        )
        for stage in ("classify", "embed", "sample"):
            wait_metric(
                worker, host, port, "prodcat_events_in_total", normalized, stage=stage,
                timeout_s=600,
            )  # fmt: skip
        finished = time.time()
        predicted = wait_metric(worker, host, port, "prodcat_events_out_total", 0, stage="classify")
        wait_metric(worker, host, port, "prodcat_events_in_total", predicted, stage="drift")
        drift = _drift(host, port)
        time.sleep(DEMO_SAMPLER_WINDOW_S + 1)  # the sampler's last window closes
        topics = settings.topics
        records = read_topics(
            settings.kafka,
            [topics.normalized, topics.deadletter, topics.predictions, topics.annotation_requests],
            timeout_s=300,
        )
        profiles = dev_feed_profiles(settings, dev_files, live=_live_profiles(settings))
        stop_worker(worker)  # the embed agent holds milvus-lite's local store; release it
        worker = None
        print("[7/7] similar products from the vector store", flush=True)
        similar = _similar(settings, records)
        print(_summary(settings, total, {**sent.per_feed, **dev_sent}, sent.seconds + dev_s,
                       started, finished, records, notes, similar, [*drift, *profiles]))  # fmt: skip
        accounted = sum(r.topic in (topics.normalized, topics.deadletter) for r in records) >= total
        return 0 if accounted else 1
    finally:
        if worker is not None:
            stop_worker(worker)
        localkafka.stop(kafka_cfg)
        print(f"stopped the worker and Kafka; logs in {demo_home}", flush=True)


def dev_feed_files(data_dir: Path, count: int = DEV_FEED_FILES) -> list[Path]:
    """The first ``count`` development feed files (``<data_dir>/feeds/*.jsonl``, not truths)."""
    folder = data_dir / "feeds"
    if not folder.is_dir():
        return []
    found = (p for p in folder.glob("*.jsonl") if not p.name.endswith(".truth.jsonl"))
    return sorted(found)[:count]


def publish_dev_feeds(
    settings: Settings, files: Sequence[Path], limit: int | None
) -> tuple[dict[str, int], float]:
    """Publish each file as a new feed named after it, as `prodcat publish` does; sent per feed."""
    from prodcat.streams.feeds.publish import publish_file

    records = min(limit, DEV_FEED_RECORDS) if limit else DEV_FEED_RECORDS
    sent: dict[str, int] = {}
    seconds = 0.0
    for path in files:
        result = publish_file(settings.kafka, settings.topics.raw, path, feed=path.stem,
                              limit=records, progress=False)  # fmt: skip
        sent[path.stem] = result.sent
        seconds += result.seconds
    return sent, seconds


def _live_profiles(settings: Settings) -> dict[str, FeedProfile]:
    from prodcat.streams.exceptions import StreamsError
    from prodcat.streams.feeds.store import read_profiles

    try:
        return read_profiles(settings, timeout_s=30)
    except StreamsError as exc:
        logger.warning("cannot read %s: %s", settings.topics.profiles, exc)
        return {}


def dev_feed_profiles(
    settings: Settings, files: Sequence[Path], *, live: Mapping[str, FeedProfile]
) -> list[str]:
    """Summary lines: each development feed's profile as the worker published it on
    ``feeds.profiles`` (``live``), else as ``prodcat feeds inspect`` infers it from the file."""
    from prodcat.streams.feeds.commands import format_profile, profiled_events
    from prodcat.streams.feeds.store import latest_for

    lines: list[str] = []
    for path in files:
        feed = path.stem
        found = latest_for(live, feed)
        if found:
            lines.append(
                f"profile of {feed:<12}: inferred by the normaliser ({settings.topics.profiles})"
            )
        else:
            # The worker publishes every profile it infers; if it has not (the topic could not be
            # read), show what `prodcat feeds inspect` infers from the file, and say so.
            lines.append(f"profile of {feed:<12}: not on {settings.topics.profiles} yet; as "
                         "`prodcat feeds inspect` infers it from the file")  # fmt: skip
            with profiled_events(settings, path, feed=feed) as opened:
                found = opened.profiles
        lines.extend("  " + line for p in found for line in format_profile(p).splitlines())
    return lines


def _similar(settings: Settings, records: list[Record]) -> list[str]:
    """Neighbours of a few thumbnails: global, and within the query's level-2 category."""
    from prodcat.core.ids import path_id
    from prodcat.serving.product_vectors import ProductVectors

    products = serde_for("Product")
    titles: dict[str, str] = {}
    queries: list[dict[str, Any]] = []
    for record in records:
        if (
            record.topic == settings.topics.normalized
            and record.headers.get("feed") == b"thumbnails"
        ):
            product = products.decode(record.value or b"")
            titles[product["product_id"]] = product["title"]
            if len(queries) < 3 and len(titles) % 700 == 1:
                queries.append(product)
    lines: list[str] = []
    vectors = ProductVectors(settings.milvus, settings.similarity)
    mode = settings.similarity.mode
    try:
        counts = vectors.count()
        lines.append(
            f"vectors in Milvus   : {counts['images']:,} images, {counts['texts']:,} titles "
            f"({settings.milvus.uri}); neighbours by {mode}"
        )
        for product in queries:
            pid, path = product["product_id"], product["category_path"]
            lines.append(f"  query: {product['title']!r} [{' > '.join(path)}]")
            within = path[:2]  # a level-2 subtree, e.g. Apparel > Topwear
            for label, category in (
                ("global", None),
                (f"in {' > '.join(within)}", path_id(within)),
            ):
                query = vectors.of_product(pid, mode)
                hits = vectors.search(query, 5, category_id=category, exclude=pid)
                shown = [f"{titles.get(h.product_id, h.product_id)} ({h.score:.2f})" for h in hits]
                lines.append(f"    {label:>28}: " + "; ".join(shown))
    finally:
        vectors.close()
    return lines


def _summary(
    settings: Settings,
    sent: int,
    per_feed: dict[str, int],
    replay_s: float,
    started: float,
    finished: float,
    records: list[Record],
    notes: list[str],
    similar: list[str],
    drift: list[str],
) -> str:
    topics = settings.topics
    products = serde_for("Product")
    dead = serde_for("DeadLetter")
    predictions = serde_for("Prediction")
    normalized = [r for r in records if r.topic == topics.normalized]
    dead_letters = [dead.decode(r.value or b"") for r in records if r.topic == topics.deadletter]
    predicted = [predictions.decode(r.value) for r in records if r.topic == topics.predictions
                 and r.value]  # fmt: skip
    by_stage = Counter(d["stage"] for d in dead_letters)
    pipeline_s = max(1e-3, finished - started)
    out_by_feed = Counter(r.headers.get("feed", b"?").decode() for r in normalized)
    reasons = Counter((d["stage"], d["error_kind"]) for d in dead_letters)
    versions = Counter(f"{p['model_name']} v{p['model_version']}" for p in predicted)
    accounted = len(normalized) + by_stage["normalize"]
    lines = [
        "",
        "=== prodcat demo summary ===",
        *(f"models              : {note}" for note in notes),
        f"inputs replayed     : {sent:,} {per_feed} in {replay_s:.1f}s ({sent / replay_s:,.0f}/s)",
        f"normalize           : {len(normalized):,} products + {by_stage['normalize']:,} dead "
        f"letters; every input accounted for: {accounted == sent}",
        f"classify            : {len(predicted):,} predictions {dict(versions)}",
        f"embed               : images of {out_by_feed.get('thumbnails', 0):,} thumbnails; "
        f"{by_stage['embed']:,} dead letters (images that could not be fetched)",
        f"pipeline throughput : {sent / pipeline_s:,.0f} events/s through every stage "
        f"(replay start → every stage done, {pipeline_s:.1f}s)",
        f"products per feed   : {dict(out_by_feed)}",
        f"dead letters        : {', '.join(f'{s}/{k}: {n}' for (s, k), n in reasons.items())}",
        "predictions (title → top category, probability; feed's own category):",
    ]
    by_id = {p["product_id"]: p for p in predicted}
    shown = 0
    for record in normalized[::997]:  # spread over the feeds and partitions
        product = products.decode(record.value or b"")
        prediction = by_id.get(product["product_id"])
        if product["feed"] != "flipkart" or prediction is None:
            continue
        top = prediction["exclusive_top_k"][0]
        lines.append(
            f"  {product['title'][:60]!r} → {' > '.join(top['path'])} ({top['probability']:.2f}); "
            f"feed: {' > '.join(product['category_path'][:3])}"
        )
        shown += 1
        if shown == 4:
            break
    lines.extend(_requests(settings, records))
    lines.extend(drift)
    lines.extend(similar)
    lines.extend(_ui_hint(settings))
    return "\n".join(lines)


def _drift(host: str, port: int) -> list[str]:
    """The drift agent's last scores: predictions of the replay against the training reference."""
    windows = scrape_metric(host, port, "prodcat_drift_windows_total")
    missing = scrape_metric(host, port, "prodcat_drift_reference_missing_total")
    if not windows:
        why = "the model has no training reference" if missing else "no window closed yet"
        return [f"drift               : no score ({why})"]
    psi = {s: scrape_metric(host, port, "prodcat_drift_psi", signal=s) for s in SIGNALS}
    floor = {s: scrape_metric(host, port, "prodcat_drift_psi_expected", signal=s) for s in SIGNALS}
    scores = ", ".join(f"{s} {psi[s]:.3f} (noise alone: {floor[s]:.3f})" for s in SIGNALS)
    return [
        f"drift               : PSI of the last window vs the training reference: {scores}; "
        f"{windows:.0f} windows; the alert fires 0.25 above the noise"
    ]


def _ui_hint(settings: Settings) -> list[str]:
    """How to open the web UI on what the demo left behind (its broker data and vectors)."""
    roots = ", ".join(f'"{root}"' for root in settings.images.file_roots)
    ui = settings.ui
    return [
        "web UI on the demo data (annotation queue, similarity evaluation):",
        f"  export PRODCAT_LOCAL_KAFKA__HOME={settings.home / 'var' / 'demo' / 'kafka'} "
        f"PRODCAT_MILVUS__URI={settings.milvus.uri} PRODCAT_IMAGES__FILE_ROOTS='[{roots}]'",
        "  .venv/bin/prodcat dev kafka start     # the demo's broker again, with its topics",
        "  .venv/bin/prodcat ui user add alice   # asks for a password (8+ characters)",
        f"  .venv/bin/prodcat ui                  # then open http://{ui.host}:{ui.port}/",
    ]


def _requests(settings: Settings, records: list[Record]) -> list[str]:
    """What the sampler asks humans to label: counts by strategy and the most uncertain few."""
    serde = serde_for("AnnotationRequest")
    requests = [serde.decode(r.value) for r in records
                if r.topic == settings.topics.annotation_requests and r.value]  # fmt: skip
    titles = {}
    products = serde_for("Product")
    wanted = {r["product_id"] for r in requests}
    for record in records:
        if record.topic == settings.topics.normalized and record.value:
            product = products.decode(record.value)
            if product["product_id"] in wanted:
                titles[product["product_id"]] = product["title"]
    by_strategy = Counter(r["strategy"] for r in requests)
    sampler = settings.sampler
    lines = [
        f"annotation requests : {len(requests):,} {dict(by_strategy)} (strategy {sampler.strategy},"
        f" {sampler.random_share:.0%} random, at most {sampler.max_per_minute:g}/min)",
    ]
    chosen = sorted((r for r in requests if r["strategy"] != "random"), key=lambda r: -r["score"])
    for request in chosen[:3]:
        top = ", ".join(
            f"{' > '.join(s['path'][-1:])} {s['probability']:.2f}"
            for s in request["suggestions"][:3]
        )
        lines.append(
            f"  {titles.get(request['product_id'], request['product_id'])[:60]!r}: "
            f"score {request['score']:.2f}; model suggests {top}"
        )
    return lines
