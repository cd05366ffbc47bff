"""The category tree on Kafka: versions on the compacted ``taxonomy`` topic, and :func:`load_taxonomy`.

**Layout.** One partition, compacted; the key is the tree's version (a content hash, see
:attr:`CategoryTree.version`), the value a ``Taxonomy`` record (schemas/taxonomy.avsc): every node
with its id, path, parent, product count and exclusive flag, plus a ``sequence`` (1 for the first
tree stored, +1 for every import). The live tree is the record with the highest sequence, so no
"current" pointer can disagree with the versions: importing a tree that is already live changes
nothing; importing an older version again stores it under its key with a new sequence (compaction
drops the old copy), which makes it live. Every version ever stored stays readable by its key,
which ``prodcat taxonomy diff`` uses.

**Reading it.** :func:`load_taxonomy` is what every process calls: the live tree of the topic;
when the topic holds none (or cannot be read), the file of ``PRODCAT_TAXONOMY__SOURCE``; else a
:class:`TaxonomyError` that says to run ``prodcat taxonomy import``. Code below this layer never
reads Kafka: it takes the :class:`CategoryTree` as an argument.
"""

from __future__ import annotations

import logging
import time

from prodcat.core.settings import Settings
from prodcat.schemas.exceptions import RegistryError, SerdeError
from prodcat.schemas.serde import AvroSerde, serde_for
from prodcat.streams.acked import produce_acknowledged
from prodcat.streams.compacted import read_compacted
from prodcat.streams.exceptions import StreamsError, TopicError
from prodcat.streams.topics import TAXONOMY_MAX_MESSAGE_BYTES
from prodcat.training.exceptions import TaxonomyError
from prodcat.training.taxonomy import CategoryTree
from prodcat.training.taxonomy_files import StoredTaxonomy, exclusive_ids, read_taxonomy_file

__all__ = [
    "configured_source",
    "configured_taxonomy",
    "current_taxonomy",
    "find_version",
    "load_taxonomy",
    "publish_taxonomy",
    "read_taxonomies",
]

logger = logging.getLogger(__name__)


def _serde(settings: Settings) -> AvroSerde:
    return serde_for("Taxonomy", settings.serde.registry_url, topic=settings.topics.taxonomy)


def read_taxonomies(settings: Settings, *, timeout_s: float = 60.0) -> list[StoredTaxonomy]:
    """Every stored version, oldest sequence first (undecodable records are logged and skipped)."""
    serde = _serde(settings)
    live = read_compacted(settings.kafka, settings.topics.taxonomy, timeout_s=timeout_s)
    stored: list[StoredTaxonomy] = []
    for key, value in live.values.items():
        try:
            stored.append(StoredTaxonomy.from_record(serde.decode(value)))
        except RegistryError:
            raise
        except (SerdeError, TaxonomyError) as exc:
            logger.warning("%s: skipping version %r: %s", settings.topics.taxonomy, key, exc)
    return sorted(stored, key=lambda s: s.sequence)


def current_taxonomy(settings: Settings) -> StoredTaxonomy | None:
    """The live version on the topic, or None when it holds none."""
    stored = read_taxonomies(settings)
    return stored[-1] if stored else None


def find_version(stored: list[StoredTaxonomy], ref: str) -> StoredTaxonomy:
    """A stored version by sequence number (``3``), version hash or a unique prefix of it."""
    if ref.isdigit() and len(ref) < 8:
        hits = [s for s in stored if s.sequence == int(ref)]
    else:
        hits = [s for s in stored if s.version.startswith(ref)]
    if len(hits) != 1:
        known = ", ".join(f"{s.sequence}={s.version}" for s in stored) or "none"
        raise TaxonomyError(f"no single taxonomy version {ref!r} (stored: {known})")
    return hits[0]


def publish_taxonomy(
    settings: Settings, tree: CategoryTree, *, reason: str = "", timeout_s: float = 60.0
) -> tuple[StoredTaxonomy, bool]:
    """Store ``tree`` as the live version; returns it and whether anything was written.

    The exclusive subset is computed with ``PRODCAT_TAXONOMY__EXCLUSIVE_*``. A tree that is already
    live with the same subset settings is not written again.
    """
    config = settings.taxonomy
    stored = read_taxonomies(settings)
    live = stored[-1] if stored else None
    depth, count = config.exclusive_max_depth, config.exclusive_min_count
    if (
        live is not None
        and live.version == tree.version
        and (live.exclusive_max_depth, live.exclusive_min_count) == (depth, count)
    ):
        return live, False
    version = StoredTaxonomy(
        tree,
        sequence=(live.sequence + 1) if live else 1,
        exclusive=exclusive_ids(tree, max_depth=depth, min_count=count),
        exclusive_max_depth=depth,
        exclusive_min_count=count,
        previous=live.version if live else None,
        reason=reason,
        created_at=time.time_ns() // 1_000_000,
    )
    value = _serde(settings).encode(version.to_record())
    produce_acknowledged(
        settings.kafka,
        settings.topics.taxonomy,
        version.version.encode(),
        value,
        what="the taxonomy",
        timeout_s=timeout_s,
        **{"message.max.bytes": TAXONOMY_MAX_MESSAGE_BYTES},
    )
    logger.info("taxonomy v%d %s stored (%d nodes)", version.sequence, version.version, len(tree))
    return version, True


def configured_source(settings: Settings) -> CategoryTree | None:
    """The tree of ``PRODCAT_TAXONOMY__SOURCE``, or None when it is unset."""
    source = settings.taxonomy.source
    if source is None:
        return None
    if not source.is_file():
        raise TaxonomyError(f"PRODCAT_TAXONOMY__SOURCE={source} is not a file")
    return read_taxonomy_file(source, settings.taxonomy.format)


def load_taxonomy(settings: Settings) -> CategoryTree:
    """The configured taxonomy: the topic's live tree, else the configured source file."""
    problem = "holds no tree"
    try:
        live = current_taxonomy(settings)
        if live is not None:
            return live.tree
    except StreamsError as exc:
        problem = f"cannot be read ({exc})"
    tree = configured_source(settings)
    if tree is not None:
        logger.info("topic %s %s: using %s", settings.topics.taxonomy, problem,
                    settings.taxonomy.source)  # fmt: skip
        return tree
    raise TaxonomyError(
        f"no taxonomy: topic {settings.topics.taxonomy} {problem} and PRODCAT_TAXONOMY__SOURCE "
        "is unset; store one with `prodcat taxonomy import FILE` (or `prodcat taxonomy derive "
        "--from FILE`)"
    )


def configured_taxonomy(settings: Settings) -> CategoryTree | None:
    """The configured taxonomy, or None when there is none (neither a stored tree nor a source).

    What validates labels: a missing ``taxonomy`` topic counts as "none stored" (a deployment from
    before the topic existed); a broker that cannot be read is an error.
    """
    try:
        live = current_taxonomy(settings)
    except TopicError:
        live = None
    return live.tree if live is not None else configured_source(settings)
