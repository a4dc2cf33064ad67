"""Views in SQLite (the embedded default): ``<data_dir>/views.sqlite``, tracking by the
eventsourcing SQLite tracking recorder in the same file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from eventsourcing.persistence import Tracking
from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore, SQLiteTrackingRecorder

from interaction_store.settings import Settings, private_file, private_folder
from interaction_store.sqlite_schema import create_schema
from interaction_store.views.base import Cursor, ViewStore, tracking_name

VIEWS_FILE = "views.sqlite"
LOCKS_TABLE = "istore_locks"
WAL_CHECKPOINT_PAGES = 16384
"""Pages (4 kB) the write-ahead log may grow to before a commit copies it into the file."""


@lru_cache(maxsize=1024)
def _qmark(sql: str) -> str:
    # Projections write one SQL text for both backends, in psycopg's %s style.
    return sql.replace("%s", "?")


class _Cursor:
    """A sqlite3 cursor that takes ``%s`` placeholders and returns plain tuples."""

    def __init__(self, raw: sqlite3.Cursor) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.raw.execute(_qmark(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        return self.raw.executemany(_qmark(sql), rows)

    def fetchone(self) -> Any:
        row = self.raw.fetchone()
        return None if row is None else tuple(row)

    def fetchall(self) -> list[Any]:
        return [tuple(r) for r in self.raw.fetchall()]


class SQLiteViewStore(ViewStore):
    """Views and their tracking in one SQLite file."""

    recorder: SQLiteTrackingRecorder
    dialect: Literal["sqlite", "postgres"] = "sqlite"

    def __init__(self, path: Path) -> None:
        private_folder(path.parent)
        self.path = private_file(path)
        self.datastore = SQLiteDatastore(str(path), lock_timeout=30)
        self.recorder = SQLiteTrackingRecorder(self.datastore)
        create_schema(self.path, self._create_tables)

    def _create_tables(self) -> None:
        self.recorder.create_table()
        self.ensure([f"CREATE TABLE IF NOT EXISTS {LOCKS_TABLE} (name TEXT PRIMARY KEY)"])

    @classmethod
    def from_settings(cls, settings: Settings) -> SQLiteViewStore:
        return cls(settings.data_dir / VIEWS_FILE)

    @contextmanager
    def _cursor(self, commit: bool) -> Iterator[Cursor]:
        with self.datastore.get_connection(commit=commit) as conn:
            if commit:
                # In WAL mode NORMAL syncs at checkpoints, not at every commit: a power cut
                # may lose the last batches, but rows and positions go together, so the worker
                # re-applies them; a crashed process loses nothing. (Set outside the
                # transaction: SQLite ignores it inside one.)
                conn.cursor().execute("PRAGMA synchronous=NORMAL")
                # A batch writes a few MB; checkpointing the WAL into the file at every commit
                # (the default, from 4 MB on) rewrote the same index pages again and again.
                conn.cursor().execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
                # An erased person's forgotten fields are overwritten in the file, not left
                # in the free space of a page.
                conn.cursor().execute("PRAGMA secure_delete=ON")
            with conn.transaction(commit=commit) as c:
                yield _Cursor(c.sqlite_cursor)

    def transaction(self) -> Any:
        return self._cursor(commit=True)

    def reading(self, snapshot: bool = True) -> Any:
        # A SQLite read transaction costs no round trip: always a snapshot.
        return self._cursor(commit=False)

    def track(self, cursor: Cursor, tracker: str, topic: str, partition: int, offset: int) -> None:
        assert isinstance(cursor, _Cursor)

        # The recorder's own insert, inside our transaction: it refuses a position that is not
        # past the one recorded, which is what makes a redelivered batch change nothing.
        self.recorder._insert_tracking(
            SQLiteCursor(cursor.raw), Tracking(tracking_name(tracker, topic, partition), offset)
        )

    def exclusive(self, cursor: Cursor, name: str) -> None:
        # SQLite has one writer at a time, but a transaction that read first cannot become
        # the writer once another process has committed ("database is locked" at once, no
        # waiting). A write, even of no row, takes the lock now, waiting for it, and what
        # follows reads the latest rows. One lock for every name: SQLite has no finer one.
        cursor.execute(f"UPDATE {LOCKS_TABLE} SET name = name WHERE name = %s", (name,))

    def columns(self, table: str) -> set[str] | None:
        with self.reading() as c:
            c.execute("SELECT name FROM pragma_table_info(%s)", (table,))
            names = {str(row[0]) for row in c.fetchall()}
        return names or None

    def scrub(self) -> bool:
        """Copy the write-ahead log into the file and cut it to nothing: ``secure_delete``
        overwrites forgotten values in the file, but the log keeps the pages as they were
        until a checkpoint (at 64 MB) and keeps its bytes until the last connection closes.
        False when a reader holds pages the checkpoint needs (busy)."""
        # The writer's connection: no write of this process runs meanwhile.
        with self.datastore.get_connection(commit=True) as conn:
            cursor = conn.cursor()
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            row = cursor.fetchone()
        return row is None or int(row[0]) == 0

    def close(self) -> None:
        self.datastore.close()
