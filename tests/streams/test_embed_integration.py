"""The embed worker against real Kafka, a real image embedder SavedModel and real milvus-lite."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from prodcat.core.kafka_config import producer_config
from prodcat.core.settings import ImageSettings, MilvusSettings, ServingSettings, Settings
from prodcat.schemas.serde import serde_for
from prodcat.serving.product_vectors import ProductVectors, QueryVectors
from prodcat.streams.normalize import normalize_event
from prodcat.streams.readback import read_topics
from prodcat.streams.replay import dataset_events
from prodcat.streams.worker_process import scrape_metric, stop_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _metric(settings: Settings, name: str, **labels: str) -> float:
    worker = settings.worker
    return scrape_metric(worker.metrics_host, worker.metrics_port, name, **labels)


def test_images_in_vectors_in_milvus_and_broken_images_dead_lettered(
    pipeline_settings: Settings,
    run_worker,
    data_dir: Path,
    tmp_path: Path,
    embedder_model_base: Path,
) -> None:
    images = (data_dir / "myntra" / "images").resolve()
    other_root = tmp_path / "files"
    other_root.mkdir()
    (other_root / "page.jpg").write_text("<html>not an image</html>")
    (other_root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00garbage" * 50)
    settings = pipeline_settings.model_copy(
        update={
            "serving": ServingSettings(model_base=embedder_model_base),
            "images": ImageSettings(file_roots=(images, other_root), timeout_s=5),
            "milvus": MilvusSettings(uri=str(tmp_path / "milvus" / "vectors.db")),
        }
    )
    serde = serde_for("Product")
    good = [
        normalize_event(e.value, feed="thumbnails", key=e.key, seen_at_ms=0)
        for e in dataset_events(data_dir, ["thumbnails"], limit=40)
    ]

    def product(title: str, url: str | None) -> dict:
        raw = f'{{"title": "{title}"' + (f', "image": "{url}"' if url else "") + "}"
        return normalize_event(raw.encode(), feed="t", key=None, seen_at_ms=0)

    bad = {
        "image_not_found": product("missing", (images / "0.jpg").as_uri()),
        "image_address_not_allowed": product("outside", (data_dir / "README.md").as_uri()),
        "image_not_image": product("html", (other_root / "page.jpg").as_uri()),
        "bad_image": product("broken", (other_root / "broken.jpg").as_uri()),
    }
    no_image = [product("no picture", None), product("no picture either", None)]
    producer = Producer(producer_config(settings.kafka))
    for p in [*good, *bad.values(), *no_image]:
        assert p["product_id"]
        producer.produce(settings.topics.normalized, key=p["product_id"], value=serde.encode(p))
    producer.produce(settings.topics.normalized, key=b"garbage", value=b"not avro")
    # A product removed from the catalogue: its tombstone comes after it, its vector must go.
    removed = good.pop()
    producer.produce(settings.topics.normalized, key=removed["product_id"], value=None)
    assert producer.flush(30) == 0
    total = len(good) + len(bad) + len(no_image) + 3

    proc = run_worker(settings, ["embed"], stage="embed")
    deadline = time.monotonic() + 180
    while _metric(settings, "prodcat_events_in_total", stage="embed") < total:
        assert time.monotonic() < deadline, "the embed worker did not consume every input"
        time.sleep(0.5)
    assert _metric(settings, "prodcat_events_out_total", stage="embed") in (
        len(good),
        len(good) + 1,
    )
    assert _metric(settings, "prodcat_events_skipped_total", stage="embed", reason="no_image") == 2
    # the removed product: embedded then deleted, or skipped when both were in one batch
    assert _metric(settings, "prodcat_events_skipped_total", stage="embed", reason="deleted") >= 1
    for reason in [*bad, "decode_error"]:
        assert _metric(settings, "prodcat_dead_letters_total", stage="embed", reason=reason) == 1

    letters = read_topics(settings.kafka, [settings.topics.deadletter], expected=5, timeout_s=30)
    dead = serde_for("DeadLetter")
    kinds = Counter(dead.decode(r.value or b"")["error_kind"] for r in letters)
    assert kinds == Counter([*bad, "decode_error"])

    stop_worker(proc)  # milvus-lite's local store is one process at a time
    vectors = ProductVectors(settings.milvus)
    store = vectors.images
    try:
        assert store.count() == len(good)
        assert store.get_vector(removed["product_id"]) is None
        for p in good[:5]:
            hits = store.search_by_id(p["product_id"], 5)
            assert hits[0].product_id == p["product_id"]
            assert hits[0].score == pytest.approx(1.0, abs=1e-4)
            assert hits[0].image_url == p["image_urls"][0]
            assert list(hits[0].category_path) == p["category_path"]
        # every product has its title vector, with an image or without, whatever its image did
        assert vectors.texts.count() == len(good) + len(bad) + len(no_image)
        assert vectors.texts.get_vector(removed["product_id"]) is None
        for p in [good[0], no_image[0], bad["bad_image"]]:
            query = vectors.title_vector(p["title"])
            assert query is not None
            hits = {h.product_id: h for h in vectors.search(QueryVectors(text=query), 5)}
            assert hits[p["product_id"]].score == pytest.approx(1.0, abs=1e-4)
            assert list(hits[p["product_id"]].category_path) == p["category_path"]
    finally:
        vectors.close()


async def test_an_embed_worker_frozen_past_its_session_timeout_writes_no_vector_on_waking(
    pipeline_settings: Settings, data_dir: Path, tmp_path: Path, embedder_model_base: Path
) -> None:
    """Issue 17, item 5 for the vector store: the embed stage freezes (its whole event loop, as a
    SIGSTOP would) while fetching a batch's images; its session expires, another member of its
    group takes the partitions and commits them; then it wakes. Its Milvus writes happen inside
    ``process``, before any Kafka fence, so the stage asks ``owns_batch`` before each: it writes no
    image or title vector (a product the new owner deleted meanwhile would otherwise come back),
    and the runtime drops the batch and goes on."""
    import asyncio
    import contextlib
    import threading

    from prometheus_client import CollectorRegistry

    from prodcat.core.metrics import WorkerMetrics
    from prodcat.streams.embed_agent import EmbedAgent, build_stage
    from prodcat.streams.runtime import StageRuntime
    from tests.streams.kafka_io import committed_offsets, publish_thumbnails
    from tests.streams.test_runtime import Holder, _running, _until, in_thread

    settings = pipeline_settings.model_copy(
        update={
            "serving": ServingSettings(model_base=embedder_model_base),
            "images": ImageSettings(file_roots=((data_dir / "myntra" / "images").resolve(),)),
            "milvus": MilvusSettings(uri=str(tmp_path / "milvus" / "vectors.db")),
        }
    )
    products = publish_thumbnails(settings, data_dir, 12)
    topic, group = settings.topics.normalized, f"{settings.worker.app_id}-embed"
    agent = EmbedAgent(build_stage(settings), topic)
    fetch_many = agent.stage.fetcher.fetch_many
    frozen, thaw, stop = threading.Event(), threading.Event(), threading.Event()

    async def freezing_fetch(urls: list[str]) -> list[object]:
        if not frozen.is_set():
            frozen.set()
            thaw.wait(120)  # blocks the event loop on purpose: no heartbeat, no callback
        return await fetch_many(urls)  # type: ignore[no-any-return]

    agent.stage.fetcher.fetch_many = freezing_fetch  # type: ignore[method-assign]
    owner = Holder(settings)  # a member of the embed stage's group that takes its partitions
    owner.name, owner.topic, owner.out = "embed", topic, settings.topics.raw
    failed: list[BaseException] = []

    def answered() -> bool:
        return sum(committed_offsets(settings, group, topic).values()) == len(products)

    async def replace() -> None:
        assert await asyncio.to_thread(frozen.wait, 60), "no batch reached the embed stage"
        async with _running(settings, owner):
            await _until(answered, what="the new owner to answer and commit every product")
            thaw.set()
            await asyncio.to_thread(stop.wait, 60)

    runtime = StageRuntime(settings, agent, WorkerMetrics(CollectorRegistry()).stage("embed"))
    thread = in_thread(replace, failed, thaw)
    task = asyncio.create_task(runtime.run())
    try:
        await _until(thaw.is_set, what="the new owner")
        await asyncio.sleep(8)  # the frozen batch ends, the stage rejoins and reads on
        assert not task.done(), task.exception() if task.done() else ""
    finally:
        stop.set()
        thread.join(60)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert not failed, failed
    vectors = ProductVectors(settings.milvus)
    try:
        images, titles = vectors.images.count(), vectors.texts.count()
    finally:
        vectors.close()
    print(f"\nthe woken stage wrote {images} image and {titles} title vectors")
    assert images == 0 and titles == 0
