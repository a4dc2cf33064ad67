"""Views in PostgreSQL (production): tracking by the eventsourcing PostgreSQL tracking
recorder, in the same transaction as the view rows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import psycopg
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import tuple_row

from interaction_store.settings import Settings
from interaction_store.views.base import Cursor, ViewStore, tracking_name

TRACKING_TABLE = "istore_tracking"


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

    def reading(self) -> Any:
        return self._cursor(commit=False)

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

    def close(self) -> None:
        self.datastore.close()
