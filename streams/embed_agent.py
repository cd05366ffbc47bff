"""The embed agent: ``products.normalized`` → image fetch → image embedder → Milvus (upsert),
and each product's title vector beside it (``PRODCAT_SIMILARITY__TEXT_VECTORS``).

Per micro-batch: decode the products, fetch each product's first image concurrently through the
guarded fetcher, embed the images in one model call (in a thread), upsert the vectors by product_id
(idempotent), then commit. A product without images is counted as skipped; an image that cannot be
fetched or decoded goes to the dead-letter topic with its reason (``image_<kind>``, ``bad_image``)
and is counted; a model-server or Milvus outage retries the batch with backoff. A tombstone deletes
the product's vectors. Title vectors (:mod:`prodcat.serving.text_vectors`) are computed here for
every product of the batch, with or without an image, and upserted into the title collection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
import numpy as np

from prodcat.core.metrics import ModelMetrics, StageMetrics
from prodcat.core.model_store import CardStore
from prodcat.core.settings import Settings
from prodcat.schemas.records import Product
from prodcat.schemas.serde import AvroSerde, serde_for
from prodcat.serving.backends import ModelBackend, create_backend
from prodcat.serving.exceptions import ImageFetchError, ModelInputError, ModelNotFoundError
from prodcat.serving.image_fetch import FetchedImage, ImageFetcher
from prodcat.serving.product_vectors import ProductVectors
from prodcat.serving.vector_store import ImageVector
from prodcat.streams.bisection import bisect
from prodcat.streams.deadletter import DeadLetters
from prodcat.streams.decoding import Decoded, decode_records
from prodcat.streams.runtime import StageHandler, register_stage
from prodcat.streams.stage import Input, Outgoing, Outputs

logger = logging.getLogger(__name__)

STAGE = "embed"
INPUT = "image_bytes"
OUTPUT = "embedding"


_Embedded = tuple[np.ndarray[Any, Any], int, str | None]


@dataclass(slots=True)
class _Item:
    source: Decoded[Product]
    product: Product
    url: str
    image: FetchedImage | None = None


def _first(product: Product) -> str:
    urls = product.get("image_urls") or []
    return str(urls[0]) if urls else ""


class EmbedStage:
    """Turns a micro-batch of products into vectors in the store (or dead letters, or skips)."""

    def __init__(
        self,
        *,
        products: AvroSerde,
        dead_letters: DeadLetters,
        fetcher: ImageFetcher,
        backend: ModelBackend,
        vectors: ProductVectors,
        titles: bool = True,
        batch_size: int = 64,
        metrics: ModelMetrics | None = None,
        cards: CardStore | None = None,
    ) -> None:
        self.products = products
        self.dead_letters = dead_letters
        self.fetcher = fetcher
        self.backend = backend
        self.vectors = vectors
        self.titles = titles
        self.batch_size = batch_size
        self.metrics = metrics
        self.cards = cards
        self._served: tuple[str, int] | None = None

    async def process(
        self,
        records: Sequence[Any],
        now_ms: int,
        owns: Callable[[], Awaitable[bool]] | None = None,
    ) -> list[Outgoing]:
        """One output per record, in order. Raises only TransientErrors (retry the batch).
        ``owns`` is asked before every write to the vector store; once it says False nothing more
        is written (the runtime drops the batch: the partitions' new owner answers it)."""

        async def owned() -> bool:
            return owns is None or await owns()

        decoded, dead = decode_records(records, self.products, self.dead_letters, now_ms, Product)
        outputs: list[Outgoing | None] = [dead.get(i) for i in range(len(records))]
        items: list[_Item] = []
        titled: dict[str, tuple[int, Product]] = {}  # product_id → its last version in the batch
        tombstones: dict[str, int] = {}  # product_id → index of its last tombstone in the batch
        for d in decoded:
            if d.value is None:
                if d.record.key:
                    tombstones[d.record.key.decode("utf-8", "replace")] = d.index
                outputs[d.index] = d.output(None, skipped="deleted")
                continue
            titled[d.value["product_id"]] = (d.index, d.value)
            if not d.value.get("image_urls"):
                outputs[d.index] = d.output(None, skipped="no_image")
            else:
                items.append(_Item(d, d.value, d.value["image_urls"][0]))

        # Within a batch the last event of a product wins: an upsert before its tombstone is moot.
        latest = {item.product["product_id"]: item.source.index for item in items}
        deleted = [pid for pid, i in tombstones.items() if i > latest.get(pid, -1)]
        for item in [
            item
            for item in items
            if tombstones.get(item.product["product_id"], -1) > item.source.index
        ]:
            outputs[item.source.index] = item.source.output(None, skipped="deleted")
            items.remove(item)
        fetched = await self.fetcher.fetch_many([item.url for item in items])
        ready: list[_Item] = []
        for item, result in zip(items, fetched, strict=True):
            if isinstance(result, ImageFetchError):
                outputs[item.source.index] = item.source.dead(
                    self.dead_letters, f"image_{result.kind}", str(result), now_ms
                )
            else:
                item.image = result
                ready.append(item)
        if not await owned():
            return []
        if deleted:
            await asyncio.to_thread(self.vectors.delete, deleted)
        if self.titles:
            await asyncio.to_thread(self._store_titles, titled, tombstones)
        for start in range(0, len(ready), self.batch_size):
            chunk = ready[start : start + self.batch_size]
            vectors = await asyncio.to_thread(self._embed, chunk)
            rows = []
            for item, (vector, version, error) in zip(chunk, vectors, strict=True):
                if error is not None:
                    outputs[item.source.index] = item.source.dead(
                        self.dead_letters, "bad_image", error, now_ms
                    )
                    continue
                rows.append(
                    ImageVector(
                        product_id=item.product["product_id"],
                        vector=vector,
                        category_path=list(item.product.get("category_path") or []),
                        model_version=version,
                        image_url=item.url,
                    )
                )
                outputs[item.source.index] = item.source.output(None)
            if rows:
                if not await owned():
                    return []
                await asyncio.to_thread(self.vectors.images.upsert, rows)
        return [out for out in outputs if out is not None]

    def _store_titles(
        self, titled: dict[str, tuple[int, Product]], tombstones: dict[str, int]
    ) -> None:
        """Upsert the title vectors of the batch's products not deleted later in it."""
        rows = self.vectors.title_rows(
            (pid, product.get("title") or "", product.get("category_path") or [], _first(product))
            for pid, (index, product) in titled.items()
            if tombstones.get(pid, -1) < index
        )
        if rows:
            self.vectors.texts.upsert(rows)

    def _embed(self, items: list[_Item]) -> list[_Embedded]:
        """(vector, model version, error) per item; an image the model rejects is isolated."""

        def attempt(part: Sequence[_Item]) -> list[_Embedded]:
            data = np.array([item.image.data for item in part if item.image], dtype=object)
            output = self.backend.predict({INPUT: data})
            self._observe_version(output.name, output.version)
            vectors = np.asarray(output.outputs[OUTPUT], dtype=np.float32)
            return [(vectors[row], output.version, None) for row in range(len(part))]

        def rejected(item: _Item, exc: ModelInputError) -> list[_Embedded]:
            return [(np.zeros(0, np.float32), 0, str(exc))]

        return bisect(
            items, attempt, failure=ModelInputError, isolate=rejected, combine=list.__add__
        )

    def _observe_version(self, name: str, version: int) -> None:
        """The served embedder version and its export time (from its card, when readable)."""
        if self.metrics is None or self._served == (name, version):
            return
        trained_at = None
        if self.cards is not None:
            try:
                exported_at = self.cards.card(name, version).get("exported_at")
            except ModelNotFoundError as exc:  # e.g. TF Serving without the store mounted
                logger.info("embedder card not readable: %s", exc)
            else:
                if isinstance(exported_at, int | float):
                    trained_at = float(exported_at)
        self.metrics.served(name, version, trained_at)
        self._served = (name, version)


def build_stage(
    settings: Settings, backend: ModelBackend | None = None, metrics: StageMetrics | None = None
) -> EmbedStage:
    """The stage; with ``metrics``, model calls and Milvus operations are timed."""
    registry, topics, serving = settings.serde.registry_url, settings.topics, settings.serving
    models = metrics.models() if metrics is not None else None
    vectors = ProductVectors(
        settings.milvus,
        settings.similarity,
        observe=metrics.milvus().operation if metrics is not None else None,
    )
    vectors.images.ensure_collection()
    if settings.similarity.text_vectors:
        vectors.texts.ensure_collection()
    return EmbedStage(
        products=serde_for("Product", registry, topic=topics.normalized),
        dead_letters=DeadLetters.for_stage(settings, STAGE),
        fetcher=ImageFetcher(settings.images),
        backend=backend
        or create_backend(
            serving, serving.embedder, observe=models.call if models is not None else None
        ),
        vectors=vectors,
        titles=settings.similarity.text_vectors,
        batch_size=min(serving.batch_size, 64),
        metrics=models,
        cards=CardStore(serving.model_base),
    )


class EmbedAgent(StageHandler):
    """``EmbedStage`` for the stage runtime; its HTTP session opens and closes with the task."""

    def __init__(self, stage: EmbedStage, topic: str) -> None:
        super().__init__(STAGE, topic, stage.dead_letters)
        self.stage = stage
        self._opened: ImageFetcher | None = None

    async def start(self) -> None:
        self._opened = await self.stage.fetcher.__aenter__()  # on the worker's event loop

    async def stop(self) -> None:
        if self._opened is not None:
            await self._opened.__aexit__(None, None, None)
            self._opened = None
        self.stage.vectors.close()

    async def process(self, batch: Sequence[Input]) -> Outputs:
        now_ms = time.time_ns() // 1_000_000
        return Outputs.of(await self.stage.process(batch, now_ms, self.owns_batch))


def register_embed(app: faust.App, settings: Settings, metrics: StageMetrics) -> Any:
    """Declare embedding on ``app`` (a task of the stage runtime)."""
    agent = EmbedAgent(build_stage(settings, metrics=metrics), settings.topics.normalized)
    return register_stage(
        app, settings, metrics, agent, batch_size=settings.images.concurrency * 16
    )
