"""A category as a person names it on a command line."""

from __future__ import annotations

import pytest

from prodcat.core.ids import category_reference, path_id


def test_an_id_is_taken_as_it_is_and_a_path_becomes_its_id_and_levels() -> None:
    assert category_reference(" c_0123456789ab ") == ("c_0123456789ab", ())
    assert category_reference("Clothing > Shorts ") == (
        path_id(["Clothing", "Shorts"]),
        ("Clothing", "Shorts"),
    )
    with pytest.raises(ValueError, match="neither a category id"):
        category_reference(" > ")
