"""The HTTP API (FastAPI): ingest, reads with per-category permissions and read-your-writes,
health, readiness and Prometheus metrics."""

from interaction_store.api.app import create_app

__all__ = ["create_app"]
