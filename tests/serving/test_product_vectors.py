"""Title vectors and the fused image + title search (milvus-lite here; the server in
test_vector_store_server.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from prodcat.core.ids import path_id
from prodcat.core.settings import MilvusSettings, SimilaritySettings
from prodcat.serving.product_vectors import ProductVectors, QueryVectors, fuse, same_kind
from prodcat.serving.text_vectors import has_words, text_vectors
from prodcat.serving.vector_store import Hit
from tests.serving.test_vector_store import DIM, ROWS

pytestmark = [pytest.mark.integration]

TITLE_DIM = 64


def title_of(row_id: str) -> str:
    """A title that shares words with its leaf's titles, less with its branch's."""
    top, mid, leaf, i = row_id.split("-")
    return f"{top} {mid}-line {leaf} model {int(i) % 3}"


def hybrid_vectors(uri: str, **similarity: object) -> ProductVectors:
    """ROWS and their titles in collections of their own (``hybrid_images``, ``hybrid_titles``)."""
    milvus = MilvusSettings(
        uri=uri,
        collection="hybrid_images",
        dim=DIM,
        text_collection="hybrid_titles",
        text_dim=TITLE_DIM,
    )
    vectors = ProductVectors(milvus, SimilaritySettings(**similarity))  # type: ignore[arg-type]
    vectors.ensure_collections()
    vectors.images.upsert(ROWS)
    vectors.texts.upsert(
        vectors.title_rows(
            (r.product_id, title_of(r.product_id), r.category_path, r.image_url) for r in ROWS
        )
    )
    vectors.images.flush()
    vectors.texts.flush()
    return vectors


def exact_fused(query: int, weight: float, prefix: list[str] | None = None) -> list[str]:
    """The exact weighted top 10 for ROWS[query], itself excluded (numpy, every row)."""
    images = np.stack([r.vector / np.linalg.norm(r.vector) for r in ROWS])
    titles = text_vectors([title_of(r.product_id) for r in ROWS], TITLE_DIM)
    scores = weight * (titles @ titles[query]) + (1 - weight) * (images @ images[query])
    order = [
        int(i)
        for i in np.argsort(-scores, kind="stable")
        if i != query
        and (prefix is None or list(ROWS[int(i)].category_path[: len(prefix)]) == prefix)
    ]
    return [ROWS[i].product_id for i in order[:10]]


@pytest.fixture(scope="module")
def vectors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductVectors]:
    made = hybrid_vectors(str(tmp_path_factory.mktemp("milvus") / "v.db"), text_weight=0.4)
    yield made
    made.close()


def test_title_vectors_are_unit_stable_across_processes_and_any_script() -> None:
    titles = ["Chemise en lin bleu", "Льняная рубашка синяя", "藍色亞麻襯衫", "قميص كتان أزرق"]
    here = text_vectors(titles)
    assert here.shape == (4, 256) and np.allclose(np.linalg.norm(here, axis=1), 1.0, atol=1e-5)
    code = (
        "import sys, json; from prodcat.serving.text_vectors import text_vectors; "
        "print(json.dumps(text_vectors(json.loads(sys.argv[1])).tolist()))"
    )
    there = subprocess.run(
        [sys.executable, "-c", code, json.dumps(titles)],
        capture_output=True,
        check=True,
        text=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert np.allclose(np.array(json.loads(there.stdout)), here, atol=1e-6)
    shirt, other_shirt, coffee_maker = text_vectors(
        ["Льняная рубашка синяя", "Рубашка льняная белая", "Кофеварка"]
    )
    assert shirt @ other_shirt > shirt @ coffee_maker + 0.2
    assert not np.any(text_vectors([""])[0])
    assert has_words("藍色") and has_words("42") and not has_words(" !!! ... ")
    with pytest.raises(ValueError, match="at least 8"):
        text_vectors(["x"], dim=4)


def test_fusion_by_weights_and_by_ranks() -> None:
    image, text = {"a": 0.9, "b": 0.2}, {"b": 0.8, "c": 0.7}
    weighted = fuse(image, text, 0.25, "weighted")
    assert weighted == [
        ("a", pytest.approx(0.675)),
        ("b", pytest.approx(0.35)),
        ("c", pytest.approx(0.175)),
    ]
    rrf = dict(fuse(image, text, 0.5, "rrf", ["a", "b"], ["b", "c"]))
    assert rrf["b"] == pytest.approx(0.5 / 62 + 0.5 / 61)
    assert rrf["a"] == pytest.approx(0.5 / 61) and rrf["c"] == pytest.approx(0.5 / 62)
    assert [pid for pid, _ in fuse({"y": 0.5, "x": 0.5}, {}, 0.5, "weighted")] == ["x", "y"]


@pytest.mark.parametrize("prefix", [None, ["Jewellery", "Kids"]])
def test_hybrid_search_returns_the_exact_fused_ranking(
    vectors: ProductVectors, prefix: list[str] | None
) -> None:
    query = 17
    pid = ROWS[query].product_id
    category = path_id(prefix) if prefix else None
    hits = vectors.search(vectors.of_product(pid, "hybrid"), 10, category_id=category, exclude=pid)
    assert [h.product_id for h in hits] == exact_fused(query, 0.4, prefix)
    images = vectors.search(vectors.of_product(pid, "image"), 10, category_id=category, exclude=pid)
    titles = vectors.search(vectors.of_product(pid, "text"), 10, category_id=category, exclude=pid)
    assert [h.product_id for h in images] == exact_fused(query, 0.0, prefix)
    assert [h.product_id for h in hits] not in ([h.product_id for h in images],)
    assert all(h.image_url for h in titles)  # title rows show the product's image
    if prefix:
        assert all(h.category_path[:2] == prefix for h in hits + titles)


def test_one_side_only_and_the_rrf_setting(vectors: ProductVectors) -> None:
    pid = ROWS[3].product_id
    only_text = QueryVectors(text=vectors.texts.get_vector(pid))
    assert vectors.search(only_text, 3)[0].score == pytest.approx(1.0, abs=1e-4)
    assert vectors.search(QueryVectors(), 3) == []
    rrf = ProductVectors(vectors.images._settings, SimilaritySettings(fusion="rrf"))
    try:
        hits = rrf.search(rrf.of_product(pid, "hybrid"), 5)
        # first by image, among the first three by title (leaf mates share its title)
        assert hits[0].product_id == pid
        assert 0.5 / 61 + 0.5 / 63 <= hits[0].score <= 0.5 / 61 + 0.5 / 61
    finally:
        rrf.close()


def test_without_title_vectors_a_hybrid_query_is_answered_by_images(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Title vectors off (or their collection not made yet): hybrid falls back to the image
    side, counts say 0 titles, words cannot be searched."""
    made = hybrid_vectors(str(tmp_path_factory.mktemp("milvus") / "off.db"))
    made.close()
    milvus = MilvusSettings(
        uri=made.images._settings.uri, collection="hybrid_images", dim=DIM,
        text_collection="hybrid_titles", text_dim=TITLE_DIM,
    )  # fmt: skip
    for similarity in (SimilaritySettings(text_vectors=False), SimilaritySettings()):
        vectors = ProductVectors(milvus, similarity)
        if similarity.text_vectors:
            vectors.texts.drop()  # not made yet
        try:
            pid = ROWS[5].product_id
            query = vectors.of_product(pid, "hybrid")
            assert query.image is not None and query.text is None
            assert vectors.search(query, 1)[0].product_id == pid
            assert vectors.count() == {"images": len(ROWS), "texts": 0}
            assert vectors.title_vector("Jewellery") is None
        finally:
            vectors.close()


def test_same_kind_term_reranks_by_agreeing_predictions() -> None:
    hits = [Hit("a", 0.90), Hit("b", 0.85), Hit("c", 0.80), Hit("d", 0.70)]
    kinds = {"a": ("shoes", 0.9), "b": ("shirts", 0.9), "c": ("shirts", 0.1), "d": ("shirts", 1.0)}
    ranked = same_kind(hits, ("shirts", 1.0), kinds, 0.3)
    assert [h.product_id for h in ranked] == ["b", "d", "a", "c"]
    assert ranked[0].score == pytest.approx(0.85 + 0.3 * 0.9**0.5)
    assert ranked[1].score == pytest.approx(0.70 + 0.3)
    assert ranked[3].score == pytest.approx(0.80 + 0.3 * 0.1**0.5)
    # an unsure query (probability 0) and a product without a prediction change nothing
    assert [h.product_id for h in same_kind(hits, ("shirts", 0.0), kinds, 0.3)] == list("abcd")
    assert [h.score for h in same_kind(hits, ("shoes", 1.0), {}, 0.3)] == [0.9, 0.85, 0.8, 0.7]


def test_search_with_predicted_kinds(vectors: ProductVectors) -> None:
    """With a kinds lookup, a query product's neighbours that share its predicted kind rank
    first, in every mode; without one (or at weight 0) the search is unchanged."""
    parity = {r.product_id: (f"kind-{i % 2}", 1.0) for i, r in enumerate(ROWS)}
    asked: list[list[str]] = []

    def kinds(ids: list[str]) -> dict[str, tuple[str, float]]:
        asked.append(list(ids))
        return {pid: parity[pid] for pid in ids if pid in parity}

    query = 17
    pid = ROWS[query].product_id
    mine = parity[pid][0]
    for mode in ("hybrid", "image", "text"):
        plain = vectors.search(vectors.of_product(pid, mode), 10, exclude=pid)
        assert {parity[h.product_id][0] for h in plain} == {"kind-0", "kind-1"}
        for weight, expect_sorted in ((2.0, True), (0.0, False)):
            kinded = ProductVectors(
                vectors.images._settings,
                SimilaritySettings(text_weight=0.4, kind_weight=weight),
                kinds=kinds,
            )
            try:
                hits = kinded.search(kinded.of_product(pid, mode), 10, exclude=pid, of=pid)
            finally:
                kinded.close()
            if expect_sorted:
                assert all(parity[h.product_id][0] == mine for h in hits), mode
                assert pid not in [h.product_id for h in hits]
            else:
                assert [h.product_id for h in hits] == [h.product_id for h in plain]
    assert asked  # the lookup was consulted (for the query, then its candidates)
