"""Reading a timeline: the subject's timelines (with merged contacts, linked visitors, an
account's members), the filters as SQL, one page of entries, and the cursor to the next."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from interaction_store.projection.base import chunks, iso, placeholders
from interaction_store.projection.profiles import Profiles
from interaction_store.projection.timeline.settings import TimelineSettings
from interaction_store.views.base import Cursor

MAX_LIMIT = 500
_ONE_STATEMENT = 500  # ids in one read; more (a big account) are read in parts
_MAX_MERGE_DEPTH = 10  # a chain of merges longer than this is a data problem, not a timeline's

ENTRY_COLUMNS = (
    "subject_kind, subject_id, event_id, occurred_at, type, channel, permission, message_id, "
    "campaign_id, journey_id, preview, status, status_at, status_detail, source"
)


@dataclass(frozen=True)
class TimelineEntry:
    """One interaction on a timeline."""

    event_id: str
    type: str
    channel: str
    occurred_at: datetime
    subject_kind: str
    subject_id: str
    permission: str
    preview: dict[str, Any]
    status: str | None
    """A message's delivery status (sent, delivered, bounced, failed); None for the rest."""
    status_at: datetime | None
    status_detail: dict[str, Any] | None
    """The preview of the report that set the status, e.g. the bounce type and reason."""
    message_id: str | None
    campaign_id: str | None
    journey_id: str | None
    source: str | None
    """The envelope's ``source``: the upstream system that published the event."""
    message: dict[str, Any] | None = None
    """For an interaction with a message (an open, a click, a reply): that message's preview."""


@dataclass(frozen=True)
class TimelinePage:
    """Entries newest first; pass ``next_cursor`` back for the next (older) page."""

    entries: list[TimelineEntry]
    next_cursor: str | None
    total: int
    """Entries matching the filters over all pages (only of the permitted categories)."""
    window_start: datetime | None
    """Where the default window began (None when ``since`` was given)."""
    merged_into: str | None = None
    """The contact a contact read was merged into (the entries are that contact's group's):
    read it by that id from now on."""


def encode_cursor(occurred_at: str, event_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([occurred_at, event_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The (occurred_at, event_id) position after which the next page starts."""
    problem = "not a cursor this timeline returned; start again without one"
    if not isinstance(cursor, str) or not cursor or len(cursor) > 200:
        raise ValueError(f"cursor {cursor!r}: {problem}")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        occurred_at, event_id = orjson.loads(raw)
        moment = datetime.fromisoformat(occurred_at)
        uuid = UUID(event_id)
        # An instant near year 1 or 9999 may not exist in UTC (OverflowError); no cursor this
        # timeline returned is outside the years events may have, nor without a timezone.
        if moment.tzinfo is None or not 1000 <= moment.astimezone(UTC).year <= 9999:
            raise ValueError("not a timeline instant")
        at = iso(moment)
    except (binascii.Error, orjson.JSONDecodeError, TypeError, ValueError, OverflowError):
        raise ValueError(f"cursor {cursor!r}: {problem}") from None
    return at, str(uuid)


def subject_of(
    contact_id: UUID | str | None,
    lead_id: UUID | str | None,
    account_id: UUID | str | None,
    anonymous_id: str | None,
) -> tuple[str, str]:
    given = [
        (name, value)
        for name, value in (
            ("contact_id", contact_id),
            ("lead_id", lead_id),
            ("account_id", account_id),
            ("anonymous_id", anonymous_id),
        )
        if value is not None
    ]
    if len(given) != 1:
        names = ", ".join(f"{n}={v!s}" for n, v in given) or "none"
        raise ValueError(
            f"give exactly one of contact_id, lead_id, account_id or anonymous_id (got {names})"
        )
    name, value = given[0]
    if name == "anonymous_id":
        if not isinstance(value, str) or not 1 <= len(value) <= 200:
            raise ValueError(f"anonymous_id {value!r}: must be 1 to 200 characters")
        return "anonymous", value
    try:
        uuid = value if isinstance(value, UUID) else UUID(str(value))
    except ValueError:
        raise ValueError(f"{name} {value!r}: not a UUID") from None
    return name.removesuffix("_id"), str(uuid)


def surviving(c: Cursor, contact_id: str, profiles: Profiles) -> str | None:
    """The contact ``contact_id`` was merged into (through a few merges), None if it was not:
    by the profiles' ``merged_into``, which holds no cycle (projection/merges.py)."""
    contact, seen = contact_id, {contact_id}
    for _ in range(_MAX_MERGE_DEPTH):
        try:
            c.execute(
                f"SELECT merged_into FROM {profiles.table('contacts')} WHERE contact_id = %s",
                (contact,),
            )
        except Exception as exc:
            raise LookupError(
                f"cannot read the profiles view {profiles.instance!r} ({exc}); run its "
                "projection into this store, or pass profiles=None for a contact's own entries"
            ) from exc
        row = c.fetchone()
        if row is None or row[0] is None or row[0] in seen:
            break
        contact = row[0]
        seen.add(contact)
    return None if contact == contact_id else contact


def timelines_of(
    c: Cursor, subject: tuple[str, str], profiles: Profiles | None
) -> list[tuple[str, set[str]]]:
    """The timelines to read, as (subject_kind, ids)."""
    kind, subject_id = subject
    if kind in ("lead", "anonymous"):
        return [(kind, {subject_id})]
    # An account's timeline: its own entries (events about the account alone) and its
    # members'.
    own = [("account", {subject_id})] if kind == "account" else []
    if profiles is None:
        return [("contact", {subject_id})]
    try:
        if kind == "account":
            c.execute(
                f"SELECT contact_id FROM {profiles.table('members')} "
                "WHERE account_id = %s AND member = %s",
                (subject_id, True),
            )
            contacts = {row[0] for row in c.fetchall()}
        else:
            contacts = {subject_id}
        # Contacts merged into these ones (and into those, a few levels down) and the
        # visitors linked to any of them: one round trip per level of merges.
        visitors: set[str] = set()
        new = set(contacts)
        for _ in range(_MAX_MERGE_DEPTH):
            merged: set[str] = set()
            for part in chunks(sorted(new)):
                marks = placeholders(len(part))
                c.execute(
                    f"SELECT 'contact', contact_id FROM {profiles.table('contacts')} "
                    f"WHERE merged_into IN ({marks}) UNION ALL "
                    f"SELECT 'anonymous', anonymous_id FROM {profiles.table('identities')} "
                    f"WHERE contact_id IN ({marks})",
                    (*part, *part),
                )
                for found_kind, found_id in c.fetchall():
                    (merged if found_kind == "contact" else visitors).add(found_id)
            new = merged - contacts
            contacts |= new
            if not new:
                break
    except Exception as exc:
        raise LookupError(
            f"cannot read the profiles view {profiles.instance!r} ({exc}); run its "
            "projection into this store, or pass profiles=None for a contact's own entries"
        ) from exc
    return [("contact", contacts), ("anonymous", visitors), *own]


@dataclass(frozen=True)
class Filters:
    """A read's checked filters (None: no filter on that column)."""

    channels: list[str] | None = None
    types: list[str] | None = None
    statuses: list[str] | None = None
    journeys: list[str] | None = None
    campaigns: list[str] | None = None
    permissions: list[str] | None = None

    def empty(self) -> bool:
        """Whether some filter lists no value (nothing can match)."""
        return any(v is not None and not v for v in vars(self).values())


def conditions(
    s: TimelineSettings,
    f: Filters,
    since: datetime | None,
    until: datetime | None,
    window_start: datetime | None,
) -> tuple[list[str], list[Any]]:
    """The WHERE conditions (and their parameters) every timeline read shares."""
    chosen, type_filter = f.channels, f.types
    where: list[str] = []
    params: list[Any] = []
    for column, values in (
        ("channel", chosen),
        ("type", type_filter),
        ("status", f.statuses),
        ("journey_id", f.journeys),
        ("campaign_id", f.campaigns),
        ("permission", f.permissions),
    ):
        if values is not None:
            where.append(f"{column} IN ({placeholders(len(values))})")
            params += values
    if since is not None:
        where.append("occurred_at >= %s")
        params.append(iso(since))
    elif window_start is not None:
        # The default window bounds the windowed channels only; say so in SQL only for
        # the channels this read can return, so a plain bound stays an index range.
        shown = set(chosen if chosen is not None else s.channels)
        if type_filter is not None:
            shown &= {t.split(".", 1)[0] for t in type_filter}
        windowed = sorted(shown & s.windowed_channels)
        if windowed and shown <= s.windowed_channels:
            where.append("occurred_at >= %s")
            params.append(iso(window_start))
        elif windowed:
            where.append(f"(occurred_at >= %s OR channel NOT IN ({placeholders(len(windowed))}))")
            params += [iso(window_start), *windowed]
    if until is not None:
        where.append("occurred_at < %s")
        params.append(iso(until))
    return where, params


def read_page(
    c: Cursor,
    table: str,
    groups: list[tuple[str, set[str]]],
    where: list[str],
    params: list[Any],
    after: tuple[str, str] | None,
    limit: int,
) -> tuple[list[tuple[Any, ...]], bool, int]:
    """The page's rows, whether more follow, and how many match in all.

    Every timeline read (merged contacts, linked visitors, an account's members) is one
    query, and on the first page the count comes with it (a window function): two round trips
    fewer, which on PostgreSQL is most of a read's time. More ids than one statement should
    carry (a big account) are read part by part and merged."""
    groups = [(kind, ids) for kind, ids in groups if ids]
    if sum(len(ids) for _, ids in groups) <= _ONE_STATEMENT:
        parts = [groups] if groups else []
    else:
        parts = [[(kind, set(part))] for kind, ids in groups for part in chunks(sorted(ids))]
    rows: list[tuple[Any, ...]] = []
    total = 0
    for part in parts:
        found, count = _read_rows(c, table, part, where, params, after, limit)
        rows += found
        total += count
    if len(parts) > 1:
        rows.sort(key=lambda r: (r[3], r[2]), reverse=True)
    page = _once_each(rows)
    return page[:limit], len(page) > limit, total


def _read_rows(
    c: Cursor,
    table: str,
    groups: list[tuple[str, set[str]]],
    where: list[str],
    params: list[Any],
    after: tuple[str, str] | None,
    limit: int,
) -> tuple[list[tuple[Any, ...]], int]:
    """The newest rows of these timelines after ``after`` (enough for ``limit`` + 1 distinct
    events, or all there are), and how many match in all."""
    owners: list[str] = []
    args: list[Any] = []
    for kind, ids in groups:
        owners.append(f"(subject_kind = %s AND subject_id IN ({placeholders(len(ids))}))")
        args += [kind, *sorted(ids)]
    own = owners[0] if len(owners) == 1 else "(" + " OR ".join(owners) + ")"
    matching = " AND ".join([own, *where])
    args += params
    total: int | None = None
    if after is not None:
        c.execute(f"SELECT COUNT(*) FROM {table} WHERE {matching}", args)
        total = int(c.fetchone()[0])
        matching += " AND (occurred_at, event_id) < (%s, %s)"
        args += after
    counted = ", COUNT(*) OVER ()" if total is None else ""
    wanted = limit + 1
    while True:
        c.execute(
            f"SELECT {ENTRY_COLUMNS}{counted} FROM {table} WHERE {matching} "
            "ORDER BY occurred_at DESC, event_id DESC LIMIT %s",
            (*args, wanted),
        )
        rows = c.fetchall()
        if total is None:
            total = int(rows[0][-1]) if rows else 0
            rows = [row[:-1] for row in rows]
        # An event on two of the timelines (a contact's and its linked visitor's) comes
        # twice; when that left too few distinct ones, read further.
        if len(rows) < wanted or len(_once_each(rows)) > limit:
            return rows, total
        wanted *= 2


def _once_each(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows newest first with each event once (the same event sorts next to itself)."""
    page: list[tuple[Any, ...]] = []
    for row in rows:
        if not page or page[-1][2] != row[2]:
            page.append(row)
    return page


def message_previews(
    c: Cursor,
    table: str,
    sent_types: frozenset[str],
    rows: list[tuple[Any, ...]],
    granted: Sequence[str] | None,
) -> dict[tuple[str, str, str | None], dict[str, Any]]:
    """The previews of the messages the page's interactions are about, by (subject_kind,
    subject_id, message_id); the messages themselves are not about another."""
    wanted = {(r[0], r[1], r[7]) for r in rows if r[7] is not None and r[4] not in sent_types}
    if not wanted:
        return {}
    ids = sorted({w[2] for w in wanted})
    kinds = sorted(sent_types)
    c.execute(
        f"SELECT subject_kind, subject_id, message_id, permission, preview "
        f"FROM {table} WHERE message_id IN ({placeholders(len(ids))}) "
        f"AND type IN ({placeholders(len(kinds))})",
        (*ids, *kinds),
    )
    return {
        (kind, subject_id, message_id): orjson.loads(preview)
        for kind, subject_id, message_id, permission, preview in c.fetchall()
        if (kind, subject_id, message_id) in wanted and (granted is None or permission in granted)
    }


def choose(name: str, values: Any, allowed: Sequence[str] | None) -> list[str] | None:
    """A filter's values, checked against what is allowed (None: any string of 1 to 1000
    characters, an id); None means no filter."""
    if values is None:
        return None
    example = allowed[0] if allowed else "an id"
    if isinstance(values, str) or not isinstance(values, Collection):
        raise ValueError(f"{name} {values!r}: must be a list of strings, e.g. [{example!r}]")
    if allowed is None:
        bad = [v for v in values if not isinstance(v, str) or not 1 <= len(v) <= 1000]
        if bad:
            raise ValueError(f"{name} {bad[0]!r}: must be a string of 1 to 1000 characters")
        return sorted(set(values))
    unknown = sorted(str(v) for v in values if v not in allowed)
    if unknown:
        raise ValueError(f"{name} {unknown!r}: unknown; the known ones are {', '.join(allowed)}")
    return sorted(set(values))


def _instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def entry(row: tuple[Any, ...], message: dict[str, Any] | None) -> TimelineEntry:
    kind, subject_id, event_id, when, event_type, channel, permission, message_id = row[:8]
    campaign, journey, preview, status, status_at, detail, source = row[8:]
    return TimelineEntry(
        event_id=event_id,
        type=event_type,
        channel=channel,
        occurred_at=datetime.fromisoformat(when),
        subject_kind=kind,
        subject_id=subject_id,
        permission=permission,
        preview=orjson.loads(preview),
        status=status,
        status_at=_instant(status_at),
        status_detail=None if detail is None else orjson.loads(detail),
        message_id=message_id,
        campaign_id=campaign,
        journey_id=journey,
        source=source,
        message=message,
    )
