"""The HTTP API (FastAPI): ingest, reads with per-category permissions and read-your-writes,
health, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from interaction_store.api.app import create_app


def __getattr__(name: str) -> Any:
    # Imported on first use: commands that only touch the access file need no FastAPI.
    if name == "create_app":
        from interaction_store.api.app import create_app

        return create_app
    raise AttributeError(name)


__all__ = ["create_app"]
