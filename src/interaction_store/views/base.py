"""The view store interface: transactions that write view rows and tracking together."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol

from eventsourcing.persistence import TrackingRecorder

from interaction_store.settings import Settings

TrackedPositions = dict[tuple[str, int], int]
"""(topic, partition) -> the last offset applied."""


class Cursor(Protocol):
    """What projections write with: DB-API style, ``%s`` placeholders on every backend."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class ViewStore(ABC):
    """A database holding views, with tracking recorded by the eventsourcing library."""

    dialect: Literal["sqlite", "postgres"]

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> ViewStore:
        """The store the settings describe."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Cursor]:
        """A write transaction: committed when the block ends, rolled back on error."""

    @abstractmethod
    def reading(self, snapshot: bool = True) -> AbstractContextManager[Cursor]:
        """A read-only snapshot; with ``snapshot=False`` each statement sees what is
        committed when it runs (no transaction: on PostgreSQL two round trips fewer), for
        reads whose statements stand on their own."""

    @abstractmethod
    def track(self, cursor: Cursor, tracker: str, topic: str, partition: int, offset: int) -> None:
        """Record, inside the cursor's transaction, that ``tracker`` applied ``offset``.
        Raises :class:`eventsourcing.persistence.IntegrityError` if it was applied already."""

    recorder: TrackingRecorder
    """The eventsourcing tracking recorder of this database."""

    def tracked(self, tracker: str, partitions: Iterable[tuple[str, int]]) -> TrackedPositions:
        """The last offsets ``tracker`` applied, for the partitions that have any."""
        out: TrackedPositions = {}
        for topic, partition in partitions:
            last = self.recorder.max_tracking_id(tracking_name(tracker, topic, partition))
            if last is not None:
                out[(topic, partition)] = last
        return out

    @abstractmethod
    def exclusive(self, cursor: Cursor, name: str) -> None:
        """Take a lock named ``name`` now and hold it until the transaction ends (before
        reading rows that another worker may be writing)."""

    def ensure(self, statements: Iterable[str]) -> None:
        """Run DDL statements (``CREATE ... IF NOT EXISTS``) in one transaction."""
        with self.transaction() as c:
            for statement in statements:
                c.execute(statement)

    @abstractmethod
    def columns(self, table: str) -> set[str] | None:
        """The columns a table has in the database, or None if it does not exist."""

    def scrub(self) -> bool:
        """Make rows just overwritten or deleted unrecoverable from the store's own files
        (after an erasure); False if it could not now (try again later). A server database
        has nothing to do here: its old row versions go with vacuum (see docs/privacy.md)."""
        return True

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> ViewStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tracking_name(tracker: str, topic: str, partition: int) -> str:
    """The eventsourcing ``application_name`` of one tracker's position in one partition."""
    return f"{tracker}|{topic}/{partition}"


_BACKENDS = {
    "sqlite": "interaction_store.views.sqlite:SQLiteViewStore",
    "postgres": "interaction_store.views.postgres:PostgresViewStore",
}


def open_store(settings: Settings) -> ViewStore:
    """The view store the settings choose: PostgreSQL when ``ISTORE_POSTGRES_DSN`` is set,
    else ``<data_dir>/views.sqlite``."""
    kind = "postgres" if settings.postgres_dsn is not None else "sqlite"
    module_name, _, cls_name = _BACKENDS[kind].partition(":")
    cls: type[ViewStore] = getattr(importlib.import_module(module_name), cls_name)
    return cls.from_settings(settings)


def insert_rows(
    cursor: Cursor,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    key: Sequence[str] = (),
    update: Sequence[str] = (),
) -> None:
    """``INSERT INTO table (columns)`` the rows; with ``key``, ``ON CONFLICT (key) DO NOTHING``,
    or with ``update`` too ``DO UPDATE SET`` those columns. The same as ``executemany`` of that
    statement, rows in order (a key repeated in ``rows``: the first row inserts, the later
    ones do what the conflict clause says), in as few round trips as the backend allows."""
    if not rows:
        return
    bulk = getattr(cursor, "insert_rows", None)
    if bulk is not None:
        bulk(table, columns, rows, key, update)
        return
    cursor.executemany(insert_sql(table, columns, key, update), rows)


def insert_sql(
    table: str, columns: Sequence[str], key: Sequence[str] = (), update: Sequence[str] = ()
) -> str:
    values = ", ".join(["%s"] * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values}){conflict(key, update)}"


def conflict(key: Sequence[str], update: Sequence[str]) -> str:
    if not key:
        return ""
    action = (
        "DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in update)
        if update
        else "DO NOTHING"
    )
    return f" ON CONFLICT ({', '.join(key)}) {action}"


def update_rows(
    cursor: Cursor,
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> None:
    """``UPDATE table SET columns WHERE key`` for each row (``columns`` values, then ``key``
    values), as ``executemany`` would; a key repeated in ``rows``: the last row wins."""
    if not rows:
        return
    bulk = getattr(cursor, "update_rows", None)
    if bulk is not None:
        bulk(table, columns, key, rows)
        return
    sets = ", ".join(f"{c} = %s" for c in columns)
    where = " AND ".join(f"{k} = %s" for k in key)
    cursor.executemany(f"UPDATE {table} SET {sets} WHERE {where}", rows)


def rows_as_dicts(cursor: Cursor, columns: Sequence[str]) -> Iterator[dict[str, Any]]:
    for row in cursor.fetchall():
        yield dict(zip(columns, row, strict=True))
