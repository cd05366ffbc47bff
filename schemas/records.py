"""Typed records: one ``TypedDict`` per Avro record of ``schemas/*.avsc``.

The serde reads and writes plain dicts; these types say what those dicts hold, so code that builds
or reads a record is checked by mypy. Field names and types follow the schemas exactly
(``tests/schemas/test_records.py`` compares the keys with every schema's fields):

* a nullable field (``["null", T]``) is ``T | None``; an array is ``list``; a map is
  ``dict[str, V]``; ``timestamp-millis`` is ``int`` milliseconds; ``bytes`` is ``bytes``;
* an enum is a ``Literal`` of its symbols; ``int``/``long`` are ``int``, ``double`` is ``float``.

Typical use::

    from prodcat.schemas import decode_as, serde_for
    from prodcat.schemas.records import Product

    product = decode_as(serde_for("Product"), data, Product)   # a Product, checked by name
"""

from __future__ import annotations

from typing import Final, Literal, NotRequired, TypedDict

__all__ = [
    "RECORD_TYPES",
    "AnnotationRequest",
    "CategoryScore",
    "DeadLetter",
    "FeedProfile",
    "FieldSource",
    "Label",
    "LabelSource",
    "ModelEvent",
    "ModelEventKind",
    "Money",
    "Objective",
    "Prediction",
    "Product",
    "ProfileSegment",
    "SimilarityJudgement",
    "Suggestion",
    "Taxonomy",
    "TaxonomyNode",
    "Uncertainty",
]


# --- products.normalized ---------------------------------------------------------------------


class Money(TypedDict):
    """``prodcat.Money``: a price."""

    value: float
    currency: str | None


class Product(TypedDict):
    """``prodcat.Product`` (schemas/product.avsc), topic products.normalized."""

    product_id: str
    feed: str
    source_id: str | None
    title: str
    brand: str | None
    category_path: list[str]
    description: str | None
    gender: str | None
    sizes: list[str]
    price: Money | None
    list_price: Money | None
    image_urls: list[str]
    product_url: str | None
    retailer: str | None
    attributes: dict[str, str]
    profile_version: int | None
    content_hash: str
    seen_at: int


# --- products.deadletter ---------------------------------------------------------------------


class DeadLetter(TypedDict):
    """``prodcat.DeadLetter`` (schemas/dead_letter.avsc), topic products.deadletter."""

    stage: str
    error_kind: str
    message: str
    original_key: bytes | None
    original_value: bytes | None
    original_headers: dict[str, bytes]
    feed: str | None
    source_topic: str
    source_partition: int
    source_offset: int
    worker: str | None
    failed_at: int


# --- products.predictions --------------------------------------------------------------------


class CategoryScore(TypedDict):
    """``prodcat.CategoryScore``: one category of a prediction."""

    category_id: str
    path: list[str]
    probability: float


class Uncertainty(TypedDict):
    """``prodcat.Uncertainty``: uncertainty scores of a prediction (nats where entropic)."""

    least_confidence: float
    margin: float
    entropy: float
    vote_entropy: float | None
    kl_consensus: float | None


class Decision(TypedDict):
    """``prodcat.Decision``: the deepest category of a prediction that meets the precision target."""

    kind: str  # leaf | backed_off | abstained
    category_id: str | None
    path: list[str]
    probability: float
    target: float


class Prediction(TypedDict):
    """``prodcat.Prediction`` (schemas/prediction.avsc), topic products.predictions."""

    product_id: str
    content_hash: str | None
    model_name: str
    model_version: int
    exclusive_top_k: list[CategoryScore]
    rule_based_positives: list[CategoryScore]
    uncertainty: Uncertainty
    predicted_at: int
    decision: NotRequired[Decision | None]


# --- labels ----------------------------------------------------------------------------------

Objective = Literal["exclusive", "rule_based"]
LabelSource = Literal["human", "rules", "import", "mapping", "unknown"]


class LabelRevision(TypedDict):
    """What a label said before a taxonomy change rewrote it."""

    category_ids: list[str]
    labelled_at: int
    change: str
    changed_at: int


class Label(TypedDict):
    """``prodcat.Label`` (schemas/label.avsc), topic labels."""

    product_id: str
    objective: Objective
    category_ids: list[str]
    source: LabelSource
    annotator: str | None
    strategy: str | None
    score: float | None
    time_taken_ms: int | None
    model_version: int | None
    labelled_at: int
    history: NotRequired[list[LabelRevision]]


# --- annotation.requests ---------------------------------------------------------------------


class Suggestion(TypedDict):
    """``prodcat.Suggestion``: a category suggested to the annotator."""

    category_id: str
    path: list[str]
    probability: float


class AnnotationRequest(TypedDict):
    """``prodcat.AnnotationRequest`` (schemas/annotation_request.avsc), topic annotation.requests."""

    product_id: str
    strategy: str
    score: float
    suggestions: list[Suggestion]
    model_name: str
    model_version: int
    requested_at: int
    decision: NotRequired[str | None]
    partial_path: NotRequired[list[str]]


# --- models.events ---------------------------------------------------------------------------

ModelEventKind = Literal["trained", "evaluated", "promoted", "rejected", "unknown"]


class ModelEvent(TypedDict):
    """``prodcat.ModelEvent`` (schemas/model_event.avsc), topic models.events."""

    model_name: str
    model_version: int
    event: ModelEventKind
    metrics: dict[str, float]
    baseline_version: int | None
    reason: str | None
    artifact_uri: str | None
    occurred_at: int


# --- similarity.judgements -------------------------------------------------------------------


class SimilarityJudgement(TypedDict):
    """``prodcat.SimilarityJudgement`` (schemas/similarity_judgement.avsc)."""

    query_product_id: str | None
    query_image_sha256: str | None
    neighbour_product_id: str
    rank: int
    score: float
    relevant: bool
    category_id: str | None
    model_version: int | None
    annotator: str
    judged_at: int


# --- feeds.profiles --------------------------------------------------------------------------


class FieldSource(TypedDict):
    """``prodcat.FieldSource``: where one role of a feed profile comes from."""

    role: str
    sources: list[str]
    kind: str
    delimiter: str | None
    split: str | None
    scale: float
    currency: str | None
    confidence: float
    evidence: str
    examples: list[str]


class ProfileSegment(TypedDict):
    """``prodcat.ProfileSegment``: the retailers one profile of a feed is for."""

    path: str
    values: list[str]


class FeedProfile(TypedDict):
    """``prodcat.FeedProfile`` (schemas/feed_profile.avsc), topic feeds.profiles.

    The record form of :class:`prodcat.streams.feeds.profile.FeedProfile`.
    """

    feed: str
    shape: str
    version: int
    sample_size: int
    fingerprint: str
    keys: list[str]
    segment: ProfileSegment | None
    fields: list[FieldSource]
    overrides: list[FieldSource]
    created_at: int
    reason: str


# --- taxonomy --------------------------------------------------------------------------------


class TaxonomyNode(TypedDict):
    """``prodcat.TaxonomyNode``: one category of a stored tree."""

    id: str
    name: str
    path: list[str]
    parent: str | None
    count: int
    exclusive: bool


class Taxonomy(TypedDict):
    """``prodcat.Taxonomy`` (schemas/taxonomy.avsc), topic taxonomy: one version of the tree."""

    version: str
    sequence: int
    source: str
    nodes: list[TaxonomyNode]
    exclusive_max_depth: int
    exclusive_min_count: int
    previous: str | None
    reason: str
    created_at: int


RECORD_TYPES: Final[dict[str, type]] = {
    "AnnotationRequest": AnnotationRequest,
    "DeadLetter": DeadLetter,
    "FeedProfile": FeedProfile,
    "Label": Label,
    "ModelEvent": ModelEvent,
    "Prediction": Prediction,
    "Product": Product,
    "SimilarityJudgement": SimilarityJudgement,
    "Taxonomy": Taxonomy,
}
"""The top-level record type of each shipped schema, by record name."""
