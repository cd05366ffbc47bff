"""The web UI end to end in headless Chromium, through a real Kafka broker and real milvus-lite.

(1) An annotation request appears in the queue, a digit labels it, and a ``Label`` with the
right fields lands on ``labels``; a second annotator is never handed the same product; ``s``
skips, ``u`` undoes (a tombstone), ``/`` searches the categories. (2) An uploaded image shows its
neighbours, a category restriction keeps them in the subtree, a judgement lands on
``similarity.judgements`` and the report counts it. (3) The Mappings screen mines feed paths from
predictions and labels on the topics; ``a`` approves (decision on ``feeds.mappings``, a mapping
label for every product of the path but the one a person labelled), ``c`` approves another node,
``r`` rejects. (4) The Review queue shows the labels the firewall holds on ``labels.suspect``;
``y`` confirms, ``s`` takes the model's category, ``/`` chooses another (a new label on
``labels``, the record confirmed); a label changed after it was held is refused. The tests take
the screenshots in ``docs/``.

Chromium is Debian's (``make system-deps``), driven by Playwright's Python package with
``executable_path``; no browser is downloaded.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from prodcat.core.ids import path_id
from prodcat.core.settings import (
    ImageSettings,
    KafkaSettings,
    MilvusSettings,
    ServingSettings,
    Settings,
    TopicNames,
    UiSettings,
    load_settings,
)
from prodcat.schemas.serde import serde_for
from prodcat.serving.backends import InProcessBackend
from prodcat.serving.product_vectors import ProductVectors
from prodcat.serving.vector_store import ImageVector
from prodcat.serving.web.app import create_web_app
from prodcat.serving.web.auth import Users
from prodcat.serving.web.server import web_parts
from prodcat.streams.readback import Record, read_topics
from prodcat.streams.topics import ensure_topics, topic_specs
from prodcat.training.labels import load_vocabulary
from tests.conftest import TrainedClassifier, free_port
from tests.streams.kafka_io import produce

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.browser]

PASSWORD = "correct horse battery"
DOCS = Path(__file__).resolve().parents[3] / "docs"


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "Chromium is missing: the browser tests need Debian's `chromium` package "
            "(`make system-deps`, or `sudo apt-get install chromium`)"
        )
    return path


def unique_topics(partitions: int = 2) -> TopicNames:
    """Every topic under a fresh prefix: a test module's own pipeline on the shared broker."""
    uid = uuid.uuid4().hex[:10]
    base = TopicNames()
    return TopicNames(**{f: f"t{uid}.{getattr(base, f)}" for f in TopicNames.model_fields
                         if f != "partitions"}, partitions=partitions)  # fmt: skip


@contextmanager
def serving(parts: Any) -> Iterator[str]:
    """The web app over ``parts`` on a free loopback port, once its view has caught up; its URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_web_app(parts), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not (server.started and parts.follower.ready.is_set()):
        assert time.monotonic() < deadline, "the UI did not start"
        assert thread.is_alive(), "uvicorn stopped"
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def _product(row: dict[str, str], images: Path) -> dict[str, Any]:
    return {
        "product_id": f"m{row['id']}", "feed": "thumbnails", "source_id": row["id"],
        "title": row["productDisplayName"], "brand": row["productDisplayName"].split()[0],
        "category_path": [row["masterCategory"], row["subCategory"], row["articleType"]],
        "description": f"{row['baseColour']} {row['articleType']} for {row['gender']}.",
        "gender": row["gender"].lower(), "sizes": [], "price": {"value": 1299.0, "currency": "INR"},
        "list_price": None, "image_urls": [(images / row["filename"]).as_uri()],
        "product_url": None, "retailer": "Myntra", "attributes": {},
        "content_hash": hashlib.sha1(row["id"].encode()).hexdigest(), "seen_at": 0,
    }  # fmt: skip


class Ui:
    def __init__(self, settings: Settings, url: str, catalogue: list[dict[str, str]], images: Path,
                 classes: list[tuple[str, str]]) -> None:  # fmt: skip
        self.settings, self.url, self.catalogue = settings, url, catalogue
        self.images, self.classes = images, classes

    def read(self, topic: str, expected: int) -> list[Record]:
        records = read_topics(self.settings.kafka, [topic], expected=expected, timeout_s=30)
        assert len(records) >= expected, f"{topic}: {len(records)} of {expected} records"
        return sorted(records, key=lambda r: r.timestamp_ms)


@pytest.fixture(scope="module")
def ui(
    tmp_path_factory: pytest.TempPathFactory,
    kafka_bootstrap: str,
    data_dir: Path,
    trained_classifier: TrainedClassifier,
    embedder_model_base: Path,
) -> Iterator[Ui]:
    root = tmp_path_factory.mktemp("ui")
    models = root / "models"  # one model store with both models
    models.mkdir()
    (models / "classifier").symlink_to(trained_classifier.model_base / "classifier")
    (models / "image_embedder").symlink_to(embedder_model_base / "image_embedder")
    images = (data_dir / "myntra" / "images").resolve()
    topics = unique_topics()
    settings = load_settings(
        data_dir=data_dir,
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        topics=topics,
        serving=ServingSettings(model_base=models),
        images=ImageSettings(file_roots=(images,)),
        milvus=MilvusSettings(uri=str(root / "milvus" / "v.db")),
        ui=UiSettings(
            users_file=root / "users.json",
            state_dir=root / "state",
            lease_ttl_s=600,
            double_label_share=0.0,
        ),
    )
    ensure_topics(settings.kafka, topic_specs(settings.topics))
    users = Users(settings.ui.users_file)
    users.add("alice", PASSWORD, iterations=10_000)
    users.add("bob", PASSWORD, iterations=10_000)
    users.add("carol", PASSWORD, iterations=10_000)  # the HTTP test's own annotator

    with (data_dir / "myntra" / "labels.csv").open(encoding="utf-8") as handle:
        catalogue = list(csv.DictReader(handle))[::80]  # ~33 products, many article types
    embedder = InProcessBackend(models, "image_embedder", poll_interval_s=None)
    store = ProductVectors(settings.milvus)
    store.ensure_collections()
    data = np.array([(images / r["filename"]).read_bytes() for r in catalogue], dtype=object)
    vectors = embedder.predict({"image_bytes": data}).outputs["embedding"]
    paths = [[r["masterCategory"], r["subCategory"], r["articleType"]] for r in catalogue]
    store.images.upsert(
        ImageVector(f"m{r['id']}", vectors[i], paths[i], 1, (images / r["filename"]).as_uri())
        for i, r in enumerate(catalogue)
    )
    store.texts.upsert(store.title_rows(
        (f"m{r['id']}", r["productDisplayName"], paths[i], "") for i, r in enumerate(catalogue)
    ))  # fmt: skip
    products = serde_for("Product")
    produce(settings, topics.normalized,
            [(f"m{r['id']}".encode(), products.encode(_product(r, images))) for r in catalogue])  # fmt: skip
    vocabulary = load_vocabulary(models, "classifier")
    classes = list(vocabulary.classes.items())[:3]

    with web_parts(settings, vectors=store, embedder=embedder) as parts, serving(parts) as url:
        yield Ui(settings, url, catalogue, images, classes)
    store.close()
    embedder.close()


@pytest.fixture(scope="module")
def browser(ui: Ui) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), headless=True)
        try:
            yield browser
        finally:
            browser.close()


def _login(browser: Any, ui: Ui, name: str, path: str) -> Any:
    context = browser.new_context(base_url=ui.url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto(path)
    assert "/login" in page.url  # every page needs an annotator
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{path}")
    return page


def test_annotation_queue_to_labels_topic(ui: Ui, browser: Any) -> None:
    requests = serde_for("AnnotationRequest")
    first, second = ui.catalogue[3], ui.catalogue[11]
    p1, p2 = f"m{first['id']}", f"m{second['id']}"
    suggestions = [{"category_id": cid, "path": path.split(" > "), "probability": prob}
                   for (cid, path), prob in zip(ui.classes, (0.41, 0.33, 0.12), strict=True)]  # fmt: skip
    root = ui.classes[0][1].split(" > ")[0]  # p2's prediction backed off to this first level
    produce(ui.settings, ui.settings.topics.annotation_requests, [
        (p1.encode(), requests.encode({"product_id": p1, "strategy": "margin", "score": 0.42,
                                       "suggestions": suggestions, "model_name": "classifier",
                                       "model_version": 1, "requested_at": 1_000})),
        (p2.encode(), requests.encode({"product_id": p2, "strategy": "random", "score": 0.0,
                                       "suggestions": suggestions, "model_name": "classifier",
                                       "model_version": 1, "requested_at": 2_000,
                                       "decision": "backed_off", "partial_path": [root]})),
    ])  # fmt: skip

    alice = _login(browser, ui, "alice", "/annotate")
    alice.wait_for_selector(f"body[data-product-id='{p1}']")  # the request is in the queue
    assert alice.inner_text("#p-title") == first["productDisplayName"]
    alice.wait_for_selector("#p-image:not([hidden])")
    assert alice.locator("#suggestions button").count() == 3
    alice.screenshot(path=str(DOCS / "ui-annotation.png"))

    alice.keyboard.press("2")  # the second suggestion
    alice.wait_for_selector(f"body[data-product-id='{p2}']")
    (record,) = ui.read(ui.settings.topics.labels, 1)
    assert record.key == f"{p1}/exclusive".encode()
    label = serde_for("Label").decode(record.value)
    assert label["category_ids"] == [ui.classes[1][0]]
    assert (label["objective"], label["source"], label["annotator"]) == (
        "exclusive",
        "human",
        "alice",
    )
    assert (label["strategy"], label["score"], label["model_version"]) == ("margin", 0.42, 1)
    assert label["time_taken_ms"] is not None and 0 <= label["time_taken_ms"] < 120_000

    bob = _login(browser, ui, "bob", "/annotate")
    assert bob.request.get("/ui/api/next").json()["item"] is None  # p1 answered, p2 is alice's
    alice.keyboard.press("s")
    alice.wait_for_selector("#empty:not([hidden])")
    assert bob.request.get("/ui/api/next").json()["item"]["product_id"] == p2  # released
    bob.reload()  # p2, backed off: the search starts inside the part of the path the model is sure of
    bob.wait_for_selector(f"body[data-product-id='{p2}']")
    assert bob.inner_text("#p-partial") == f"model is sure of: {root} \u203a"
    assert bob.input_value("#search") == root
    bob.locator("#results li").first.wait_for()
    assert all(
        root.casefold() in (item.inner_text() or "").casefold()
        for item in bob.locator("#results li").all()
    )

    alice.keyboard.press("u")  # undo: p1 comes back to alice
    alice.wait_for_selector(f"body[data-product-id='{p1}']")
    tombstone = ui.read(ui.settings.topics.labels, 2)[-1]
    assert tombstone.key == f"{p1}/exclusive".encode() and tombstone.value is None

    alice.keyboard.press("/")
    alice.keyboard.type(ui.classes[2][1])
    choice = alice.locator("#results li").first
    choice.wait_for()
    chosen = choice.get_attribute("data-category-id")
    alice.keyboard.press("Enter")
    alice.wait_for_selector("#empty:not([hidden])")
    relabel = serde_for("Label").decode(ui.read(ui.settings.topics.labels, 3)[-1].value)
    assert (relabel["product_id"], relabel["category_ids"]) == (p1, [chosen])

    metrics = httpx.get(f"{ui.url}/metrics").text
    assert 'prodcat_annotation_labels_total{strategy="margin"} 2.0' in metrics
    assert 'prodcat_annotation_queue_depth{strategy="random"} 1.0' in metrics
    assert "prodcat_annotation_seconds_count 2.0" in metrics
    alice.context.close()
    bob.context.close()


def test_similarity_compares_images_titles_or_both(ui: Ui, browser: Any) -> None:
    row = ui.catalogue[11]
    page = _login(browser, ui, "bob", "/similar")
    assert page.locator("#mode").input_value() == "hybrid"  # PRODCAT_SIMILARITY__MODE
    page.fill("#product-search", row["productDisplayName"])
    page.locator(f"#product-results li[data-product-id='m{row['id']}']").wait_for()
    page.locator(f"#product-results li[data-product-id='m{row['id']}']").click()
    shown = {}
    for mode, words in (
        ("hybrid", "by image + title"),
        ("text", "by title"),
        ("image", "by image"),
    ):
        page.select_option("#mode", mode)
        page.wait_for_function(
            "w => document.getElementById('q-meta').textContent.includes(w + ' ·')", arg=words
        )
        page.wait_for_selector("body[data-hits='12']")
        shown[mode] = page.locator(".hit").evaluate_all(
            "cards => cards.map(c => c.dataset.productId)"
        )
    assert f"m{row['id']}" not in shown["hybrid"]  # the query itself is left out
    assert shown["hybrid"] != shown["image"] and shown["hybrid"] != shown["text"]
    page.context.close()


def test_similar_products_of_the_same_predicted_kind_rank_higher(ui: Ui, browser: Any) -> None:
    """Once predictions reach the UI's view, a query's neighbours that share its predicted kind
    (here each product's master category, at probability 1) gain the same-kind term."""
    page = _login(browser, ui, "bob", "/similar")
    master = {f"m{r['id']}": r["masterCategory"] for r in ui.catalogue}
    queries = [f"m{r['id']}" for r in ui.catalogue[:12]]

    def same_kind_share() -> list[float]:
        shares = []
        for pid in queries:
            got = page.request.get(f"/ui/api/similar?product_id={pid}&mode=hybrid&k=5")
            assert got.ok
            hits = [hit["product_id"] for hit in got.json()["hits"]]
            shares.append(sum(master[h] == master[pid] for h in hits) / len(hits))
        return shares

    before = same_kind_share()
    serde = serde_for("Prediction")
    records = []
    for pid, kind in master.items():
        top = [{"category_id": path_id([kind]), "path": [kind], "probability": 1.0}]
        prediction = {
            "product_id": pid, "content_hash": None, "model_name": "classifier",
            "model_version": 1, "exclusive_top_k": top, "rule_based_positives": [],
            "uncertainty": {"least_confidence": 0.0, "margin": 1.0, "entropy": 0.0,
                            "vote_entropy": None, "kl_consensus": None},
            "predicted_at": 0, "decision": None,
        }  # fmt: skip
        records.append((pid.encode(), serde.encode(prediction)))
    produce(ui.settings, ui.settings.topics.predictions, records)
    deadline = time.monotonic() + 30
    after = same_kind_share()
    while sum(after) <= sum(before) and time.monotonic() < deadline:
        time.sleep(0.5)  # the view follows products.predictions
        after = same_kind_share()
    assert sum(after) > sum(before)
    assert all(a >= b for a, b in zip(after, before, strict=True))
    page.context.close()


def test_similarity_upload_judgement_and_report(ui: Ui, browser: Any) -> None:
    row = ui.catalogue[7]
    pid, image = f"m{row['id']}", ui.images / row["filename"]
    page = _login(browser, ui, "alice", "/similar")
    page.set_input_files("#upload", str(image))
    page.wait_for_selector("body[data-hits='12']")
    hits = page.locator(".hit")
    assert hits.count() == 12
    assert hits.first.get_attribute("data-product-id") == pid  # its own image is nearest

    page.fill("#subtree-search", row["masterCategory"])  # restrict to a level-1 subtree
    first = page.locator("#subtree-results li").first
    first.wait_for()
    assert first.get_attribute("data-category-id") == path_id([row["masterCategory"]])  # shallowest
    page.keyboard.press("Enter")
    page.wait_for_selector("#subtree-chip:not([hidden])")
    page.wait_for_function(
        "prefix => [...document.querySelectorAll('.hit .cat-path')].length > 0 && "
        "[...document.querySelectorAll('.hit .cat-path')].every(e => e.textContent.startsWith(prefix))",
        arg=row["masterCategory"],
    )
    assert hits.first.get_attribute("data-product-id") == pid
    page.wait_for_function(
        "() => [...document.querySelectorAll('.hit img')].every(i => i.complete)"
    )
    page.screenshot(path=str(DOCS / "ui-similarity.png"), full_page=True)

    hits.first.locator(".yes").click()
    page.wait_for_selector(".hit[data-judged='relevant']")
    (record,) = ui.read(ui.settings.topics.judgements, 1)
    judgement = serde_for("SimilarityJudgement").decode(record.value)
    assert judgement["query_image_sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    assert judgement["query_product_id"] is None
    assert (judgement["neighbour_product_id"], judgement["rank"], judgement["relevant"]) == (
        pid,
        1,
        True,
    )
    assert judgement["category_id"] == path_id([row["masterCategory"]])
    assert (judgement["model_version"], judgement["annotator"]) == (1, "alice")

    page.goto("/report")
    version_row = page.locator("#report tr[data-version='1']")
    assert version_row.locator("td.judged").inner_text() == "1"
    assert version_row.locator("td.p1").inner_text().startswith("1.000")
    assert (
        'prodcat_similarity_judgements_total{relevant="true"} 1.0'
        in httpx.get(f"{ui.url}/metrics").text
    )
    page.context.close()


def _prediction(product_id: str, category_id: str, path: str) -> dict[str, Any]:
    return {
        "product_id": product_id, "content_hash": None, "model_name": "classifier",
        "model_version": 1,
        "exclusive_top_k": [{"category_id": category_id, "path": path.split(" > "),
                             "probability": 0.9}],
        "rule_based_positives": [],
        "uncertainty": {"least_confidence": 0.1, "margin": 0.8, "entropy": 0.3,
                        "vote_entropy": None, "kl_consensus": None},
        "predicted_at": 1_000,
    }  # fmt: skip


def test_mappings_screen_approve_choose_and_reject_by_keyboard(ui: Ui, browser: Any) -> None:
    topics = ui.settings.topics
    (c0, path0), (c1, path1), (c2, path2) = ui.classes
    # (feed, feed path, products, predicted class of each): sorted by support, 7, 6, 5
    plan = [
        ("shop-a", ["Damen", "Schuhe"], [(c0, path0)] * 6 + [(c1, path1)]),
        ("shop-b", ["Kinder"], [(c2, path2)] * 6),
        ("shop-a", ["Damen", "Taschen"], [(c1, path1)] * 5),
    ]
    products, predictions = serde_for("Product"), serde_for("Prediction")
    product_records, prediction_records, of_path = [], [], {}
    rows = iter(ui.catalogue)
    for feed, feed_path, predicted in plan:
        ids = []
        for category_id, path in predicted:
            product = _product(next(rows), ui.images)
            pid = f"{feed}-{product['product_id']}"
            product.update(product_id=pid, feed=feed, category_path=feed_path)
            product_records.append((pid.encode(), products.encode(product)))
            prediction_records.append((pid.encode(),
                                       predictions.encode(_prediction(pid, category_id, path))))  # fmt: skip
            ids.append(pid)
        of_path[" > ".join(feed_path)] = ids
    person = of_path["Damen > Schuhe"][-1]  # predicted c1, labelled c0 by a person: kept
    human = {"product_id": person, "objective": "exclusive", "category_ids": [c0],
             "source": "human", "annotator": "bob", "strategy": "random", "score": 0.0,
             "time_taken_ms": 3_000, "model_version": 1, "labelled_at": 2_000}  # fmt: skip
    produce(ui.settings, topics.normalized, product_records)
    produce(ui.settings, topics.predictions, prediction_records)
    produce(ui.settings, topics.labels,
            [(f"{person}/exclusive".encode(), serde_for("Label").encode(human))])  # fmt: skip

    page = _login(browser, ui, "alice", "/mappings")
    deadline = time.monotonic() + 30

    def ready() -> bool:  # the follower has read the new records, the person's label too
        rows = page.locator("#rows tr")
        return rows.count() >= 3 and rows.nth(0).locator("td").nth(4).inner_text() == "1"

    while not ready():
        assert time.monotonic() < deadline, "the mined rows did not appear"
        time.sleep(0.5)
        page.reload()
        page.wait_for_selector("body[data-loaded='1']")
    table = page.locator("#rows tr")
    first = table.nth(0)
    assert first.get_attribute("aria-selected") == "true"
    cells = [first.locator("td").nth(i).inner_text() for i in range(7)]
    assert cells == ["shop-a", "Damen \u203a Schuhe", path0.replace(" > ", " \u203a "),
                     "7", "1", "100%", "86%"]  # fmt: skip

    page.keyboard.press("a")  # approve the mined node
    page.wait_for_selector("#rows tr:nth-child(1) td.decision.approved")
    page.wait_for_selector("#rows tr:nth-child(2)[aria-selected='true']")
    page.keyboard.press("c")  # another node for "Kinder": the search, then Enter
    page.keyboard.type(path1)
    choice = page.locator("#results li").first
    choice.wait_for()
    chosen = choice.get_attribute("data-category-id")
    page.keyboard.press("Enter")
    page.wait_for_selector("#rows tr:nth-child(2) td.decision.approved")
    page.wait_for_selector("#rows tr:nth-child(3)[aria-selected='true']")
    page.keyboard.press("r")
    page.wait_for_selector("#rows tr:nth-child(3) td.decision.rejected")
    page.screenshot(path=str(DOCS / "ui-mappings.png"))

    labels = {}
    for record in read_topics(ui.settings.kafka, [topics.labels], timeout_s=30, idle_s=1.0):
        if record.value is not None:
            labels[record.key] = serde_for("Label").decode(record.value)
    mapped = {label["product_id"]: label for label in labels.values()
              if label["source"] == "mapping"}  # fmt: skip
    shoes, kids = of_path["Damen > Schuhe"], of_path["Kinder"]
    assert set(mapped) == set(shoes[:-1]) | set(kids)  # not the person's, nothing rejected
    assert {mapped[pid]["category_ids"][0] for pid in shoes[:-1]} == {c0}
    assert {mapped[pid]["category_ids"][0] for pid in kids} == {chosen}
    assert all(label["annotator"] == "alice" and label["objective"] == "exclusive"
               for label in mapped.values())  # fmt: skip
    assert labels[f"{person}/exclusive".encode()]["source"] == "human"

    decisions = {}
    for record in read_topics(ui.settings.kafka, [topics.mappings], timeout_s=30, idle_s=1.0):
        decisions[record.key] = json.loads(record.value)
    by_path = {tuple(d["feed_path"]): d for d in decisions.values()}
    assert by_path[("Damen", "Schuhe")]["status"] == "approved"
    assert by_path[("Damen", "Schuhe")]["category_id"] == c0
    assert by_path[("Kinder",)]["category_id"] == chosen
    assert by_path[("Damen", "Taschen")]["status"] == "rejected"
    assert by_path[("Damen", "Taschen")]["decided_by"] == "alice"

    csrf = page.get_attribute('meta[name="csrf-token"]', "content")
    body = {"feed": "shop-a", "feed_path": ["Damen", "Taschen"], "category_id": "c_000000000000"}
    assert page.request.post("/ui/api/mappings/approve", data=body).status == 403  # no token
    unknown = page.request.post("/ui/api/mappings/approve", data=body,
                                headers={"X-CSRF-Token": csrf})  # fmt: skip
    assert unknown.status == 422
    metrics = httpx.get(f"{ui.url}/metrics").text
    assert 'prodcat_mapping_decisions_total{status="approved"} 2.0' in metrics
    assert "prodcat_mapping_ui_labels_total 12.0" in metrics
    page.context.close()


def test_review_queue_confirm_take_and_choose_by_keyboard(ui: Ui, browser: Any) -> None:
    topics = ui.settings.topics
    (c0, _), (c1, _), (c2, path2) = ui.classes
    products, label_serde = serde_for("Product"), serde_for("Label")
    # (label, its source and annotator, the model's category): held in this order
    plan = [(c1, "human", "bob", c0), (c1, "rules", None, c2), (c0, "human", "bob", c1),
            (c2, "import", None, c0)]  # fmt: skip
    rows = iter(ui.catalogue[-len(plan) :])
    product_records, label_records, suspect_records, ids = [], [], [], []
    for index, (category, source, annotator, suggested) in enumerate(plan):
        product = _product(next(rows), ui.images)
        pid = f"rv-{product['product_id']}"
        product["product_id"] = pid
        ids.append(pid)
        key = f"{pid}/exclusive".encode()
        label = {"product_id": pid, "objective": "exclusive", "category_ids": [category],
                 "source": source, "annotator": annotator, "labelled_at": 5_000 + index}  # fmt: skip
        held = {"product_id": pid, "category_id": category, "source": source,
                "annotator": annotator, "labelled_at": 5_000 + index, "status": "held",
                "suggested_id": suggested, "self_confidence": 0.05, "suggested_probability": 0.9,
                "flagged_at": 10 + index, "flagged_by": "retrain v7"}  # fmt: skip
        if index == 3:  # relabelled after it was held: the next job judges it, not a reviewer
            label["labelled_at"] = 9_000
        product_records.append((pid.encode(), products.encode(product)))
        label_records.append((key, label_serde.encode(label)))
        suspect_records.append((key, json.dumps(held).encode()))
    produce(ui.settings, topics.normalized, product_records)
    produce(ui.settings, topics.labels, label_records)
    produce(ui.settings, topics.suspects, suspect_records)

    page = _login(browser, ui, "alice", "/review")
    deadline = time.monotonic() + 30
    while page.locator("#held-count").inner_text() != "4 held":  # the follower reads them
        assert time.monotonic() < deadline, "the held labels did not appear"
        time.sleep(0.5)
        page.reload()
        page.wait_for_selector("body[data-loaded='1']")
    assert page.locator("#p-id").inner_text() == ids[0]
    assert page.locator("#l-by").inner_text() == "human / bob"
    assert page.locator("#s-prob").inner_text() == "90%"
    source_rows = page.locator("#by-source tr").all_inner_texts()
    assert [r.split("\t")[0] for r in source_rows] == ["human", "import", "rules"]

    page.keyboard.press("y")  # the label is right
    page.wait_for_selector(f"#p-id:text('{ids[1]}')")
    page.keyboard.press("s")  # take the model's category
    page.wait_for_selector(f"#p-id:text('{ids[2]}')")
    page.keyboard.press("/")  # choose another
    page.keyboard.type(path2)
    choice = page.locator("#results li").first
    choice.wait_for()
    chosen = choice.get_attribute("data-category-id")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#p-id:text('{ids[3]}')")
    page.wait_for_selector("#confirmed-count:text('3 reviewed')")
    page.screenshot(path=str(DOCS / "ui-review.png"))

    # The fourth label changed after it was held: refused, still held.
    csrf = page.get_attribute('meta[name="csrf-token"]', "content")
    stale = page.request.post("/ui/api/review/confirm", data={"product_id": ids[3]},
                              headers={"X-CSRF-Token": csrf})  # fmt: skip
    assert stale.status == 409 and "changed after it was held" in stale.text()
    assert page.request.post("/ui/api/review/confirm", data={"product_id": ids[0]}).status == 403

    suspects = {}
    for record in read_topics(ui.settings.kafka, [topics.suspects], timeout_s=30, idle_s=1.0):
        suspects[record.key.decode().split("/")[0]] = json.loads(record.value)
    assert [suspects[pid]["status"] for pid in ids] == ["confirmed"] * 3 + ["held"]
    assert all(suspects[pid]["reviewed_by"] == "alice" for pid in ids[:3])
    assert suspects[ids[0]]["category_id"] == c1 and suspects[ids[0]]["labelled_at"] == 5_000
    assert (suspects[ids[1]]["category_id"], suspects[ids[1]]["previous_category_id"]) == (c2, c1)
    assert (suspects[ids[2]]["category_id"], suspects[ids[2]]["previous_category_id"]) == (
        chosen,
        c0,
    )
    labels = {}
    for record in read_topics(ui.settings.kafka, [topics.labels], timeout_s=30, idle_s=1.0):
        if record.value is not None:
            labels[record.key.decode().split("/")[0]] = label_serde.decode(record.value)
    assert labels[ids[0]]["labelled_at"] == 5_000  # confirmed: unchanged
    for pid, category in ((ids[1], c2), (ids[2], chosen)):
        label = labels[pid]
        assert (label["category_ids"], label["source"], label["annotator"], label["strategy"]) == (
            [category],
            "human",
            "alice",
            "review",
        )
        assert label["labelled_at"] == suspects[pid]["labelled_at"]  # the confirmation covers it
    metrics = httpx.get(f"{ui.url}/metrics").text
    assert 'prodcat_label_reviews_total{decision="confirmed",source="human"} 1.0' in metrics
    assert 'prodcat_label_reviews_total{decision="corrected",source="rules"} 1.0' in metrics
    assert 'prodcat_labels_held{source="import"} 1.0' in metrics
    assert 'prodcat_labels_held{source="rules"} 0.0' in metrics
    page.context.close()


def test_double_labelling_agreement_and_adjudication(ui: Ui, browser: Any, tmp_path: Path) -> None:
    """Every product labelled twice (its own server and topics): bob labels alice's products
    blind, one alike and one not; the progress page shows kappa; the disagreement is held and
    carol adjudicates it in the Review queue."""
    topics = unique_topics()
    settings = ui.settings.model_copy(update={
        "topics": topics,
        "milvus": MilvusSettings(uri=str(tmp_path / "milvus" / "v.db")),
        "ui": ui.settings.ui.model_copy(update={"double_label_share": 1.0,
                                                "state_dir": tmp_path / "state"}),
    })  # fmt: skip
    ensure_topics(settings.kafka, topic_specs(topics))
    requests = serde_for("AnnotationRequest")
    (c0, _), (c1, _), _ = ui.classes
    suggestions = [{"category_id": cid, "path": path.split(" > "), "probability": prob}
                   for (cid, path), prob in zip(ui.classes, (0.5, 0.3, 0.2), strict=True)]  # fmt: skip
    rows = ui.catalogue[20:22]
    ids = [f"m{row['id']}" for row in rows]
    produce(settings, topics.normalized, [
        (pid.encode(), serde_for("Product").encode(_product(row, ui.images)))
        for pid, row in zip(ids, rows, strict=True)
    ])  # fmt: skip
    produce(settings, topics.annotation_requests, [
        (pid.encode(), requests.encode({"product_id": pid, "strategy": "margin", "score": 0.5,
                                        "suggestions": suggestions, "model_name": "classifier",
                                        "model_version": 1, "requested_at": 1_000 + i}))
        for i, pid in enumerate(ids)
    ])  # fmt: skip
    with web_parts(settings) as parts, serving(parts) as url:
        here = Ui(settings, url, ui.catalogue, ui.images, ui.classes)
        alice = _login(browser, here, "alice", "/annotate")
        for pid in ids:  # both labelled c0 by alice
            alice.wait_for_selector(f"body[data-product-id='{pid}']")
            alice.keyboard.press("1")
        alice.wait_for_selector("#empty:not([hidden])")  # not hers to label twice

        bob = _login(browser, here, "bob", "/annotate")
        bob.wait_for_selector(f"body[data-product-id='{ids[0]}']")
        assert "second opinion" in bob.inner_text("#p-strategy")
        bob.keyboard.press("1")  # alike
        bob.wait_for_selector(f"body[data-product-id='{ids[1]}']")
        bob.keyboard.press("2")  # not alike
        bob.wait_for_selector("#empty:not([hidden])")

        labels = {r.key: serde_for("Label").decode(r.value)
                  for r in here.read(topics.labels, 2)}  # fmt: skip
        assert {(v["product_id"], v["category_ids"][0], v["annotator"])
                for v in labels.values()} == {(ids[0], c0, "alice"), (ids[1], c0, "alice")}  # fmt: skip
        opinions = {json.loads(r.value)["product_id"]: json.loads(r.value)
                    for r in here.read(topics.second_opinions, 2)}  # fmt: skip
        assert (opinions[ids[0]]["category_id"], opinions[ids[1]]["category_id"]) == (c0, c1)
        assert opinions[ids[1]]["first_annotator"] == "alice"
        (held,) = [json.loads(r.value) for r in here.read(topics.suspects, 1)]
        assert (held["product_id"], held["status"], held["category_id"]) == (ids[1], "held", c0)
        assert (held["suggested_id"], held["flagged_by"]) == (c1, "double labelling (bob)")

        alice.goto("/progress")
        assert alice.inner_text("#kappa") == "kappa 0.00"  # 1 of 2 alike: no better than chance
        assert "1 of 2 products labelled alike" in alice.inner_text("#agreement-counts")
        assert "1 disagreements wait" in alice.inner_text("#agreement-counts")
        alice.locator("#agreement").screenshot(path=str(DOCS / "ui-agreement.png"))

        carol = _login(browser, here, "carol", "/review")
        carol.wait_for_selector(f"#p-id:text('{ids[1]}')")
        assert carol.text_content("#s-title") == "The second annotator says"
        assert carol.inner_text("#l-by") == "human / alice"
        carol.keyboard.press("s")  # bob was right
        carol.wait_for_selector("#empty:not([hidden])")
        final = serde_for("Label").decode(here.read(topics.labels, 3)[-1].value)
        assert (final["product_id"], final["category_ids"], final["annotator"]) == (
            ids[1], [c1], "carol")  # fmt: skip
        alice.goto("/progress")
        assert "0 disagreements wait" in alice.inner_text("#agreement-counts")
        metrics = httpx.get(f"{url}/metrics").text
        assert 'prodcat_second_opinions_total{agreed="true"} 1.0' in metrics
        assert 'prodcat_second_opinions_total{agreed="false"} 1.0' in metrics
        for page in (alice, bob, carol):
            page.context.close()


def test_http_guards_auth_csrf_and_uploads(ui: Ui, data_dir: Path) -> None:
    """The same server over plain HTTP: no anonymous reads or writes, no write without the
    session's CSRF token or from another site, login throttled, uploads capped and sniffed.
    (The module's last test: logins stay throttled for a minute after it.)"""
    with httpx.Client(base_url=ui.url) as anonymous:
        first = anonymous.get("/ui/api/next")
        assert first.status_code == 401
        assert "httponly" in first.headers["set-cookie"].lower()
        assert "samesite=lax" in first.headers["set-cookie"].lower()
        assert anonymous.get("/annotate").headers["location"].startswith("/login")
        assert anonymous.post("/ui/api/undo").status_code == 401
        page = anonymous.get("/login")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        cookie = anonymous.cookies["prodcat_session"]
        token = page.text.split('name="csrf-token" content="')[1].split('"')[0]
        wrong = {"name": "carol", "password": "not it at all", "csrf_token": token}
        assert anonymous.post("/login", data=wrong).status_code == 401
        no_token = {"name": "carol", "password": PASSWORD, "csrf_token": "forged"}
        assert anonymous.post("/login", data=no_token).status_code == 403
        good = {"name": "carol", "password": PASSWORD, "csrf_token": token}
        evil = anonymous.post("/login", data=good, headers={"Origin": "https://evil.example"})
        assert evil.status_code == 403
        assert anonymous.post("/login", data=good).status_code == 303
        assert anonymous.cookies["prodcat_session"] != cookie  # a new session at login
        page = anonymous.get("/annotate")
        assert page.status_code == 200
        token = page.text.split('name="csrf-token" content="')[1].split('"')[0]

        assert anonymous.post("/ui/api/undo").status_code == 403  # no token
        headers = {"X-CSRF-Token": token}
        cross = {**headers, "Sec-Fetch-Site": "cross-site"}
        assert anonymous.post("/ui/api/undo", headers=cross).status_code == 403
        assert anonymous.post("/ui/api/undo", headers=headers).status_code == 409  # nothing

        image = (ui.images / ui.catalogue[0]["filename"]).read_bytes()
        upload = anonymous.post("/ui/api/similar", headers=headers,
                                files={"image": ("a.jpg", image, "image/jpeg")}, data={"k": "3"})  # fmt: skip
        assert upload.status_code == 200 and len(upload.json()["hits"]) == 3
        html = anonymous.post("/ui/api/similar", headers=headers,
                              files={"image": ("a.jpg", b"<html></html>", "image/jpeg")})  # fmt: skip
        assert html.status_code == 415
        big = b"\xff\xd8\xff" + b"\x00" * ui.settings.ui.max_upload_bytes
        assert anonymous.post("/ui/api/similar", headers=headers,
                              files={"image": ("b.jpg", big)}).status_code == 413  # fmt: skip
        bad = {"query_product_id": "x", "neighbour_product_id": "y", "rank": 0, "score": 1,
               "relevant": True}  # fmt: skip
        assert anonymous.post("/ui/api/judgements", headers=headers, json=bad).status_code == 422
        unknown = {"product_id": "nope", "category_id": "c_000000000000"}
        assert anonymous.post("/ui/api/label", headers=headers, json=unknown).status_code == 409

        for _ in range(ui.settings.ui.login_attempts_per_minute):
            anonymous.post("/login", data={**wrong, "name": "bob", "csrf_token": token})
        throttled = anonymous.post("/login", data={**good, "name": "bob", "csrf_token": token})
        assert throttled.status_code == 429  # even the right password, for a minute
