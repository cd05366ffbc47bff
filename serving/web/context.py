"""What the web UI's endpoints work with: the parts it is built from and the per-app context.

:class:`WebParts` are built by :mod:`prodcat.serving.web.server` (or by tests);
:func:`prodcat.serving.web.app.create_web_app` wraps them in a :class:`WebContext` (templates, the
login throttle, the image fetcher of the running app) that endpoints receive through
:func:`prodcat.serving.web.dependencies.web`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from prodcat.core.settings import ImageSettings, UiSettings
from prodcat.serving.image_fetch import ImageFetcher
from prodcat.serving.web.annotation import AnnotationService
from prodcat.serving.web.auth import LoginThrottle, Session, SessionCodec, Users
from prodcat.serving.web.follower import TopicFollower
from prodcat.serving.web.mappings import MappingService
from prodcat.serving.web.metrics import WebMetrics
from prodcat.serving.web.review import ReviewService
from prodcat.serving.web.similarity import SimilarityService
from prodcat.serving.web.taxonomy import TaxonomyService
from prodcat.serving.web.view import TopicView

HERE = Path(__file__).parent


@dataclass
class WebParts:
    """What the app is built from (built by :mod:`prodcat.serving.web.server`, or by tests)."""

    settings: UiSettings
    images: ImageSettings
    users: Users
    codec: SessionCodec
    view: TopicView
    annotation: AnnotationService
    similarity: SimilarityService
    mappings: MappingService
    taxonomy: TaxonomyService
    review: ReviewService
    metrics: WebMetrics
    follower: TopicFollower | None = None


def session_of(request: Request) -> Session:
    """The request's session (set by :mod:`prodcat.serving.web.middleware`)."""
    session: Session = request.state.session
    return session


@dataclass
class WebContext:
    """One app's parts, templates, login throttle and (while it runs) image fetcher."""

    parts: WebParts
    templates: Jinja2Templates
    throttle: LoginThrottle
    fetchers: list[ImageFetcher] = field(default_factory=list)

    @classmethod
    def of(cls, parts: WebParts) -> WebContext:
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True
        )
        return cls(
            parts,
            Jinja2Templates(env=environment),
            LoginThrottle(parts.settings.login_attempts_per_minute),
        )

    @property
    def ui(self) -> UiSettings:
        return self.parts.settings

    @property
    def fetcher(self) -> ImageFetcher | None:
        """The image fetcher, None outside the app's lifespan."""
        return self.fetchers[0] if self.fetchers else None

    def page(self, request: Request, name: str, **context: Any) -> HTMLResponse:
        """A server-rendered page with the session's user and CSRF token."""
        session = session_of(request)
        follower = self.parts.follower
        return self.templates.TemplateResponse(
            request,
            name,
            {
                "user": session.user,
                "csrf": session.csrf,
                "catching_up": follower is not None and not follower.ready.is_set(),
                **context,
            },
        )

    def caught_up(self) -> None:
        """Queue reads and label writes wait until the view has read every topic to its end:
        before that a labelled product could look open and its label be overwritten."""
        follower = self.parts.follower
        if follower is not None and not follower.ready.is_set():
            raise HTTPException(
                503, "catching up with the topics; try again shortly", {"Retry-After": "5"}
            )
