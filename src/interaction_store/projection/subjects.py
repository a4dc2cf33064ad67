"""The subjects index: where in the log each event about a contact, lead or anonymous visitor
(or about an account alone) is, so that everything about one person can be read back by
position (a subject access export) without scanning the log.

A row per (subject, event, position). Rows are only ever added, keyed by the position, so the
index is a function of the set of (position, event) pairs however they arrive; an event the
log holds twice (a repeat that slipped past a Kafka publisher's index) has two rows, and a
reader takes its first position.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from interaction_store import custom_types
from interaction_store.events import (
    EVENT_TYPES,
    ContactsMerged,
    ContactsUnmerged,
    IdentityLinked,
    IdentityUnlinked,
    InteractionEvent,
)
from interaction_store.log.base import Position
from interaction_store.projection.base import Projection, iso, placeholders
from interaction_store.views.base import Cursor, ViewStore, insert_rows

SubjectKind = str
"""contact, lead, anonymous or account."""

_COLUMNS = (
    "subject_kind",
    "subject_id",
    "occurred_at",
    "event_id",
    "type",
    "topic",
    "partition",
    "position",
)
_KEY = ("subject_kind", "subject_id", "occurred_at", "event_id", "topic", "partition", "position")

PAGE = 500
"""Index rows read at a time: what bounds an export's memory, whatever its size."""


@dataclass(frozen=True, slots=True)
class Located:
    """An event about a subject: when, which, of what type, and where the log holds it."""

    occurred_at: str
    event_id: str
    type: str
    position: Position


class SubjectIndex(Projection):
    """Subject -> the positions of the events about it (every event type, every topic)."""

    kind = "subjects"

    def __init__(self, instance: str | None = None) -> None:
        super().__init__(instance)
        # The custom types too: an export must find every event about a person.
        self.event_types = frozenset(EVENT_TYPES) | frozenset(custom_types.installed())

    @property
    def tables(self) -> dict[str, str]:
        return {
            # The key is also the read path: one subject's events by time.
            "events": "subject_kind TEXT NOT NULL, subject_id TEXT NOT NULL, "
            "occurred_at TEXT NOT NULL, event_id TEXT NOT NULL, type TEXT NOT NULL, "
            "topic TEXT NOT NULL, partition INTEGER NOT NULL, position BIGINT NOT NULL, "
            f"PRIMARY KEY ({', '.join(_KEY)})",
        }

    @staticmethod
    def subjects(event: InteractionEvent) -> list[tuple[SubjectKind, str]]:
        """Everyone an event is about: its subject's contact, lead and visitor, and the other
        contact of a merge and the visitor of an identity link (named in the payload); the
        account when it is the only subject (its key). An account beside a person is not
        indexed: its contacts' events are theirs, and the index stays the size it was."""
        s, p = event.subject, event.payload
        out: list[tuple[str, str]] = []
        if s.contact_id is not None:
            out.append(("contact", str(s.contact_id)))
        if s.lead_id is not None:
            out.append(("lead", str(s.lead_id)))
        if s.anonymous_id is not None:
            out.append(("anonymous", s.anonymous_id))
        if not out and s.account_id is not None:
            out.append(("account", str(s.account_id)))
        if isinstance(p, ContactsMerged | ContactsUnmerged):
            out.append(("contact", str(p.merged_contact_id)))
        elif isinstance(p, IdentityLinked | IdentityUnlinked):
            out.append(("anonymous", p.anonymous_id))
        return list(dict.fromkeys(out))

    def apply(self, cursor: Cursor, events: Sequence[InteractionEvent]) -> None:
        raise TypeError(
            f"the {self.instance} view keeps log positions: apply it with apply_records "
            "(as the projection runner does)"
        )

    def apply_records(
        self, cursor: Cursor, records: Sequence[tuple[Position, InteractionEvent]]
    ) -> None:
        rows = []
        for at, event in records:
            head = (iso(event.occurred_at), str(event.event_id), event.type)
            where = (at.topic, at.partition, at.offset)
            rows += [(kind, sid, *head, *where) for kind, sid in self.subjects(event)]
        insert_rows(cursor, self.table("events"), _COLUMNS, rows, _KEY)

    # ------------------------------------------------------------------ reading

    def _where(self, subjects: Mapping[SubjectKind, Sequence[str]]) -> tuple[str, list[str]]:
        parts, params = [], []
        for kind, ids in sorted(subjects.items()):
            if ids:
                parts.append(f"(subject_kind = %s AND subject_id IN ({placeholders(len(ids))}))")
                params += [kind, *ids]
        return " OR ".join(parts) or "1 = 0", params

    def holds(self, store: ViewStore, subjects: Mapping[SubjectKind, Sequence[str]]) -> bool:
        """Whether any event about any of ``subjects`` is indexed."""
        where, params = self._where(subjects)
        with store.reading() as c:
            c.execute(f"SELECT 1 FROM {self.table('events')} WHERE {where} LIMIT 1", params)
            return c.fetchone() is not None

    def locate(
        self, store: ViewStore, subjects: Mapping[SubjectKind, Sequence[str]], page: int = PAGE
    ) -> Iterator[Located]:
        """Every event about any of ``subjects``, once each (at its first position), oldest
        first by (occurred_at, event_id); read ``page`` index rows at a time, each page in a
        read of its own (no cursor is held while the caller works on what it got)."""
        where, params = self._where(subjects)
        after: tuple[str, str] = ("", "")
        while True:
            with store.reading() as c:
                c.execute(
                    "SELECT occurred_at, event_id, type, topic, partition, position "
                    f"FROM {self.table('events')} WHERE ({where}) "
                    "AND (occurred_at > %s OR (occurred_at = %s AND event_id > %s)) "
                    "ORDER BY occurred_at, event_id, topic, partition, position LIMIT %s",
                    (*params, after[0], after[0], after[1], page),
                )
                rows = c.fetchall()
            for occurred_at, event_id, event_type, topic, partition, offset in rows:
                if (occurred_at, event_id) == after:
                    continue  # the same event under another subject, or at a later position
                after = (occurred_at, event_id)
                yield Located(occurred_at, event_id, event_type, Position(topic, partition, offset))
            if len(rows) < page:
                return
