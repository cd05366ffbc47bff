"""The queue over the SQLite view: filters, answered products leaving, leases, label validation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from prodcat.core.ids import label_key
from prodcat.core.settings import ServingSettings, Settings, UiSettings
from prodcat.schemas.serde import serde_for
from prodcat.serving.web.annotation import AnnotationService, VocabularyCache
from prodcat.serving.web.exceptions import ConflictError, InvalidInputError, PublishError
from prodcat.serving.web.leases import LeaseBook
from prodcat.serving.web.metrics import WebMetrics
from prodcat.serving.web.view import TopicView, words
from prodcat.training.labels import Vocabulary

LABELS = serde_for("Label")


def request(pid: str, strategy: str, at: int, score: float = 0.5) -> dict[str, Any]:
    return {
        "product_id": pid,
        "strategy": strategy,
        "score": score,
        "model_name": "classifier",
        "model_version": 3,
        "requested_at": at,
        "suggestions": [
            {"category_id": "c_aaaaaaaaaaaa", "path": ["A"], "probability": 0.6},
            {"category_id": "c_bbbbbbbbbbbb", "path": ["A", "B"], "probability": 0.3},
        ],
    }


def product(pid: str, title: str, path: list[str], image: str = "file:///x.jpg") -> dict[str, Any]:
    return {
        "product_id": pid,
        "feed": "f",
        "title": title,
        "brand": "Acme",
        "category_path": path,
        "description": "d" * 5000,
        "price": {"value": 9.5, "currency": "EUR"},
        "image_urls": [image] if image else [],
    }


def label(pid: str, annotator: str = "x", at: int = 1) -> dict[str, Any]:
    return {
        "product_id": pid,
        "objective": "exclusive",
        "category_ids": ["c_aaaaaaaaaaaa"],
        "source": "human",
        "annotator": annotator,
        "strategy": "margin",
        "score": 0.1,
        "time_taken_ms": 1000,
        "model_version": 3,
        "labelled_at": at,
    }


def put_label(view: TopicView, record: dict[str, Any]) -> None:
    view.apply_label(label_key(record["product_id"], "exclusive"), record, LABELS.encode(record))


@pytest.fixture
def view() -> TopicView:
    view = TopicView()
    for i, strategy in enumerate(["margin", "random", "entropy", "margin"]):
        view.apply_request(request(f"p{i}", strategy, at=1000 + i))
    return view


def test_open_requests_filter_by_strategy_oldest_first(view: TopicView) -> None:
    assert [r.product_id for r in view.open_requests()] == ["p0", "p1", "p2", "p3"]
    assert [r.product_id for r in view.open_requests("margin")] == ["p0", "p3"]
    assert [r.product_id for r in view.open_requests("uncertainty")] == ["p0", "p2", "p3"]
    assert [r.product_id for r in view.open_requests("random")] == ["p1"]
    assert view.depth() == {"margin": 2, "random": 1, "entropy": 1}


def test_answered_products_leave_and_a_tombstone_brings_them_back(view: TopicView) -> None:
    put_label(view, label("p0"))
    rule = {**label("p2"), "objective": "rule_based"}  # other objectives do not answer
    view.apply_label(label_key("p2", "rule_based"), rule, LABELS.encode(rule))
    assert [r.product_id for r in view.open_requests()] == ["p1", "p2", "p3"]
    assert view.open_request("p0") is None and view.request("p0") is not None
    view.apply_label(label_key("p0", "exclusive"), None, None)
    assert view.open_request("p0") is not None and view.depth()["margin"] == 2
    put_label(view, label("p9"))  # a label read before its request (topics interleave freely)
    view.apply_request(request("p9", "margin", at=2000))
    assert view.open_request("p9") is None and view.depth()["margin"] == 2


def test_queue_reads_use_the_open_flag_index(view: TopicView) -> None:
    """Queue depth and the next open request must not walk every request ever answered."""
    for sql in [
        "SELECT r.strategy, count(*) FROM requests r WHERE r.open = 1 GROUP BY r.strategy",
        "SELECT r.* FROM requests r WHERE r.open = 1 AND (r.requested_at, r.product_id) > (0, '') "
        "ORDER BY r.requested_at, r.product_id LIMIT 200",
    ]:
        plan = " ".join(row[-1] for row in view._db.execute("EXPLAIN QUERY PLAN " + sql))
        assert "USING" in plan and "requests_open" in plan and "TEMP B-TREE" not in plan, plan


def test_a_long_queue_is_paged(tmp_path: Path) -> None:
    view = TopicView(tmp_path / "view.sqlite")
    with view.batch():
        for i in range(1234):
            view.apply_request(request(f"p{i:05d}", "margin", at=i // 10))
    got = [r.product_id for r in view.open_requests()]
    assert got == [f"p{i:05d}" for i in range(1234)]
    view.close()
    assert not (tmp_path / "view.sqlite").exists()


def test_products_cards_search_and_categories() -> None:
    view = TopicView()
    view.apply_product(b"a", product("a", "Blue Running Shoe", ["Footwear", "Shoes", "Running"]))
    view.apply_product(b"b", product("b", "Red Shoe Rack", ["Home", "Storage"], image=""))
    card = view.product("a")
    assert card is not None and card["image_url"] == "file:///x.jpg"
    assert card["category_path"] == ["Footwear", "Shoes", "Running"]
    assert len(card["description"]) == 1500
    assert [p["product_id"] for p in view.search_products("shoe", 10)] == ["a"]  # b has no image
    found = view.search_products("sho", 10, with_image=False)
    assert [p["product_id"] for p in found] == ["b", "a"]  # shortest title first
    assert [p["product_id"] for p in view.search_products("shoe blu", 10)] == ["a"]
    assert view.search_products("shoe green", 10) == []
    assert view.search_products("!!", 10) == []
    cats = view.search_categories("shoes", 10)
    assert [c["path"] for c in cats] == ["Footwear > Shoes", "Footwear > Shoes > Running"]
    assert view.category_path(cats[0]["category_id"]) == "Footwear > Shoes"
    assert view.search_categories("100%_", 10) == []
    view.apply_product(b"a", None)
    assert view.product("a") is None and view.search_products("blue", 10) == []


def test_words_are_distinct_and_lower_case() -> None:
    assert words('Blue "SHOE" blue_x 100%') == ["blue", "shoe", "blue_x", "100"]
    assert words("  ") == []


class FixedVocabulary(VocabularyCache):
    """The vocabulary of a served classifier (class c_aaaaaaaaaaaa, node c_cccccccccccc)."""

    def __init__(self) -> None:
        self.vocabulary = Vocabulary(3, {"c_aaaaaaaaaaaa": "A"}, {"c_cccccccccccc": "A > C"})

    def get(self) -> Vocabulary:
        return self.vocabulary


@pytest.fixture
def service(view: TopicView) -> AnnotationService:
    settings = Settings(ui=UiSettings(), serving=ServingSettings())
    leases = LeaseBook(ttl_s=60, skip_ttl_s=600)
    metrics = WebMetrics(CollectorRegistry())
    # no publisher: these tests never get as far as writing
    return AnnotationService(settings, view, leases, None, metrics, FixedVocabulary())  # type: ignore[arg-type]


def test_two_annotators_never_get_the_same_product(service: AnnotationService) -> None:
    first = service.next_item("alice", None)
    second = service.next_item("bob", None)
    assert first["product_id"] == "p0" and second["product_id"] == "p1"
    assert service.next_item("alice", None)["product_id"] == "p0"  # still hers
    service.skip("alice", "p0")
    assert service.next_item("alice", None)["product_id"] == "p2"
    assert service.next_item("carol", None)["product_id"] == "p0"  # skipped: free for others
    assert service.next_item("alice", "random") is None  # p1 is bob's
    card = service.next_item("dave", "margin")
    assert card["product_id"] == "p3" and card["strategy"] == "margin"
    assert [s["known"] for s in card["suggestions"]] == [True, False]
    assert service.depth() == {"margin": 2, "random": 1, "entropy": 1}
    assert service.metrics.queue_depth.labels("margin")._value.get() == 2


def test_a_backed_off_request_carries_the_path_the_model_is_sure_of(
    service: AnnotationService, view: TopicView
) -> None:
    backed_off = {**request("p9", "margin", at=1), "decision": "backed_off", "partial_path": ["A"]}
    view.apply_request(backed_off)
    card = service.next_item("erin", None)
    assert card["product_id"] == "p9"  # the oldest request
    assert (card["decision"], card["partial_path"]) == ("backed_off", ["A"])
    assert serde_for("AnnotationRequest").decode(serde_for("AnnotationRequest").encode(backed_off))[
        "partial_path"
    ] == ["A"]
    plain = service.next_item("fay", None)  # a request from before decisions existed
    assert (plain["decision"], plain["partial_path"]) == (None, [])


def test_labels_are_validated_and_leases_respected(service: AnnotationService) -> None:
    service.next_item("alice", None)
    with pytest.raises(ConflictError, match="alice"):
        service.submit("bob", "p0", "c_aaaaaaaaaaaa")
    with pytest.raises(InvalidInputError, match="unknown category"):
        service.submit("alice", "p0", "c_bbbbbbbbbbbb")
    with pytest.raises(InvalidInputError):
        service.submit("alice", "p0", "not an id!")
    with pytest.raises(ConflictError, match="not in the queue"):
        service.submit("alice", "nope", "c_aaaaaaaaaaaa")
    with pytest.raises(ConflictError, match="nothing to undo"):
        service.undo("alice")


def test_category_search_offers_classes_then_nodes(service: AnnotationService) -> None:
    found = service.vocabulary.search("a", 10)
    assert [(c["category_id"], c["kind"]) for c in found] == [
        ("c_aaaaaaaaaaaa", "class"),
        ("c_cccccccccccc", "node"),
    ]
    assert [c["path"] for c in service.vocabulary.search("a c", 10)] == ["A > C"]


def test_every_per_product_statement_of_the_view_uses_an_index() -> None:
    """Catching up applies each product with deletes by product id; a scan there is quadratic
    (22,889 demo records took 106 s instead of 4 s before the title_words index). The old title's
    words are found from the product's row and deleted by the word index's own key."""
    view = TopicView()
    statements = [
        ("DELETE FROM products WHERE product_id = ?", ("p",)),
        ("SELECT title, brand FROM products WHERE product_id = ?", ("p",)),
        ("DELETE FROM title_words WHERE word = ? AND product_id = ?", ("w", "p")),
    ]
    for sql, params in statements:
        plan = " ".join(row[-1] for row in view._db.execute("EXPLAIN QUERY PLAN " + sql, params))
        assert "USING" in plan and "SCAN" not in plan, (sql, plan)
    # A product renamed, then deleted: its old words leave the index each time.
    view.apply_product(b"p", {"product_id": "p", "title": "red shirt", "brand": "acme"})
    view.apply_product(b"p", {"product_id": "p", "title": "blue shoe", "brand": None})
    assert sorted(r[0] for r in view._db.execute("SELECT word FROM title_words")) == [
        "blue",
        "shoe",
    ]
    view.apply_product(b"p", None)
    assert view._db.execute("SELECT count(*) FROM title_words").fetchone()[0] == 0


class FlakyPublisher:
    """Records what it is asked to write; ``fail`` makes the next send unacknowledged."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self.fail = False

    def send(self, topic: str, key: bytes, value: bytes | None) -> None:
        if self.fail:
            self.fail = False
            raise PublishError(f"{topic}: no acknowledgement within 15 s")
        self.sent.append((topic, key, value))


@pytest.fixture
def writing(view: TopicView) -> tuple[AnnotationService, FlakyPublisher]:
    settings = Settings(ui=UiSettings(), serving=ServingSettings())
    publisher = FlakyPublisher()
    service = AnnotationService(
        settings,
        view,
        LeaseBook(ttl_s=60, skip_ttl_s=600),
        publisher,  # type: ignore[arg-type]
        WebMetrics(CollectorRegistry()),
        FixedVocabulary(),
    )
    return service, publisher


def test_labelling_an_unleased_product_takes_its_lease(
    writing: tuple[AnnotationService, FlakyPublisher],
) -> None:
    service, publisher = writing
    publisher.fail = True  # alice's write is not acknowledged: she still holds the product
    with pytest.raises(PublishError):
        service.submit("alice", "p2", "c_aaaaaaaaaaaa")
    with pytest.raises(ConflictError, match="being labelled by alice"):
        service.submit("bob", "p2", "c_aaaaaaaaaaaa")
    assert service.submit("alice", "p2", "c_aaaaaaaaaaaa")["annotator"] == "alice"
    assert [key for _, key, _ in publisher.sent] == [label_key("p2", "exclusive")]


def test_an_unacknowledged_undo_can_be_retried_and_never_undoes_an_older_label(
    writing: tuple[AnnotationService, FlakyPublisher],
) -> None:
    service, publisher = writing
    service.next_item("alice", None)
    service.submit("alice", "p0", "c_aaaaaaaaaaaa")
    service.next_item("alice", None)
    service.submit("alice", "p1", "c_aaaaaaaaaaaa")
    publisher.fail = True
    with pytest.raises(PublishError):
        service.undo("alice")
    assert service.undo("alice")["product_id"] == "p1"  # the retry undoes the same label
    assert service.undo("alice")["product_id"] == "p0"
    keys = [(key, value) for _, key, value in publisher.sent]
    assert keys[2:] == [(label_key("p1", "exclusive"), None), (label_key("p0", "exclusive"), None)]


def test_queue_reads_and_writes_wait_until_the_view_has_caught_up(
    view: TopicView, tmp_path: Path
) -> None:
    """Before the follower has read every topic to its end a labelled product may look open:
    handing it out or writing its label could overwrite someone's label."""
    from fastapi.testclient import TestClient

    from prodcat.serving.web.app import WebParts, create_web_app
    from prodcat.serving.web.auth import SessionCodec, Users
    from prodcat.serving.web.follower import TopicFollower
    from prodcat.serving.web.similarity import SimilarityService

    settings = Settings(ui=UiSettings(), serving=ServingSettings())
    users = Users(tmp_path / "users.json")
    users.add("alice", "correct horse", iterations=1000)
    metrics = WebMetrics(CollectorRegistry())
    leases = LeaseBook(ttl_s=60, skip_ttl_s=600)
    follower = TopicFollower(settings, view)  # not started: it has read nothing yet
    parts = WebParts(
        settings=settings.ui,
        images=settings.images,
        users=users,
        codec=SessionCodec(b"k" * 32, 3600),
        view=view,
        annotation=AnnotationService(settings, view, leases, None, metrics, FixedVocabulary()),  # type: ignore[arg-type]
        similarity=SimilarityService(settings, view, None, None, None, metrics),  # type: ignore[arg-type]
        mappings=None,  # type: ignore[arg-type]
        taxonomy=None,  # type: ignore[arg-type]
        review=None,  # type: ignore[arg-type]
        metrics=metrics,
        follower=follower,
    )
    with TestClient(create_web_app(parts), base_url="http://127.0.0.1") as client:
        page = client.get("/login").text
        token = page.split('name="csrf_token" value="')[1].split('"')[0]
        form = {"name": "alice", "password": "correct horse", "csrf_token": token}
        assert client.post("/login", data=form, follow_redirects=False).status_code == 303
        csrf = {
            "x-csrf-token": client.get("/annotate")
            .text.split('name="csrf-token" content="')[1]
            .split('"')[0]
        }
        waiting = client.get("/ui/api/next")
        assert (waiting.status_code, waiting.headers["retry-after"]) == (503, "5")
        body = {"product_id": "p0", "category_id": "c_aaaaaaaaaaaa"}
        assert client.post("/ui/api/label", json=body, headers=csrf).status_code == 503
        assert client.post("/ui/api/undo", headers=csrf).status_code == 503
        assert leases.holder("p0") is None  # nothing was handed out
        follower.ready.set()
        assert client.get("/ui/api/next").json()["item"]["product_id"] == "p0"


def test_the_random_share_measures_the_models_accuracy_with_labels() -> None:
    """Answers to random requests against the top-1 suggestion they carried, per feed: an exact
    match or a label at the suggestion's node or above agrees; other strategies do not count."""
    view = TopicView()
    settings = Settings(ui=UiSettings(), serving=ServingSettings())
    service = AnnotationService(settings, view, LeaseBook(60, 600), None,  # type: ignore[arg-type]
                                WebMetrics(CollectorRegistry()), FixedVocabulary())  # fmt: skip
    answers = {  # product: (feed, strategy, label)
        "r1": ("f", "random", "c_aaaaaaaaaaaa"),  # the top-1 itself
        "r2": ("f", "random", "c_cccccccccccc"),  # A > C, deeper than the top-1 (A): disagrees
        "r3": ("f", "random", "c_dddddddddddd"),  # another node: disagrees
        "r4": ("g", "random", "c_aaaaaaaaaaaa"),
        "m1": ("f", "margin", "c_dddddddddddd"),  # not a random request: not counted
    }
    for pid, (feed, strategy, category) in answers.items():
        view.apply_product(pid.encode(), {**product(pid, "t", []), "feed": feed})
        view.apply_request(request(pid, strategy, 1))
        put_label(view, {**label(pid, at=10), "strategy": strategy, "category_ids": [category]})
    assert service.labelled_accuracy(since_ms=0) == {"f": (1, 3), "g": (1, 1)}
    metrics = service.metrics
    assert metrics.labelled_accuracy.labels("f")._value.get() == pytest.approx(1 / 3)
    deeper = request("r5", "random", 1)
    deeper["suggestions"].reverse()  # top-1: A > B
    view.apply_request(deeper)
    put_label(view, {**label("r5", at=10), "strategy": "random"})  # A, above it: agrees
    assert service.labelled_accuracy(since_ms=0)[""] == (1, 1)  # r5 has no product: no feed
    assert service.labelled_accuracy(since_ms=11) == {}  # nothing in the window: no figure
    assert math.isnan(metrics.labelled_accuracy.labels("f")._value.get())
    assert metrics.labelled_accuracy_labels.labels("f")._value.get() == 0


def test_successive_versions_tell_when_predictions_have_stabilised() -> None:
    """The stopping criterion on the progress page: each new version's top-1 against the previous
    version's on the products both predicted; two steps at kappa ≥ 0.99 in a row: stable."""
    view = TopicView()
    service = AnnotationService(Settings(ui=UiSettings(), serving=ServingSettings()), view,
                                LeaseBook(60, 600), None, WebMetrics(CollectorRegistry()),  # type: ignore[arg-type]
                                FixedVocabulary())  # fmt: skip

    def predict(version: int, categories: list[str]) -> None:
        for i, category in enumerate(categories):
            top = [{"category_id": category, "path": [category], "probability": 0.9}]
            view.apply_prediction(f"p{i}".encode(),
                                  {"model_version": version, "exclusive_top_k": top})  # fmt: skip

    first = ["a", "b", "c", "a", "b", "c", "a", "b", "c", "a"]
    predict(1, first)
    assert service.stability() == {"steps": [], "stable": False, "threshold": 0.99}
    second = ["a", "b", "c", "a", "b", "c", "b", "c", "a", "a"]  # three changed
    predict(2, second)
    predict(2, second)  # the same version again (a backfill): still compared with version 1
    stability = service.stability()
    (step,) = stability["steps"]
    assert (step["from"], step["to"], step["products"], step["changed"]) == (1, 2, 10, 3)
    assert step["kappa"] < 0.99 and not stability["stable"]
    predict(3, second)
    assert not service.stability()["stable"]  # one calm step is not enough
    predict(4, second)
    stability = service.stability()
    assert [(s["from"], s["to"]) for s in stability["steps"]] == [(1, 2), (2, 3), (3, 4)]
    assert [s["kappa"] for s in stability["steps"][1:]] == [1.0, 1.0] and stability["stable"]


def test_the_view_gives_the_similarity_search_each_products_predicted_kind() -> None:
    view = TopicView()
    for pid, category, probability in (("p1", "c_a", 0.9), ("p2", "c_b", 0.4), ("p3", "c_a", 0.7)):
        top = [{"category_id": category, "path": [category], "probability": probability}]
        view.apply_prediction(pid.encode(), {"model_version": 1, "exclusive_top_k": top})
    view.apply_prediction(b"p3", None)  # a tombstone: no kind any more
    ids = ["p1", "p2", "p3", "p4"] + [f"x{i}" for i in range(600)]
    assert view.kinds(ids) == {"p1": ("c_a", 0.9), "p2": ("c_b", 0.4)}
