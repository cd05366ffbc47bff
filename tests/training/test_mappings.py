"""Mining the feed-path → node table from predictions and labels."""

from __future__ import annotations

from prodcat.core.ids import path_id
from prodcat.training.mappings import Evidence, feed_path_key, mine

SHORTS = ("Clothing", "Women", "Shorts")
SKIRTS = ("Clothing", "Women", "Skirts")
HOSES = ("Garden", "Hoses")


def _items(
    feed: str, feed_path: tuple[str, ...], predicted: tuple[str, ...], n: int
) -> list[Evidence]:
    return [Evidence(feed, feed_path, predicted) for _ in range(n)]


def test_a_pure_feed_path_maps_to_its_leaf_with_support_and_agreement() -> None:
    items = _items("a", ("Damen", "Hosen", "Shorts"), SHORTS, 9) + _items(
        "a", ("Damen", "Hosen", "Shorts"), SKIRTS, 1
    )
    [found] = mine(items, min_support=5, min_purity=0.8)
    assert (found.path, found.category_id) == (SHORTS, path_id(SHORTS))
    assert (found.support, found.labelled, found.purity, found.agreement) == (10, 0, 0.9, 0.9)
    assert found.label_purity is None
    assert found.key == feed_path_key("a", ("Damen", "Hosen", "Shorts"))


def test_a_mixed_feed_path_backs_off_to_the_common_parent() -> None:
    items = _items("a", ("Damen",), SHORTS, 5) + _items("a", ("Damen",), SKIRTS, 5)
    [found] = mine(items, min_support=5, min_purity=0.8)
    assert found.path == ("Clothing", "Women") and found.purity == 1.0


def test_labels_outvote_predictions_and_are_measured_on_their_own() -> None:
    wrong = [Evidence("a", ("Gartenschlauch",), SHORTS, HOSES) for _ in range(6)]
    right = _items("a", ("Gartenschlauch",), HOSES, 2)
    [found] = mine(wrong + right, min_support=5, min_purity=0.8)
    assert found.path == HOSES
    assert (found.labelled, found.label_purity, found.agreement) == (6, 1.0, 0.25)


def test_small_paths_are_left_out_and_disagreement_maps_to_the_top_root() -> None:
    items = (
        _items("a", ("x",), SHORTS, 4)
        + _items("b", ("y",), SHORTS, 3)
        + _items("b", ("y",), HOSES, 2)
    )
    [found] = mine(items, min_support=5, min_purity=0.8)
    assert (found.feed, found.path, found.purity) == ("b", ("Clothing",), 0.6)
    assert mine([Evidence("a", (), SHORTS)] * 10) == []  # no feed path: nothing to map


def test_the_offline_experiment_counts_approvals_and_scores_mapping_labels() -> None:
    from prodcat.training.dataset import Example
    from prodcat.training.mapping_experiment import run

    kinds = {
        ("Shop", "Hosen", "Kurz"): ("Clothing", "Women", "Shorts"),
        ("Shop", "Röcke"): ("Clothing", "Women", "Skirts"),
        ("Shop", "Garten"): ("Garden", "Tools", "Hoses"),
    }
    words = {"Shorts": "denim shorts", "Skirts": "pleated skirt", "Hoses": "garden hose"}
    examples = [
        Example(f"p{i}-{n}", f"{words[path[-1]]} {i}", "brand", "", raw, path)
        for n, (raw, path) in enumerate(kinds.items())
        for i in range(60)
    ]
    result = run(examples, level=3, labels=30, seed=0)
    assert (result.products, result.labelled, result.approved) == (180, 30, 3)
    assert result.mapped_products == 150 and result.exact == 1.0 and result.on_path == 1.0
    assert result.per_approval_mean == 50.0
    assert result.prior_exact == 1.0  # the model's best class within each mapped node
    assert "| x |" in result.row("x")
