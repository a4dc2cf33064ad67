"""Data keys in PostgreSQL (production): tables ``istore_data_keys`` and
``istore_key_store_meta`` in the view database (``ISTORE_POSTGRES_DSN``). They are not views:
a view rebuild must leave them alone."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from interaction_store.privacy.keystore import KeyStore, StoredKey
from interaction_store.privacy.master import MasterKey
from interaction_store.settings import Settings

KEYS_TABLE = "istore_data_keys"
META_TABLE = "istore_key_store_meta"

_SCHEMA = (
    # wrapped NULL with destroyed_at set: a tombstone.
    f"CREATE TABLE IF NOT EXISTS {KEYS_TABLE} (subject text PRIMARY KEY, wrapped bytea, "
    "created_at timestamptz NOT NULL DEFAULT now(), destroyed_at timestamptz, "
    "CHECK ((wrapped IS NULL) = (destroyed_at IS NOT NULL)))",
    f"CREATE TABLE IF NOT EXISTS {META_TABLE} (name text PRIMARY KEY, value bytea NOT NULL)",
)


class PostgresKeyStore(KeyStore):
    """Data keys in PostgreSQL, shared by every process of a deployment."""

    def __init__(
        self,
        dsn: str,
        master: MasterKey,
        cache_size: int = 50_000,
        cache_seconds: float = 60.0,
        pool_size: int = 4,
    ) -> None:
        self.where = f"table {KEYS_TABLE} of ISTORE_POSTGRES_DSN's database"
        self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
            dsn, min_size=1, max_size=pool_size, kwargs={"autocommit": True}, open=True
        )
        with self._pool.connection() as conn, conn.transaction():
            # Two processes creating the tables at once collide on the catalog (a unique
            # violation, IF NOT EXISTS notwithstanding): one at a time.
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (KEYS_TABLE,))
            for statement in _SCHEMA:
                conn.execute(statement)
        super().__init__(master, cache_size, cache_seconds)

    @classmethod
    def from_settings(cls, settings: Settings, master: MasterKey) -> PostgresKeyStore:
        if settings.postgres_dsn is None:
            raise ValueError("the PostgreSQL key store needs ISTORE_POSTGRES_DSN (postgres_dsn)")
        return cls(
            settings.postgres_dsn.get_secret_value(),
            master,
            settings.key_cache_size,
            settings.key_cache_seconds,
        )

    def _fetch(self, subjects: list[str]) -> dict[str, StoredKey]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT subject, wrapped, destroyed_at FROM {KEYS_TABLE} WHERE subject = ANY(%s)",
                (subjects,),
            ).fetchall()
        return {
            str(subject): StoredKey(None if wrapped is None else bytes(wrapped), gone)
            for subject, wrapped, gone in rows
        }

    def _insert(self, rows: list[tuple[str, bytes]]) -> None:
        # One statement for the batch (unnest of two arrays), not one per row; a subject with
        # a row already (another process's key, or a tombstone) keeps it.
        with self._pool.connection() as conn:
            conn.execute(
                f"INSERT INTO {KEYS_TABLE} (subject, wrapped) "
                "SELECT * FROM unnest(%s::text[], %s::bytea[]) ON CONFLICT (subject) DO NOTHING",
                ([s for s, _ in rows], [w for _, w in rows]),
            )

    def _tombstone(self, subject: str, when: datetime) -> tuple[bool, datetime]:
        with self._pool.connection() as conn, conn.transaction():
            row = conn.execute(
                f"SELECT wrapped IS NOT NULL, destroyed_at FROM {KEYS_TABLE} "
                "WHERE subject = %s FOR UPDATE",
                (subject,),
            ).fetchone()
            if row is not None and row[1] is not None:
                return False, row[1]
            conn.execute(
                f"INSERT INTO {KEYS_TABLE} (subject, wrapped, destroyed_at) "
                "VALUES (%s, NULL, %s) ON CONFLICT (subject) DO UPDATE "
                "SET wrapped = NULL, destroyed_at = EXCLUDED.destroyed_at",
                (subject, when),
            )
        # The old row version stays in the table's pages until vacuum reclaims it (autovacuum
        # does; docs/privacy.md says what else to bound).
        return row is not None and bool(row[0]), when

    def _check_value(self, candidate: bytes) -> bytes:
        with self._pool.connection() as conn:
            conn.execute(
                f"INSERT INTO {META_TABLE} (name, value) VALUES ('master_key_check', %s) "
                "ON CONFLICT (name) DO NOTHING",
                (candidate,),
            )
            row = conn.execute(
                f"SELECT value FROM {META_TABLE} WHERE name = 'master_key_check'"
            ).fetchone()
        assert row is not None  # inserted just above unless there was one
        return bytes(row[0])

    def close(self) -> None:
        self._pool.close()
