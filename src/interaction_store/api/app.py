"""The HTTP API: one FastAPI app whose routers are the ingest API, the read API and the
operational endpoints (health, readiness, metrics). ``istore serve`` runs it on uvicorn."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.routing import Match

from interaction_store import __version__
from interaction_store.api import errors, ingest, ops, read
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
        app.include_router(read.router)
    app.include_router(ops.router)
    metrics = app.state.services.metrics

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = _route_of(app, request)
        metrics.latency.labels(request.method, route, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response

    return app


def _route_of(app: FastAPI, request: Request) -> str:
    """The route's path template (bounded label values), or "(unmatched)"."""
    for route in app.router.routes:
        match, _ = route.matches(request.scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "(unmatched)"))
    return "(unmatched)"
