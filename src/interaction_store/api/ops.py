"""Operational endpoints: liveness, readiness and Prometheus metrics (no API key needed)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from interaction_store.api.errors import problem
from interaction_store.api.metrics import CONTENT_TYPE
from interaction_store.api.services import Services

router = APIRouter(tags=["operations"])

READY_PROBE_S = 2.0
"""Longest /readyz waits for the broker: probes give up after a few seconds anyway."""


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the log and (for reads) the view database answer",
    responses={503: {"description": "Not ready, with the reason"}},
    response_model=None,
)
def readyz(request: Request) -> dict[str, object] | Response:
    services: Services = request.app.state.services
    settings = services.settings
    role: str = request.app.state.role
    checks: dict[str, str] = {}
    publishing = role in ("all", "ingest")
    try:
        # A round trip to the broker (cached metadata says nothing of an outage), and for an
        # ingest role a producer that can publish: not ready while publishes fail.
        services.log.check_ready(publishing, min(READY_PROBE_S, settings.kafka_publish_timeout))
        checks["log"] = "ok, publishing" if publishing else "ok"
        if role in ("all", "read"):
            with services.store.reading() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
            live = [i.kind for i in services.read.registry.all() if i.status == "live"]
            if not live:
                return problem(503, "no live views yet: the projection worker has not started")
            checks["views"] = ", ".join(sorted(live))
    except Exception as exc:
        return problem(503, f"not ready: {type(exc).__name__}: {exc}", checks=checks)
    return {"status": "ready", "checks": checks}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    services: Services = request.app.state.services
    return Response(services.metrics.render(), media_type=CONTENT_TYPE)
