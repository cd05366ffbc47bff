"""The classifier's inputs: the raw string fields of a ``Product``, as the SavedModel takes them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["model_inputs"]

Array = np.ndarray[Any, Any]


def model_inputs(products: Sequence[Mapping[str, Any]]) -> dict[str, Array]:
    """The classifier's raw string inputs for ``products`` (Product records).

    ``category_text`` stays empty, as in training (``prodcat.training.pipeline.features_of``): the feed's
    category is the label's source there, so feeding it here would be train/serve skew.
    """
    return {
        "title": np.array([p.get("title") or "" for p in products], dtype=object),
        "brand": np.array([p.get("brand") or "" for p in products], dtype=object),
        "category_text": np.array(["" for _ in products], dtype=object),
        "description": np.array([p.get("description") or "" for p in products], dtype=object),
    }
