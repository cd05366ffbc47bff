"""Query by committee at prediction time: the newest model versions score the same products.

The classify agent asks the backend for the outputs of the served (newest) version and, when
``ServingSettings.committee_size >= 2``, of up to ``committee_size - 1`` older versions. Versions
may know different classes: every member is aligned on the newest version's class ids (a class a
member does not know gets probability 0; its mass on classes the newest version dropped is
discarded and the row renormalised). The agreement scores go into ``Prediction.uncertainty``
(``vote_entropy``, ``kl_consensus``) for the sampler's QBC strategies.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from prodcat.serving.backends import Arrays, ModelBackend, ModelOutput
from prodcat.training import acquisition

logger = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]


@runtime_checkable
class CommitteeBackend(Protocol):
    """A backend that can also answer with older versions of its model."""

    def predict_members(self, inputs: Arrays, newest: int, size: int) -> list[ModelOutput]:
        """Outputs of up to ``size`` versions older than ``newest``, newest first; members that
        cannot answer are left out."""
        ...


def predict_with_committee(
    backend: ModelBackend, inputs: Arrays, size: int
) -> tuple[ModelOutput, list[ModelOutput]]:
    """The served version's output, and the older members' (none when ``size < 2``)."""
    output = backend.predict(inputs)
    if size < 2 or not isinstance(backend, CommitteeBackend):
        return output, []
    return output, backend.predict_members(inputs, output.version, size - 1)


def align(probs: Array, member_ids: Sequence[str], newest_ids: Sequence[str]) -> Array:
    """``probs`` [n, len(member_ids)] as a distribution over ``newest_ids`` (unknown classes 0,
    rows renormalised; a row with no shared class becomes uniform)."""
    probs = np.asarray(probs, dtype=np.float64)
    column = {cid: i for i, cid in enumerate(member_ids)}
    out = np.zeros((probs.shape[0], len(newest_ids)))
    for j, cid in enumerate(newest_ids):
        i = column.get(cid)
        if i is not None:
            out[:, j] = probs[:, i]
    sums = out.sum(axis=1, keepdims=True)
    uniform = np.full_like(out, 1.0 / max(1, len(newest_ids)))
    return np.where(sums > 0, out / np.where(sums > 0, sums, 1.0), uniform)


def committee_scores(
    newest_ids: Sequence[str], members: Sequence[tuple[Sequence[str], Array]]
) -> tuple[Array, Array] | None:
    """(vote entropy, KL to the consensus) per product over ``members`` ((class ids, probs) each,
    the newest first); None with fewer than two members."""
    if len(members) < 2:
        return None
    stacked = np.stack([align(probs, ids, newest_ids) for ids, probs in members])
    return acquisition.vote_entropy(stacked), acquisition.kl_to_consensus(stacked)
