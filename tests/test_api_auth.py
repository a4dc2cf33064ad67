"""Authentication over HTTP: 401 for a missing or unknown key (either header works), 403 for a
key whose role lacks the right; probes and scrapers need no key."""

from __future__ import annotations

from interaction_store.settings import Settings
from tests.api_support import KEYS, auth, client


def test_http_needs_a_known_key(embedded_settings: Settings) -> None:
    with client(embedded_settings) as http:
        missing = http.get("/v1/positions")
        assert missing.status_code == 401
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert "API key is required" in missing.json()["detail"]

        unknown = http.get("/v1/positions", headers={"Authorization": "Bearer nope"})
        assert unknown.status_code == 401
        assert unknown.json()["detail"] == "unknown API key"

        for headers in (auth("service"), {"X-API-Key": KEYS["service"]}):
            assert http.get("/v1/positions", headers=headers).status_code == 200

        # Health, readiness and metrics need no key (probes and scrapers have none).
        assert http.get("/healthz").status_code == 200
        assert http.get("/metrics").status_code == 200


def test_publishing_needs_a_role_that_may_publish(embedded_settings: Settings) -> None:
    with client(embedded_settings) as http:
        for role in ("marketing", "sales", "service"):
            refused = http.post("/v1/events", json=[], headers=auth(role))
            assert refused.status_code == 403, role
            assert f"role {role}" in refused.json()["detail"]
