"""The Taxonomy page end to end in headless Chromium, through a real Kafka broker and a real
SavedModel: an editor finds a node and renames it by keyboard; the change is applied in the
background (the live tree, the label naming the node with its history, a remapped model version,
the products predicted there re-scored) and shows as done with its report; the category search
offers the new name; an annotator who is not an editor cannot change anything. The test takes
``docs/ui-taxonomy.png``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prodcat.core.ids import label_key, path_id
from prodcat.core.model_store import available_versions
from prodcat.core.settings import (
    KafkaSettings,
    MilvusSettings,
    ServingSettings,
    Settings,
    UiSettings,
    load_settings,
)
from prodcat.schemas.serde import serde_for
from prodcat.serving.backends import InProcessBackend
from prodcat.serving.product_vectors import ProductVectors
from prodcat.serving.web.auth import Users
from prodcat.serving.web.server import web_parts
from prodcat.streams.backfill import backfill
from prodcat.streams.compacted import read_compacted
from prodcat.streams.stage import FEED_HEADER
from prodcat.streams.taxonomy_changes import change_taxonomy
from prodcat.streams.taxonomy_store import configured_taxonomy, current_taxonomy, publish_taxonomy
from prodcat.streams.topics import ensure_topics, topic_specs
from prodcat.training.taxonomy import CategoryTree
from tests.conftest import TrainedClassifier
from tests.serving.web.test_browser import DOCS, PASSWORD, _chromium, serving, unique_topics
from tests.streams.kafka_io import produce, product_records

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.browser]


class Site:
    def __init__(self, settings: Settings, url: str, tree: CategoryTree, node: str) -> None:
        self.settings, self.url, self.tree, self.node = settings, url, tree, node


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
    kafka_bootstrap: str,
    data_dir: Path,
    trained_classifier: TrainedClassifier,
    embedder_model_base: Path,
) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("taxonomy-ui")
    models = root / "models"
    shutil.copytree(trained_classifier.model_base, models)
    topics = unique_topics()
    settings = load_settings(
        data_dir=data_dir,
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        topics=topics,
        serving=ServingSettings(model_base=models, batch_size=64, committee_size=1),
        milvus=MilvusSettings(uri=str(root / "milvus" / "v.db")),
        ui=UiSettings(
            users_file=root / "users.json", state_dir=root / "state", taxonomy_editors=("alice",)
        ),
    )
    ensure_topics(settings.kafka, topic_specs(settings.topics))
    users = Users(settings.ui.users_file)
    for name in ("alice", "bob"):
        users.add(name, PASSWORD, iterations=10_000)
    card = trained_classifier.card
    paths = [tuple(c["path"].split(" > ")) for c in card["classes"]]
    paths += [tuple(n["path"].split(" > ")) for n in card["rule_based_nodes"]]
    tree = CategoryTree.from_paths(paths, min_count=1, min_root_count=1)
    publish_taxonomy(settings, tree)
    produce(settings, topics.normalized, product_records(data_dir, 0, 120), {FEED_HEADER: b"shop"})
    backfill(settings, job="initial", rate=0, progress=False)
    predictions = serde_for("Prediction")
    tops = [predictions.decode(v)["exclusive_top_k"][0]
            for v in read_compacted(settings.kafka, topics.predictions).values.values()]  # fmt: skip
    node = max({t["category_id"] for t in tops}, key=[t["category_id"] for t in tops].count)
    label = {"product_id": "p-labelled", "objective": "exclusive", "category_ids": [node],
             "source": "human", "annotator": "bob", "strategy": None, "score": None,
             "time_taken_ms": None, "model_version": 1, "labelled_at": 1_000}  # fmt: skip
    produce(settings, topics.labels,
            [(label_key("p-labelled", "exclusive"), serde_for("Label").encode(label))])  # fmt: skip

    store = ProductVectors(settings.milvus)
    embedder = InProcessBackend(embedder_model_base, "image_embedder", poll_interval_s=None)
    with web_parts(
        settings, vectors=store, embedder=embedder,
        taxonomy=lambda: configured_taxonomy(settings),
        apply_change=lambda change: change_taxonomy(settings, change, backfill=True).as_json(),
    ) as parts, serving(parts) as url:  # fmt: skip
        yield Site(settings, url, tree, node)
    store.close()
    embedder.close()


def _page(browser: Any, site: Site, name: str) -> Any:
    context = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.goto("/taxonomy")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/taxonomy")
    page.wait_for_selector("body[data-loaded='1']")
    return page


def test_an_editor_renames_a_node_by_keyboard_and_it_is_applied_everywhere(site: Site) -> None:
    from playwright.sync_api import sync_playwright

    old = site.tree[site.node]
    new_path = (*old.path[:-1], "Renamed Node")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), headless=True)
        try:
            page = _page(browser, site, "alice")
            page.keyboard.press("/")
            page.keyboard.type(" ".join(old.path))
            first = page.locator("#node-results li").first
            first.wait_for()
            assert first.get_attribute("data-node-id") == site.node
            page.keyboard.press("Enter")
            page.wait_for_selector(f"body[data-node-id='{site.node}']")
            page.keyboard.press("n")
            assert page.input_value("#change-input") == old.name  # selected: typing replaces it
            page.keyboard.type("Renamed Node")
            page.keyboard.press("Enter")
            done = page.locator("#changes tr[data-state='done']")
            done.wait_for()
            cells = [done.locator("td").nth(i).inner_text() for i in range(8)]
            shown = " \u203a ".join(old.path)
            assert cells[1] == f"rename {shown} → Renamed Node"
            assert cells[2:6] == ["alice", "1", "0", "v2"] and cells[7] == "done"
            rescored = int(cells[6])
            assert rescored > 0

            page.fill("#node-search", "Renamed Node")  # the search reads the new tree at once
            renamed = page.locator("#node-results li").first
            renamed.wait_for()
            assert renamed.get_attribute("data-node-id") == path_id(new_path)
            page.keyboard.press("Enter")
            page.wait_for_selector(f"body[data-node-id='{path_id(new_path)}']")
            assert page.locator("#change-form").is_hidden()
            page.screenshot(path=str(DOCS / "ui-taxonomy.png"))

            bob = _page(browser, site, "bob")
            assert bob.locator("#change-form").count() == 0  # read only
            csrf = bob.get_attribute('meta[name="csrf-token"]', "content")
            body = {"op": "rename", "node": path_id(new_path), "name": "Nope"}
            refused = bob.request.post("/ui/api/taxonomy/changes", data=body,
                                       headers={"X-CSRF-Token": csrf})  # fmt: skip
            assert refused.status == 403
        finally:
            browser.close()

    live = current_taxonomy(site.settings)
    assert live is not None and live.tree[path_id(new_path)].path == new_path
    labels = read_compacted(site.settings.kafka, site.settings.topics.labels).values
    label = serde_for("Label").decode(labels[label_key("p-labelled", "exclusive")])
    assert label["category_ids"] == [path_id(new_path)] and label["annotator"] == "bob"
    assert label["history"][0]["category_ids"] == [site.node]
    assert available_versions(site.settings.serving.model_base / "classifier") == [1, 2]
    predictions = serde_for("Prediction")
    live_predictions = read_compacted(site.settings.kafka, site.settings.topics.predictions)
    tops = [predictions.decode(v)["exclusive_top_k"][0] for v in live_predictions.values.values()]
    assert sum(t["category_id"] == path_id(new_path) for t in tops) == rescored
    assert not any(t["category_id"] == site.node for t in tops)
