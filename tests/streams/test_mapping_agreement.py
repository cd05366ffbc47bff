"""The classify stage's check of approved mappings against its predictions."""

from __future__ import annotations

from prodcat.streams.mappings import agreement
from prodcat.training.mappings import Decision, feed_path_key, is_under

SHORTS = ("Clothing", "Women", "Shorts")


def _prediction(path: tuple[str, ...]) -> tuple[str, ...]:
    """A prediction's top-1 path, as the classify stage passes it."""
    return path


def test_products_of_approved_paths_are_checked_against_the_mapped_node() -> None:
    approved = {
        feed_path_key("a", ("Hosen",)): Decision(
            "a", ("Hosen",), "approved", "c_1", ("Clothing", "Women")
        )
    }
    products = [
        {"feed": "a", "category_path": ["Hosen"]},  # under the node: agrees
        {"feed": "a", "category_path": ["Hosen"]},  # elsewhere: disagrees
        {"feed": "a", "category_path": ["Röcke"]},  # no approved mapping: not checked
        {"feed": "b", "category_path": ["Hosen"]},  # another feed's path: not checked
    ]
    predictions = [
        _prediction(SHORTS),
        _prediction(("Garden", "Hoses")),
        _prediction(SHORTS),
        _prediction(SHORTS),
    ]
    assert agreement(products, predictions, approved) == {"a": (2, 1)}
    assert agreement(products, predictions, {}) == {}


def test_is_under_compares_names_as_category_ids_do() -> None:
    assert is_under(("clothing", "WOMEN", "Shorts"), ("Clothing", "Women"))
    assert not is_under(("Clothing",), ("Clothing", "Women"))
    assert not is_under(("Clothing", "Men"), ("Clothing", "Women"))
    assert not is_under((), ())
