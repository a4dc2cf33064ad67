"""The HTTP API: one FastAPI app whose routers are the ingest API, the read API (timelines,
consent, scores, positions) and the operational endpoints (health, readiness, metrics).
``istore serve`` runs it on uvicorn."""

from __future__ import annotations

import time
from typing import Literal

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from interaction_store import __version__
from interaction_store.api import (
    consent,
    contacts_lookup,
    erasures,
    errors,
    export,
    ingest,
    ops,
    positions,
    profiles,
    scores,
    timelines,
)
from interaction_store.api.metrics import Metrics
from interaction_store.api.services import Services
from interaction_store.settings import Settings

Role = Literal["all", "ingest", "read"]

DESCRIPTION = """\
Customer interactions in, timelines, consent and lead scores out.

Authenticate with an API key (`istore keys create NAME --role ROLE`) in
`Authorization: Bearer <key>` or `X-API-Key`. Errors are RFC 9457 problem documents.
"""


def create_app(
    settings: Settings | None = None,
    services: Services | None = None,
    role: Role = "all",
) -> FastAPI:
    """The app for ``role``: "ingest" serves the ingest routes, "read" the read routes, "all"
    both; the operational endpoints are always there."""
    settings = settings or (services.settings if services is not None else Settings())
    app = FastAPI(
        title="interaction-store",
        version=__version__,
        description=DESCRIPTION,
    )
    app.state.services = services or Services(settings)
    app.state.role = role
    errors.install(app)
    if role in ("all", "ingest"):
        app.include_router(ingest.router)
    if role in ("all", "read"):
        for resource in (timelines, consent, scores, export, positions, erasures, profiles):
            app.include_router(resource.router)
        app.include_router(contacts_lookup.router)
    app.include_router(ops.router)
    app.add_middleware(_Measure, metrics=app.state.services.metrics)
    return app


class _Measure:
    """Request latency by route template, method and status: a plain ASGI middleware (no
    extra task per request, unlike one made with ``@app.middleware``)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # The router leaves the matched route in the scope: its template is a bounded
            # label value (the path itself, with ids in it, would not be).
            route = scope.get("route")
            path = getattr(route, "path", None) if route is not None else None
            # The method too: a client may send any token as one, and each would be a series.
            method = scope["method"] if scope["method"] in _METHODS else "(other)"
            self.metrics.latency.labels(method, path or "(unmatched)", str(status[0])).observe(
                time.perf_counter() - started
            )


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
