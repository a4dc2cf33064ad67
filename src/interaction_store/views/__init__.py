"""View storage: the databases projections write to, with the log position tracked in the
same transaction as the rows (SQLite embedded, PostgreSQL in production)."""

from interaction_store.views.base import Cursor, TrackedPositions, ViewStore, open_store

__all__ = ["Cursor", "TrackedPositions", "ViewStore", "open_store"]
