"""``prodcat ui``: the web UI's process (accounts: :mod:`prodcat.serving.web.accounts`).

One process holds the UI's local view (rebuilt from Kafka at start), the leases (in memory: run
one replica, see :mod:`prodcat.serving.web.leases`), a Kafka producer, the vector store and the image
embedder for uploads. With a local milvus-lite path only one process may open the store, so
either stop the embed worker first or point ``PRODCAT_MILVUS__URI`` at a ``milvus-lite server``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

from prometheus_client import CollectorRegistry

from prodcat.core.metrics import MilvusMetrics, ModelMetrics
from prodcat.core.settings import Settings
from prodcat.serving.backends import ModelBackend, create_backend
from prodcat.serving.product_vectors import ProductVectors
from prodcat.serving.web.annotation import AnnotationService
from prodcat.serving.web.app import WebParts, create_web_app
from prodcat.serving.web.auth import SessionCodec, Users, load_or_create_secret
from prodcat.serving.web.follower import TopicFollower
from prodcat.serving.web.leases import LeaseBook
from prodcat.serving.web.mappings import MappingService
from prodcat.serving.web.metrics import WebMetrics
from prodcat.serving.web.publisher import Publisher
from prodcat.serving.web.review import ReviewService
from prodcat.serving.web.similarity import SimilarityService
from prodcat.serving.web.taxonomy import ApplyChange, TaxonomyService
from prodcat.serving.web.view import TopicView
from prodcat.training.taxonomy import CategoryTree

logger = logging.getLogger(__name__)


def session_secret(settings: Settings) -> bytes:
    ui = settings.ui
    if ui.secret is not None:
        return ui.secret.get_secret_value().encode()
    return load_or_create_secret(ui.state_dir / "secret")


def session_codec(settings: Settings, view: TopicView, publisher: Publisher) -> SessionCodec:
    """The session codec of a UI replica: a logout here is published on
    ``ui.sessions.revoked``; one there (read by this replica's follower into ``view``) is
    refused here too."""
    topic = settings.topics.revoked_sessions

    def announce(session_id: str, expires_at: float) -> None:
        value = json.dumps({"expires_at": expires_at}).encode()
        publisher.send(topic, session_id.encode(), value)

    return SessionCodec(
        session_secret(settings),
        settings.ui.session_ttl_s,
        announce=announce,
        revoked_elsewhere=view.session_revoked,
    )


@contextmanager
def web_parts(
    settings: Settings,
    *,
    vectors: ProductVectors | None = None,
    embedder: ModelBackend | None = None,
    registry: CollectorRegistry | None = None,
    taxonomy: Callable[[], CategoryTree | None] | None = None,
    apply_change: ApplyChange | None = None,
) -> Iterator[WebParts]:
    """Everything the app needs, started (the follower runs), and closed on exit. ``vectors`` and
    ``embedder`` may be injected (tests); otherwise they come from the settings. ``taxonomy``
    gives the configured tree (labels and the category search use its nodes); ``apply_change``
    applies a taxonomy change everywhere (the Taxonomy page; None: the page only shows)."""
    ui = settings.ui
    own_vectors, own_embedder = vectors is None, embedder is None
    view, lock = open_view(settings)
    publisher = Publisher(settings.kafka)
    follower = TopicFollower(settings, view)
    registry = registry or CollectorRegistry()
    if vectors is None:
        vectors = ProductVectors(
            settings.milvus, settings.similarity, observe=MilvusMetrics(registry).operation
        )
    if vectors.kinds is None:  # the same-kind term reads the view's predictions
        vectors.kinds = view.kinds
    if embedder is None:
        embedder = create_backend(
            settings.serving, settings.serving.embedder, observe=ModelMetrics(registry).call
        )
    try:
        metrics = WebMetrics(registry)
        leases = LeaseBook(ui.lease_ttl_s, ui.skip_ttl_s)
        annotation = AnnotationService(
            settings, view, leases, publisher, metrics, taxonomy=taxonomy
        )
        parts = WebParts(
            settings=ui,
            images=settings.images,
            users=Users(ui.users_file),
            codec=session_codec(settings, view, publisher),
            view=view,
            annotation=annotation,
            similarity=SimilarityService(settings, view, vectors, embedder, publisher, metrics),
            mappings=MappingService(settings, view, publisher, annotation.vocabulary, metrics),
            taxonomy=TaxonomyService(
                view, annotation.vocabulary, ui.taxonomy_editors, apply_change
            ),
            review=ReviewService(settings, view, publisher, annotation.vocabulary, metrics),
            metrics=metrics,
            follower=follower,
        )
        follower.start()
        try:
            yield parts
        finally:
            parts.taxonomy.close()
    finally:
        follower.stop()
        publisher.close()
        if own_embedder:
            embedder.close()
        if own_vectors:
            vectors.close()
        view.close()
        if lock is not None:
            lock.close()


def open_view(settings: Settings) -> tuple[TopicView, IO[str] | None]:
    """The UI's view: the kept file ``<state_dir>/view.sqlite`` (caught up from its checkpoint)
    when this process can hold its lock and ``keep_view`` is on, else a file of its own, rebuilt
    from the beginning (another UI process on the same folder, e.g. while a pod is replaced).
    Returns the view and the lock's handle (closing it releases the lock)."""
    ui = settings.ui
    if ui.keep_view:
        ui.state_dir.mkdir(parents=True, exist_ok=True)
        handle = (ui.state_dir / "view.lock").open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            logger.warning("another UI process holds %s: rebuilding a view of its own",
                           ui.state_dir / "view.sqlite")  # fmt: skip
        else:
            identity = json.dumps(
                {
                    "bootstrap": settings.kafka.bootstrap_servers,
                    "topics": settings.topics.model_dump(),
                    "double_share": ui.double_label_share,
                },
                sort_keys=True,
            )
            view = TopicView(
                ui.state_dir / "view.sqlite",
                double_share=ui.double_label_share,
                keep=True,
                identity=identity,
                max_age_s=ui.view_max_age_s,
            )
            logger.info("ui view %s: %s", view.path,
                        "reused from its checkpoint" if view.reused else "rebuilt")  # fmt: skip
            return view, handle
    path = ui.state_dir / f"view-{os.getpid()}.sqlite"
    return TopicView(path, double_share=ui.double_label_share), None


def run_ui(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    taxonomy: Callable[[], CategoryTree | None] | None = None,
    apply_change: ApplyChange | None = None,
) -> int:
    import uvicorn

    ui = settings.ui
    if not Users(ui.users_file).names():
        logger.warning("no annotator accounts in %s: add one with `prodcat ui user add NAME`",
                       ui.users_file)  # fmt: skip
    with web_parts(settings, taxonomy=taxonomy, apply_change=apply_change) as parts:
        app = create_web_app(parts)
        host, port = host or ui.host, port if port is not None else ui.port
        print(f"prodcat UI on http://{host}:{port}/ (annotation: /annotate, similarity: /similar)",
              flush=True)  # fmt: skip
        uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False)
    return 0
