"""Views in PostgreSQL (production): tracking by the eventsourcing PostgreSQL tracking
recorder, in the same transaction as the view rows."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import psycopg
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import tuple_row

from interaction_store.settings import Settings
from interaction_store.views.base import Cursor, ViewStore, conflict, insert_sql, tracking_name

TRACKING_TABLE = "istore_tracking"

STAGE_MIN_ROWS = 24
"""From this many rows on, bulk writes go through COPY into a staging table: a few round
trips, and a tenth of the client CPU of ``executemany`` (one bound statement per row)."""


class _Cursor:
    """A psycopg cursor returning tuples, in the eventsourcing datastore's transaction."""

    def __init__(self, raw: psycopg.Cursor[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.raw.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        return self.raw.executemany(sql, rows)

    def fetchone(self) -> Any:
        return self.raw.fetchone()

    def fetchall(self) -> list[Any]:
        return self.raw.fetchall()

    def insert_rows(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        key: Sequence[str],
        update: Sequence[str],
    ) -> None:
        """See :func:`interaction_store.views.base.insert_rows`."""
        if len(rows) < STAGE_MIN_ROWS:
            self.raw.executemany(insert_sql(table, columns, key, update), rows)
            return
        if key:
            rows = _first_then_updates(columns, rows, key, update)
        cols = ", ".join(columns)
        stage = self._stage(table, columns, rows)
        self.raw.execute(
            f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage}{conflict(key, update)}; "
            f"DELETE FROM {stage}"
        )

    def update_rows(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        """See :func:`interaction_store.views.base.update_rows`."""
        if len(rows) < STAGE_MIN_ROWS:
            sets = ", ".join(f"{c} = %s" for c in columns)
            where = " AND ".join(f"{k} = %s" for k in key)
            self.raw.executemany(f"UPDATE {table} SET {sets} WHERE {where}", rows)
            return
        n = len(columns)
        last = {tuple(row[n:]): row for row in rows}  # executemany: the last row wins
        stage = self._stage(table, [*columns, *key], list(last.values()))
        sets = ", ".join(f"{c} = s.{c}" for c in columns)
        where = " AND ".join(f"t.{k} = s.{k}" for k in key)
        self.raw.execute(
            f"UPDATE {table} t SET {sets} FROM {stage} s WHERE {where}; DELETE FROM {stage}"
        )

    def _stage(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]] | None = None
    ) -> str:
        """A temporary table with ``columns`` of ``table`` (emptied at commit), holding
        ``rows`` (COPY)."""
        cols = ", ".join(columns)
        stage = "istore_stage_" + hashlib.sha1(f"{table}({cols})".encode()).hexdigest()[:16]
        # IF NOT EXISTS each time: a table made in a transaction that then rolled back is gone.
        self.raw.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
            f"SELECT {cols} FROM {table} WITH NO DATA"
        )
        if rows is not None:
            with self.raw.copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        return stage


class PostgresViewStore(ViewStore):
    """Views and their tracking in one PostgreSQL database."""

    recorder: PostgresTrackingRecorder
    dialect: Literal["sqlite", "postgres"] = "postgres"

    def __init__(self, dsn: str, pool_size: int = 4) -> None:
        params = conninfo_to_dict(dsn)
        self.datastore = PostgresDatastore(
            dbname=str(params.get("dbname", "postgres")),
            host=str(params.get("host", "127.0.0.1")),
            port=str(params.get("port", "5432")),
            user=str(params.get("user", "postgres")),
            password=str(params.get("password", "")),
            pool_size=pool_size,
            max_overflow=4,
        )
        self.recorder = PostgresTrackingRecorder(self.datastore, tracking_table_name=TRACKING_TABLE)
        self.recorder.create_table()

    @classmethod
    def from_settings(cls, settings: Settings) -> PostgresViewStore:
        assert settings.postgres_dsn is not None
        return cls(settings.postgres_dsn.get_secret_value())

    @contextmanager
    def _cursor(self, commit: bool) -> Iterator[Cursor]:
        with self.datastore.transaction(commit=commit) as c:
            yield _Cursor(c.connection.cursor(row_factory=tuple_row))

    def transaction(self) -> Any:
        return self._cursor(commit=True)

    def reading(self, snapshot: bool = True) -> Any:
        return self._cursor(commit=False) if snapshot else self._statements()

    @contextmanager
    def _statements(self) -> Iterator[Cursor]:
        # The pool's connections are in autocommit: each statement is its own transaction.
        with self.datastore.get_connection() as conn:
            yield _Cursor(conn.cursor(row_factory=tuple_row))

    def track(self, cursor: Cursor, tracker: str, topic: str, partition: int, offset: int) -> None:
        assert isinstance(cursor, _Cursor)
        # The recorder's own insert, inside our transaction: it refuses a position that is not
        # past the one recorded, which is what makes a redelivered batch change nothing.
        dict_cursor = cursor.raw.connection.cursor()
        self.recorder._insert_tracking(
            dict_cursor,
            Tracking(tracking_name(tracker, topic, partition), offset),
        )

    def exclusive(self, cursor: Cursor, name: str) -> None:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))

    def columns(self, table: str) -> set[str] | None:
        with self.reading() as c:
            c.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s",
                (table,),
            )
            names = {str(row[0]) for row in c.fetchall()}
        return names or None

    def close(self) -> None:
        self.datastore.close()


def _first_then_updates(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    key: Sequence[str],
    update: Sequence[str],
) -> list[Sequence[Any]]:
    """One row per key, as ``executemany`` of the INSERT would leave it: the first row of a
    key, with the ``update`` columns of its last one (none: the first row as it is)."""
    at = [columns.index(k) for k in key]
    changed = [columns.index(c) for c in update]
    out: dict[tuple[Any, ...], Sequence[Any]] = {}
    for row in rows:
        k = tuple(row[i] for i in at)
        first = out.get(k)
        if first is None:
            out[k] = row
        elif changed:
            merged = list(first)
            for i in changed:
                merged[i] = row[i]
            out[k] = merged
    return list(out.values())
