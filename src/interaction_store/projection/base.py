"""What every projection is: tables it owns (named after its instance, so a shadow copy can
be rebuilt beside the live one) and an ``apply`` that folds a batch of events into them.

``apply`` must leave the same rows whatever the order of the events and however often an
event is repeated: state resolves by (occurred_at, event_id), never by arrival.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from interaction_store.events import InteractionEvent
from interaction_store.log.base import Position
from interaction_store.views.base import Cursor, ViewStore

T = TypeVar("T")

HIDDEN_EVENT = "an event of a category you may not read"
"""What a reader is told in place of an event of a read category its role lacks (its id,
type and details withheld)."""

_INSTANCE = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


class Projection(ABC):
    """One view: its tables and how events change them."""

    kind: str = ""
    """The view's kind: timeline, consent, lead_scores, profiles."""

    event_types: frozenset[str] | None = None
    """The event types ``apply`` can use; None: any. A runner whose views all name theirs does
    not decode a record of another type (the log says a record's type without decoding it);
    ``wants`` still has the last word on each decoded event. Must cover every type ``wants``
    accepts, or the view would differ from one built without the filter."""

    def __init__(self, instance: str | None = None) -> None:
        instance = instance or self.kind
        if not _INSTANCE.match(instance):
            raise ValueError(
                f"view name {instance!r}: use lower-case letters, digits and _ "
                "(at most 41, starting with a letter)"
            )
        self.instance = instance

    def table(self, name: str) -> str:
        """The name of one of this instance's tables."""
        return f"{self.instance}__{name}"

    @property
    @abstractmethod
    def tables(self) -> dict[str, str]:
        """Short name -> the column list of each table, e.g. ``"contact_id TEXT, ..."``."""

    def missing_columns(self, store: ViewStore) -> dict[str, list[str]]:
        """Table -> the columns this code writes that the view's tables in ``store`` lack: a
        view built by an older version (its tables exist; ``CREATE ... IF NOT EXISTS``
        leaves them as they were). Empty when the layout is this code's."""
        out: dict[str, list[str]] = {}
        for name, spec in self.tables.items():
            have = store.columns(self.table(name))
            if have is None:
                continue  # not made yet: made as this code says
            lacking = [c for c in declared_columns(spec) if c not in have]
            if lacking:
                out[self.table(name)] = lacking
        return out

    def schema(self, dialect: str) -> list[str]:
        """CREATE statements for the tables and their indexes."""
        return [
            f"CREATE TABLE IF NOT EXISTS {self.table(name)} ({columns})"
            for name, columns in self.tables.items()
        ] + self.indexes(dialect)

    def indexes(self, dialect: str) -> list[str]:
        return []

    def wants(self, event: InteractionEvent) -> bool:
        """Whether this projection cares about an event at all (cheap pre-filter)."""
        return True

    @abstractmethod
    def apply(self, cursor: Cursor, events: Sequence[InteractionEvent]) -> None:
        """Fold a batch into the tables, inside the caller's transaction."""

    def apply_records(
        self, cursor: Cursor, records: Sequence[tuple[Position, InteractionEvent]]
    ) -> None:
        """Fold a batch whose log positions are known (how the runner applies). Only a view
        that keeps positions (the subjects index) needs them; the others fold the events."""
        self.apply(cursor, [e for _, e in records])

    def drop(self, store: ViewStore) -> None:
        with store.transaction() as c:
            for name in self.tables:
                c.execute(f"DROP TABLE IF EXISTS {self.table(name)}")


def view_checksum(store: ViewStore, projection: Projection) -> str:
    """A deterministic digest of every row of a view's tables (sorted), to compare a live
    view with a replay or two replays with each other."""
    digest = hashlib.sha256()
    with store.reading() as c:
        for name in sorted(projection.tables):
            digest.update(f"\x00table {name}\x00".encode())
            c.execute(f"SELECT * FROM {projection.table(name)}")
            rows = sorted(repr(_normal(row)) for row in c.fetchall())
            for row in rows:
                digest.update(row.encode())
                digest.update(b"\x00")
    return digest.hexdigest()


def _normal(row: Sequence[object]) -> tuple[object, ...]:
    # SQLite and PostgreSQL return floats and bools a little differently; compare values.
    out: list[object] = []
    for v in row:
        if isinstance(v, bool):
            out.append(int(v))
        elif isinstance(v, float):
            out.append(round(v, 9))
        else:
            out.append(v)
    return tuple(out)


def iso(moment: datetime) -> str:
    """A timestamp as sortable text in UTC (microseconds, ``Z``): the same on every backend."""
    offset = moment.utcoffset()
    if offset is not None and not offset and moment.year >= 1000:
        # Already UTC (as events are): isoformat is several times faster than strftime, and
        # gives the same text (strftime does not pad years before 1000, so those go below).
        return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def chunks(items: Sequence[T], size: int = 500) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def placeholders(n: int) -> str:
    return ", ".join(["%s"] * n)


def select_in(
    cursor: Cursor, sql: str, ids: Iterable[str], *extra: object
) -> list[tuple[Any, ...]]:
    """Run ``sql`` (with ``{ids}`` for an IN list) over chunks of ``ids``; extra params first."""
    out: list[tuple[Any, ...]] = []
    for part in chunks(sorted(set(ids))):
        cursor.execute(sql.format(ids=placeholders(len(part))), (*extra, *part))
        out.extend(cursor.fetchall())
    return out


_CONSTRAINTS = ("PRIMARY", "UNIQUE", "CHECK", "FOREIGN", "CONSTRAINT")


def declared_columns(spec: str) -> list[str]:
    """The column names of a table's column list (``"a TEXT, b INT, PRIMARY KEY (a)"``)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(spec):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(spec[start:i])
            start = i + 1
    parts.append(spec[start:])
    names = []
    for part in parts:
        words = part.split()
        if words and words[0].upper() not in _CONSTRAINTS:
            names.append(words[0].strip('"'))
    return names
