"""Data keys in SQLite (the embedded default): ``<data_dir>/keys.sqlite``, 0600 like the rest
of the data folder."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from interaction_store.privacy.keystore import KeyStore, StoredKey
from interaction_store.privacy.master import MasterKey
from interaction_store.settings import Settings, private_file
from interaction_store.sqlite_schema import create_schema

KEYS_FILE = "keys.sqlite"

_SCHEMA = (
    # wrapped NULL with destroyed_at set: a tombstone.
    "CREATE TABLE IF NOT EXISTS data_keys (subject TEXT PRIMARY KEY, wrapped BLOB, "
    "created_at TEXT NOT NULL, destroyed_at TEXT, "
    "CHECK ((wrapped IS NULL) = (destroyed_at IS NOT NULL)))",
    "CREATE TABLE IF NOT EXISTS key_store_meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
)

log = logging.getLogger(__name__)


class SQLiteKeyStore(KeyStore):
    """Data keys in one SQLite file. One connection, used by one thread at a time: key
    lookups are a few per batch, and SQLite has one writer anyway."""

    def __init__(
        self, path: Path, master: MasterKey, cache_size: int = 50_000, cache_seconds: float = 60.0
    ) -> None:
        self.path = private_file(path)
        self.where = str(path)
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._db_lock = threading.Lock()
        # A destroyed key's bytes are overwritten in the file, not left in a free page.
        self._db.execute("PRAGMA secure_delete=ON")
        create_schema(self.path, self._create_tables)
        super().__init__(master, cache_size, cache_seconds)

    def _create_tables(self) -> None:
        with self._db_lock:
            # Readers do not wait for a writer (set once: the file remembers it).
            self._db.execute("PRAGMA journal_mode=WAL")
            for statement in _SCHEMA:
                self._db.execute(statement)

    @classmethod
    def from_settings(cls, settings: Settings, master: MasterKey) -> SQLiteKeyStore:
        return cls(
            settings.private_data_dir() / KEYS_FILE,
            master,
            settings.key_cache_size,
            settings.key_cache_seconds,
        )

    def _fetch(self, subjects: list[str]) -> dict[str, StoredKey]:
        with self._db_lock:
            rows = self._db.execute(
                "SELECT subject, wrapped, destroyed_at FROM data_keys "
                "WHERE subject IN (SELECT value FROM json_each(?))",
                (orjson.dumps(subjects).decode(),),
            ).fetchall()
        return {
            subject: StoredKey(wrapped, None if gone is None else datetime.fromisoformat(gone))
            for subject, wrapped, gone in rows
        }

    def _insert(self, rows: list[tuple[str, bytes]]) -> None:
        now = datetime.now(UTC).isoformat()
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO data_keys (subject, wrapped, created_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (subject) DO NOTHING",
                    [(subject, wrapped, now) for subject, wrapped in rows],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _tombstone(self, subject: str, when: datetime) -> tuple[bool, datetime]:
        with self._db_lock:
            # IMMEDIATE: the write lock from the start, so the row read is the row replaced.
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT wrapped, destroyed_at FROM data_keys WHERE subject = ?", (subject,)
                ).fetchone()
                if row is not None and row[1] is not None:
                    self._db.execute("COMMIT")
                    return False, datetime.fromisoformat(row[1])
                self._db.execute(
                    "INSERT INTO data_keys (subject, wrapped, created_at, destroyed_at) "
                    "VALUES (?, NULL, ?, ?) ON CONFLICT (subject) DO UPDATE "
                    "SET wrapped = NULL, destroyed_at = excluded.destroyed_at",
                    (subject, when.isoformat(), when.isoformat()),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            # The write-ahead log still holds the page as it was, key included, until a
            # checkpoint copies the new page over the file's and the log is cut to nothing.
            self._scrub()
        return row is not None, when

    def _check_value(self, candidate: bytes) -> bytes:
        with self._db_lock:
            self._db.execute(
                "INSERT INTO key_store_meta (name, value) VALUES ('master_key_check', ?) "
                "ON CONFLICT (name) DO NOTHING",
                (candidate,),
            )
            row = self._db.execute(
                "SELECT value FROM key_store_meta WHERE name = 'master_key_check'"
            ).fetchone()
        return bytes(row[0])

    def close(self) -> None:
        with self._db_lock:
            self._db.close()

    def _scrub(self) -> None:
        """Checkpoint the write-ahead log and cut it to nothing (SQLite waits up to the
        connection's timeout for another process's reader to let go); said on stderr if it
        could not (the next destroy, or the last connection's close, scrubs it then)."""
        for _ in range(2):
            busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy is None or int(busy[0]) == 0:
                return
            time.sleep(0.1)
        log.warning(
            "%s: the write-ahead log could not be cut after a destroy (a reader held it): "
            "the destroyed key's old page stays in keys.sqlite-wal until the next checkpoint",
            self.where,
        )
