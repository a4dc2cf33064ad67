"""The timeline projection: entries per subject, delivery reports settled into the status of
the message they report on, and ``query`` for a page of a subject's timeline."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson

from interaction_store import custom_types
from interaction_store.events import InteractionEvent
from interaction_store.projection.base import Projection, chunks, iso, placeholders
from interaction_store.projection.erasure import ERASURE_TYPES, ErasedSubjects
from interaction_store.projection.profiles import Profiles
from interaction_store.projection.timeline.query import (
    ENTRY_COLUMNS,
    MAX_LIMIT,
    Filters,
    TimelinePage,
    choose,
    conditions,
    decode_cursor,
    encode_cursor,
    entry,
    message_previews,
    read_page,
    subject_of,
    surviving,
    timelines_of,
)
from interaction_store.projection.timeline.settings import SENT, TimelineSettings
from interaction_store.settings import Settings
from interaction_store.views.base import Cursor, ViewStore, insert_rows, update_rows

_ENTRY = tuple(ENTRY_COLUMNS.split(", "))
_ENTRY_KEY = ("subject_kind", "subject_id", "occurred_at", "event_id")
_STATUS = ("status", "status_at", "status_detail")
_REPORT = (
    "subject_kind",
    "subject_id",
    "event_id",
    "occurred_at",
    "type",
    "channel",
    "message_id",
    "campaign_id",
    "journey_id",
    "status",
    "detail",
    "source",
)
_REPORT_KEY = ("subject_kind", "subject_id", "event_id")
_MessageKey = tuple[str, str, str, str]
ERASED_PREVIEW = '{"erased":true}'
"""An erased subject's previews and report details: what was sent or said is forgotten; the
entry keeps its type, time, status and ids, so it is still counted."""


class Timeline(Projection):
    """Interactions per subject (a contact, a lead, or an anonymous visitor), newest first.

    An event about a contact is on that contact's timeline; about a lead, on the lead's; about
    both, on both; an anonymous visitor's events are on the visitor's timeline, which a
    contact's timeline includes once ``identity.linked`` links them (read at query time from
    the profiles view, as are merged contacts and an account's members).

    Delivery reports (``[corrections]``: delivered, bounced, failed) are not entries: the
    latest report by (occurred_at, event_id) becomes the status of the ``<channel>.sent``
    entry with the same ``correlation.message_id`` on the same timeline, whatever order they
    arrive in. A report whose message is not on the timeline (not arrived yet, or sent by a
    system that publishes no ``sent`` events) shows as ONE entry, placed at its first report
    and carrying the latest status: a bounce is news about the contact's address a reader
    would want to see, and the entry gives way to the message as soon as it arrives.
    """

    kind = "timeline"

    @classmethod
    def from_settings(cls, settings: Settings, instance: str | None = None) -> Timeline:
        """The view with ``timeline.toml`` from the settings' projections folder."""
        custom_types.ensure(settings.streams_dir)  # its [custom."..."] tables name them
        return cls(instance, TimelineSettings.load(settings.projections_dir))

    def __init__(self, instance: str | None = None, settings: TimelineSettings | None = None):
        super().__init__(instance)
        self.settings = settings if settings is not None else TimelineSettings.load()
        s = self.settings
        self._wanted = s.entry_types | s.corrections.keys()
        self.erasures = ErasedSubjects(self.table, follow_visitors=True)
        self.event_types = frozenset(self._wanted) | ERASURE_TYPES

    @property
    def tables(self) -> dict[str, str]:
        return {
            "entries": "subject_kind TEXT NOT NULL, subject_id TEXT NOT NULL, "
            "event_id TEXT NOT NULL, occurred_at TEXT NOT NULL, type TEXT NOT NULL, "
            "channel TEXT NOT NULL, permission TEXT NOT NULL, message_id TEXT, "
            "campaign_id TEXT, journey_id TEXT, preview TEXT NOT NULL, status TEXT, "
            "status_at TEXT, status_detail TEXT, source TEXT, "
            # Also the read path: a subject's entries by time, scanned backwards from a cursor.
            "PRIMARY KEY (subject_kind, subject_id, occurred_at, event_id)",
            # Every delivery report, so a message's status can be worked out again from all
            # of them whenever one arrives (before or after its message).
            "reports": "subject_kind TEXT NOT NULL, subject_id TEXT NOT NULL, "
            "event_id TEXT NOT NULL, occurred_at TEXT NOT NULL, type TEXT NOT NULL, "
            "channel TEXT NOT NULL, message_id TEXT NOT NULL, campaign_id TEXT, "
            "journey_id TEXT, status TEXT NOT NULL, detail TEXT NOT NULL, source TEXT, "
            "PRIMARY KEY (subject_kind, subject_id, event_id)",
        } | self.erasures.tables

    def indexes(self, dialect: str) -> list[str]:
        entries, reports = self.table("entries"), self.table("reports")
        return [
            f"CREATE INDEX IF NOT EXISTS {self.table('entries_by_message')} ON {entries} "
            "(message_id) WHERE message_id IS NOT NULL",
            f"CREATE INDEX IF NOT EXISTS {self.table('reports_by_message')} ON {reports} "
            "(message_id)",
        ]

    def wants(self, event: InteractionEvent) -> bool:
        return event.type in self._wanted or event.type in ERASURE_TYPES

    @staticmethod
    def subjects(event: InteractionEvent) -> list[tuple[str, str]]:
        """The timelines an event is on: (subject_kind, subject_id). An event about an
        account alone (an activity or case of the company) is on the account's own."""
        s = event.subject
        out = []
        if s.contact_id is not None:
            out.append(("contact", str(s.contact_id)))
        if s.lead_id is not None:
            out.append(("lead", str(s.lead_id)))
        if not out and s.anonymous_id is not None:
            out.append(("anonymous", s.anonymous_id))
        if not out and s.account_id is not None:
            out.append(("account", str(s.account_id)))
        return out

    def _preview(self, event: InteractionEvent) -> str:
        fields = self.settings.preview.get(event.type)
        if not fields:
            return "{}"
        shown = event.payload.model_dump(mode="json", include=set(fields), exclude_none=True)
        return orjson.dumps(shown).decode()

    def apply(self, cursor: Cursor, events: Sequence[InteractionEvent]) -> None:
        """1. note erasures and visitor links; 2. make entries and reports, an erased
        subject's without their previews (never written in clear); 3. settle the messages
        touched; 4. forget what newly erased subjects had."""
        s = self.settings
        newly_erased = self.erasures.record(cursor, events)
        subjects = {sub for e in events if e.type in self._wanted for sub in self.subjects(e)}
        erased = self.erasures.among(cursor, subjects) | newly_erased
        entries: list[tuple[Any, ...]] = []
        reports: list[tuple[Any, ...]] = []
        touched: set[str] = set()  # message ids whose status may have changed
        for event in events:
            event_type = event.type
            if event_type not in self._wanted:
                continue
            channel = s.channel_of(event_type)
            corr = event.correlation
            head = (str(event.event_id), iso(event.occurred_at), event_type, channel)
            source = event.source
            message = (corr.message_id, corr.campaign_id, corr.journey_id)
            on = self.subjects(event)
            preview = ERASED_PREVIEW if erased and erased & set(on) else self._preview(event)
            status = s.corrections.get(event_type)
            if status is not None and corr.message_id is not None:
                touched.add(corr.message_id)
                reports += [
                    (kind, subject_id, *head, *message, status, preview, source)
                    for kind, subject_id in on
                ]
                continue
            if status is not None:
                # A report naming no message can only ever be its own entry.
                state: tuple[Any, ...] = (status, head[1], preview)
            elif event_type in s.sent_types:
                state = (SENT, None, None)
                if corr.message_id is not None:
                    touched.add(corr.message_id)
            else:
                state = (None, None, None)
            permission = s.permissions[channel]
            entries += [
                (kind, subject_id, *head, permission, *message, preview, *state, source)
                for kind, subject_id in on
            ]
        insert_rows(cursor, self.table("entries"), _ENTRY, entries, _ENTRY_KEY)
        insert_rows(cursor, self.table("reports"), _REPORT, reports, _REPORT_KEY)
        if newly_erased:
            self._forget(cursor, sorted(newly_erased))
        if touched:
            self._settle(cursor, sorted(touched))

    def _forget(self, cursor: Cursor, subjects: list[tuple[str, str]]) -> None:
        """Blank the previews and report details of erased subjects' stored rows (a report's
        detail becomes its message's status detail, so both go)."""
        entries, reports = self.table("entries"), self.table("reports")
        cursor.executemany(
            f"UPDATE {entries} SET preview = %s, status_detail = CASE WHEN status_detail "
            "IS NULL THEN NULL ELSE %s END WHERE subject_kind = %s AND subject_id = %s",
            [(ERASED_PREVIEW, ERASED_PREVIEW, kind, sid) for kind, sid in subjects],
        )
        cursor.executemany(
            f"UPDATE {reports} SET detail = %s WHERE subject_kind = %s AND subject_id = %s",
            [(ERASED_PREVIEW, kind, sid) for kind, sid in subjects],
        )

    def _settle(self, cursor: Cursor, message_ids: list[str]) -> None:
        """Work out again, from every report and message stored, the status of each message
        touched and whether a report must stand in for a missing message."""
        s = self.settings
        kinds = sorted(s.sent_types | s.corrections.keys())
        updates: list[tuple[Any, ...]] = []
        deletes: list[tuple[str, str, str]] = []
        stand_ins: list[tuple[Any, ...]] = []
        for part in chunks(message_ids):
            # (subject_kind, subject_id, channel, message_id) -> its reports, its entries
            found: dict[_MessageKey, list[tuple[Any, ...]]] = defaultdict(list)
            shown: dict[_MessageKey, list[tuple[Any, ...]]] = defaultdict(list)
            cursor.execute(
                "SELECT subject_kind, subject_id, channel, message_id, occurred_at, event_id, "
                "type, status, detail, campaign_id, journey_id, source "
                f"FROM {self.table('reports')} WHERE message_id IN ({placeholders(len(part))})",
                part,
            )
            for row in cursor.fetchall():
                found[(row[0], row[1], row[2], row[3])].append(row[4:])
            cursor.execute(
                "SELECT subject_kind, subject_id, channel, message_id, occurred_at, event_id, "
                f"type, status, status_at, status_detail FROM {self.table('entries')} "
                f"WHERE message_id IN ({placeholders(len(part))}) "
                f"AND type IN ({placeholders(len(kinds))})",
                (*part, *kinds),
            )
            for row in cursor.fetchall():
                shown[(row[0], row[1], row[2], row[3])].append(row[4:])
            for key in found.keys() | shown.keys():
                kind, subject_id, channel, message_id = key
                history = sorted(found.get(key, ()))  # by (occurred_at, event_id)
                rows = shown.get(key, [])
                # Entry rows: (occurred_at, event_id, type, status, status_at, status_detail)
                sent = f"{channel}.{SENT}"
                messages = [r for r in rows if r[2] == sent]
                stand_in = [r for r in rows if r[2] != sent]
                # (status, status_at, status_detail) as the latest report says
                latest = (history[-1][3], history[-1][0], history[-1][4]) if history else None
                if messages:
                    state = latest or (SENT, None, None)
                    updates += [
                        (*state, kind, subject_id, *r[:2]) for r in messages if r[3:] != state
                    ]
                    deletes += [(kind, subject_id, *r[:2]) for r in stand_in]
                elif latest is not None:
                    when, event_id, event_type, _, detail, campaign, journey, by = history[0]
                    first = (when, event_id)
                    deletes += [(kind, subject_id, *r[:2]) for r in stand_in if r[:2] != first]
                    if not any(r[:2] == first and r[3:] == latest for r in stand_in):
                        head = (event_id, when, event_type, channel, s.permissions[channel])
                        ids = (message_id, campaign, journey)
                        stand_ins.append((kind, subject_id, *head, *ids, detail, *latest, by))
        table = self.table("entries")
        if deletes:
            where = " AND ".join(f"{k} = %s" for k in _ENTRY_KEY)
            cursor.executemany(f"DELETE FROM {table} WHERE {where}", deletes)
        update_rows(cursor, table, _STATUS, _ENTRY_KEY, updates)
        insert_rows(cursor, table, _ENTRY, stand_ins, _ENTRY_KEY, _STATUS)

    # ------------------------------------------------------------------ reading

    def query(
        self,
        store: ViewStore,
        *,
        contact_id: UUID | str | None = None,
        lead_id: UUID | str | None = None,
        account_id: UUID | str | None = None,
        anonymous_id: str | None = None,
        channels: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        statuses: Sequence[str] | None = None,
        journeys: Sequence[str] | None = None,
        campaigns: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
        permissions: Collection[str] | None = None,
        now: datetime | None = None,
        profiles: Profiles | str | None = "profiles",
    ) -> TimelinePage:
        """One page of a timeline, newest first.

        Exactly one subject: a contact (with the contacts merged into it and the anonymous
        visitors linked to it; one merged into another reads as that one, and the page's
        ``merged_into`` says so), a lead (lead-subject events only), an account (the timelines
        of its current members, and its own: events about the account alone) or an anonymous
        visitor. Filters combine with AND (each one's values with OR): channels, types,
        statuses (a message's delivery status, :attr:`TimelineSettings.statuses`), journeys
        and campaigns (``correlation.journey_id`` / ``campaign_id``), ``since`` (inclusive)
        and ``until`` (exclusive). Without ``since``
        the window of ``window_days`` before ``now`` applies to the windowed channels.
        ``permissions`` are the read categories the caller holds (None: all); entries of
        other categories are neither returned nor counted. ``profiles`` is the profiles view
        (or its instance name) people are looked up in; None looks nothing up.
        ``cursor`` is a previous page's ``next_cursor``: pages stay stable while events
        arrive (newer ones are not on later pages; none is repeated or skipped).
        """
        s = self.settings
        subject = subject_of(contact_id, lead_id, account_id, anonymous_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit {limit!r}: must be a whole number from 1 to {MAX_LIMIT}")
        f = Filters(
            channels=choose("channels", channels, s.channels),
            types=choose("types", types, sorted(s.entry_types | s.corrections.keys())),
            statuses=choose("statuses", statuses, sorted(s.statuses)),
            journeys=choose("journeys", journeys, None),
            campaigns=choose("campaigns", campaigns, None),
            permissions=choose("permissions", permissions, sorted(set(s.permissions.values()))),
        )
        for name, moment in (("since", since), ("until", until), ("now", now)):
            if moment is not None and (
                not isinstance(moment, datetime) or moment.utcoffset() is None
            ):
                raise ValueError(f"{name} {moment!r}: must be a timezone-aware datetime")
        if since is not None and until is not None and since >= until:
            raise ValueError(f"since {since.isoformat()}: must be before until {until.isoformat()}")
        after = decode_cursor(cursor) if cursor is not None else None
        if isinstance(profiles, str):
            profiles = Profiles(profiles)
        if subject[0] == "account" and profiles is None:
            raise ValueError(
                f"profiles {profiles!r}: an account's timeline needs the profiles view"
            )

        window_start = None
        if since is None:
            window_start = (now or datetime.now(UTC)) - timedelta(days=s.window_days)
        if f.empty():
            return TimelinePage([], None, 0, window_start)  # a filter nothing can match
        where, params = conditions(s, f, since, until, window_start)
        # No snapshot needed: the page and its count are one statement, and a merge or a
        # message preview committed between statements is at worst one page early.
        with store.reading(snapshot=False) as c:
            merged_into = None
            if subject[0] == "contact" and profiles is not None:
                # A merged-away contact reads as the one it went into, and says which.
                merged_into = surviving(c, subject[1], profiles)
                subject = subject if merged_into is None else ("contact", merged_into)
            groups = timelines_of(c, subject, profiles)
            page, more, total = read_page(
                c, self.table("entries"), groups, where, params, after, limit
            )
            messages = message_previews(c, self.table("entries"), s.sent_types, page, f.permissions)
        sent_types = s.sent_types
        entries = [
            entry(row, None if row[4] in sent_types else messages.get((row[0], row[1], row[7])))
            for row in page
        ]
        next_cursor = encode_cursor(page[-1][3], page[-1][2]) if more else None
        return TimelinePage(entries, next_cursor, total, window_start, merged_into)
