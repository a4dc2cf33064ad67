"""Subject access: who a person is in the store (a contact, the contacts merged into or with it,
the visitors linked to it, its leads) and every event about them, read back from the log by
position through the subjects index, filtered by the reader's read categories.

Nothing here scans the log: the subjects index says where each event is, and the log is read
at those positions only (runs of nearby positions in one read).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from interaction_store.codec import to_document
from interaction_store.events import InteractionEvent
from interaction_store.log.base import EventLog, LogError, LogRecord, Position
from interaction_store.privacy.sealing import Opener
from interaction_store.projection.base import placeholders
from interaction_store.projection.merges import MergeLink, group_of, merge_links
from interaction_store.projection.profiles import TABLE_COLUMNS, Profiles
from interaction_store.projection.subjects import PAGE, Located, SubjectIndex
from interaction_store.read import ReadAPI
from interaction_store.views.base import rows_as_dicts

NEARBY = 64
"""Offsets at most this far apart in one partition are read in one read of the log (the
records between them are read and passed over): fewer round trips to Kafka."""


class UnknownPerson(LookupError):
    """No live view knows the contact."""

    def __init__(self, contact_id: str) -> None:
        self.contact_id = contact_id
        super().__init__(f"contact {contact_id} is unknown: no live view holds anything about it")


@dataclass(frozen=True)
class Person:
    """Everyone an export of one contact covers."""

    contact_id: str
    contacts: list[str]
    """The contact's merged group: the contact it lives on first, then the others by id."""
    anonymous_ids: list[str]
    leads: list[str]
    merges: list[MergeLink]
    profile: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """The profiles view's rows about them: contacts, identities, leads, memberships,
    opportunities."""

    def subjects(self) -> dict[str, list[str]]:
        return {"contact": self.contacts, "anonymous": self.anonymous_ids, "lead": self.leads}


_PROFILE_ROWS = {
    # section -> (table, the column that names a contact of the group)
    "contacts": ("contacts", "contact_id"),
    "identities": ("identities", "contact_id"),
    "leads": ("leads", "parent_contact_id"),
    "memberships": ("members", "contact_id"),
    "opportunities": ("opportunities", "contact_id"),
}

_BOOLEANS = frozenset({"is_child", "member"})


def find_person(read: ReadAPI, contact_id: str) -> Person:
    """The person behind ``contact_id``, from the live profiles view; :class:`UnknownPerson`
    when neither the profiles nor the subjects index know any of them."""
    profiles = read.view("profiles")
    assert isinstance(profiles, Profiles)
    with read.store.reading() as c:
        links = merge_links(c, profiles, [contact_id])
        contacts = group_of(contact_id, links)
        rows: dict[str, list[dict[str, Any]]] = {}
        for section, (table, column) in _PROFILE_ROWS.items():
            columns = TABLE_COLUMNS[table]
            c.execute(
                f"SELECT {', '.join(columns)} FROM {profiles.table(table)} WHERE {column} IN "
                f"({placeholders(len(contacts))}) ORDER BY 1, 2",
                contacts,
            )
            rows[section] = [
                # SQLite keeps booleans as 0 and 1: the same document from either store.
                {k: bool(v) if k in _BOOLEANS and v is not None else v for k, v in row.items()}
                for row in rows_as_dicts(c, columns)
            ]
    person = Person(
        contact_id,
        contacts,
        sorted({r["anonymous_id"] for r in rows["identities"]}),
        sorted({r["lead_id"] for r in rows["leads"]}),
        sorted(links.values()),
        rows,
    )
    if not any(rows.values()) and not index_of(read).holds(read.store, person.subjects()):
        raise UnknownPerson(contact_id)
    return person


def index_of(read: ReadAPI) -> SubjectIndex:
    index = read.view("subjects")
    assert isinstance(index, SubjectIndex)
    return index


@dataclass(frozen=True)
class ExportedEvent:
    """One event of an export: where the log holds it, its read category, the event."""

    position: Position
    category: str | None
    document: dict[str, Any]


def exported_events(
    read: ReadAPI,
    log: EventLog,
    person: Person,
    shown: Callable[[str], bool] | None,
    opener: Opener | None,
    page: int = PAGE,
) -> Iterator[ExportedEvent]:
    """Every event about ``person`` of a type ``shown`` lets through (None: all), oldest first
    by (occurred_at, event_id), each once; a page of the index at a time. ``opener`` opens
    their personal fields (the store's export always passes one: the person's copy is in
    clear)."""
    categories = read.categories()
    pending: list[Located] = []
    for located in index_of(read).locate(read.store, person.subjects(), page):
        if shown is not None and not shown(located.type):
            continue
        pending.append(located)
        if len(pending) >= page:
            yield from _read_back(log, pending, categories, opener)
            pending = []
    yield from _read_back(log, pending, categories, opener)


def _read_back(
    log: EventLog,
    located: Sequence[Located],
    categories: dict[str, str],
    opener: Opener | None,
) -> Iterator[ExportedEvent]:
    records = read_positions(log, [x.position for x in located])
    events: list[InteractionEvent] = []
    for x in located:
        record = records.get(x.position)
        event = record.event() if record is not None and record.value is not None else None
        if event is None or str(event.event_id) != x.event_id:
            raise LogError(
                f"the log holds no event {x.event_id} at {x.position}, where the subjects index "
                "says it is: was the log replaced? Rebuild the index: `istore replay subjects "
                "--as subjects_new`, then `istore views promote subjects_new`"
            )
        events.append(event)
    if opener is not None:
        events = opener.open_events(events)  # one key lookup for the page
    for x, event in zip(located, events, strict=True):
        yield ExportedEvent(
            x.position,
            categories.get(event.type) or categories.get(event.channel),
            to_document(event),
        )


def read_positions(log: EventLog, positions: Sequence[Position]) -> dict[Position, LogRecord]:
    """The records at ``positions``: per partition, nearby offsets in one read."""
    by_partition: dict[tuple[str, int], list[int]] = defaultdict(list)
    for p in positions:
        by_partition[(p.topic, p.partition)].append(p.offset)
    out: dict[Position, LogRecord] = {}
    for (topic, partition), offsets in by_partition.items():
        wanted = sorted(set(offsets))
        start = 0
        while start < len(wanted):
            end = start
            while end + 1 < len(wanted) and wanted[end + 1] - wanted[end] <= NEARBY:
                end += 1
            first, last = wanted[start], wanted[end]
            for record in log.read(topic, partition, first, last - first + 1):
                out[record.position] = record
            start = end + 1
    return out
