"""The timeline view: each contact's, lead's and visitor's interactions, newest first, with a
preview of what was sent and delivery reports folded into the message they report on."""

from __future__ import annotations

import base64
import binascii
import tomllib
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson

from interaction_store.events import EVENT_TYPES, PERSONAL, InteractionEvent
from interaction_store.projection.base import Projection, chunks, iso, placeholders
from interaction_store.projection.profiles import Profiles
from interaction_store.settings import Settings
from interaction_store.views.base import Cursor, ViewStore

SETTINGS_FILE = "timeline.toml"
MAX_LIMIT = 500
SENT = "sent"
"""The status of a message no delivery report has reached yet."""

_KNOWN_CHANNELS = frozenset(t.split(".", 1)[0] for t in EVENT_TYPES)
_MAX_MERGE_DEPTH = 10  # a chain of merges longer than this is a data problem, not a timeline's


# --------------------------------------------------------------------------- settings


class TimelineConfigError(ValueError):
    """``timeline.toml`` says something the timeline cannot do; the message names the file,
    the key and the value."""


@dataclass(frozen=True)
class TimelineSettings:
    """What ``projections/timeline.toml`` says: which events are entries, what they preview,
    which are delivery reports, the read permission per channel and the default window."""

    window_days: int
    channels: tuple[str, ...]
    permissions: Mapping[str, str]
    preview: Mapping[str, tuple[str, ...]]
    corrections: Mapping[str, str]
    windowed_channels: frozenset[str]
    hidden_types: frozenset[str] = frozenset()
    source: str = "(in memory)"
    entry_types: frozenset[str] = field(init=False)
    sent_types: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        shown = frozenset(
            t
            for t in EVENT_TYPES
            if t.split(".", 1)[0] in self.channels and t not in self.hidden_types
        )
        # Reports are not entries of their own, except when their message is missing.
        object.__setattr__(self, "entry_types", shown - self.corrections.keys())
        sent = frozenset(f"{c}.{SENT}" for c in self.channels) & shown
        object.__setattr__(self, "sent_types", sent)

    @property
    def statuses(self) -> frozenset[str]:
        return frozenset({SENT, *self.corrections.values()})

    @classmethod
    def load(cls, projections_dir: Path | None = None) -> TimelineSettings:
        """Read ``timeline.toml`` from ``projections_dir`` (default: ``ISTORE_PROJECTIONS_DIR``,
        else the folder shipped with the package)."""
        folder = projections_dir if projections_dir is not None else Settings().projections_dir
        path = folder / SETTINGS_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TimelineConfigError(
                f"{path}: cannot read the timeline settings ({exc.strerror or exc}); "
                "set ISTORE_PROJECTIONS_DIR to the folder holding timeline.toml"
            ) from None
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, source: str = "(in memory)") -> TimelineSettings:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise TimelineConfigError(f"{source}: not valid TOML: {exc}") from None
        return _Parser(source).settings(doc)


class _Parser:
    """Checks a parsed ``timeline.toml``, raising errors that name file, key and value."""

    KEYS = (
        "window_days",
        "channels",
        "windowed_channels",
        "hidden_types",
        "corrections",
        "preview",
        "permissions",
    )
    REQUIRED = ("window_days", "channels", "corrections", "preview", "permissions")

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, value: Any, problem: str) -> TimelineConfigError:
        return TimelineConfigError(f"{self.source}: {key} = {value!r}: {problem}")

    def settings(self, doc: dict[str, Any]) -> TimelineSettings:
        for key, value in doc.items():
            if key not in self.KEYS:
                raise self.fail(key, value, f"unknown key; the keys are {', '.join(self.KEYS)}")
        for key in self.REQUIRED:
            if key not in doc:
                raise TimelineConfigError(f"{self.source}: {key} is missing (required)")
        window = doc["window_days"]
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 36500:
            raise self.fail("window_days", window, "must be a whole number of days, 1 to 36500")
        channels = self.channel_list("channels", doc["channels"], _KNOWN_CHANNELS)
        if not channels:
            raise self.fail("channels", channels, "name at least one channel")
        windowed = self.channel_list(
            "windowed_channels", doc.get("windowed_channels", channels), set(channels)
        )
        hidden = self.types_list("hidden_types", doc.get("hidden_types", []), channels)
        permissions = self.permissions(doc["permissions"], channels)
        shown = {t for t in EVENT_TYPES if t.split(".", 1)[0] in channels} - set(hidden)
        corrections = self.corrections(doc["corrections"], shown)
        preview = self.preview(doc["preview"], channels)
        return TimelineSettings(
            window_days=window,
            channels=tuple(channels),
            permissions=permissions,
            preview=preview,
            corrections=corrections,
            windowed_channels=frozenset(windowed),
            hidden_types=frozenset(hidden),
            source=self.source,
        )

    def strings(self, key: str, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, value, "must be a list of non-empty strings")
        if len(set(value)) != len(value):
            raise self.fail(key, value, "lists a value twice")
        return value

    def table(self, key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, value, "must be a table ([" + key + "])")
        return value

    def channel_list(self, key: str, value: Any, allowed: Collection[str]) -> list[str]:
        channels = self.strings(key, value)
        for i, channel in enumerate(channels):
            if channel not in allowed:
                raise self.fail(
                    f"{key}[{i}]", channel, f"not one of the channels: {', '.join(sorted(allowed))}"
                )
        return channels

    def types_list(self, key: str, value: Any, channels: Sequence[str]) -> list[str]:
        types = self.strings(key, value)
        for i, event_type in enumerate(types):
            self.check_type(f"{key}[{i}]", event_type, channels)
        return types

    def check_type(self, key: str, event_type: str, channels: Collection[str]) -> None:
        if event_type not in EVENT_TYPES:
            raise self.fail(key, event_type, "unknown event type (see streams/ for the types)")
        if event_type.split(".", 1)[0] not in channels:
            raise self.fail(key, event_type, "its channel is not in `channels`")

    def permissions(self, value: Any, channels: Sequence[str]) -> dict[str, str]:
        table = self.table("permissions", value)
        for channel, category in table.items():
            key = f"permissions.{channel}"
            if channel not in channels:
                raise self.fail(key, category, f"{channel!r} is not in `channels`")
            if not isinstance(category, str) or not category:
                raise self.fail(key, category, "must be a non-empty string (a read permission)")
        for channel in channels:
            if channel not in table:
                raise TimelineConfigError(
                    f"{self.source}: permissions.{channel} is missing: every channel in "
                    "`channels` needs the read permission its entries require"
                )
        return dict(table)

    def corrections(self, value: Any, shown: Collection[str]) -> dict[str, str]:
        table = self.table("corrections", value)
        for event_type, status in table.items():
            key = f'corrections."{event_type}"'
            self.check_type(key, event_type, {t.split(".", 1)[0] for t in shown})
            sent = f"{event_type.split('.', 1)[0]}.{SENT}"
            if event_type not in shown or sent not in shown:
                raise self.fail(key, status, f"both {event_type} and {sent} must be shown")
            if event_type == sent:
                raise self.fail(key, status, "a message cannot report on itself")
            if not isinstance(status, str) or not status or status == SENT:
                raise self.fail(key, status, f"must be a status name other than {SENT!r}")
        return dict(table)

    def preview(self, value: Any, channels: Sequence[str]) -> dict[str, tuple[str, ...]]:
        table = self.table("preview", value)
        out: dict[str, tuple[str, ...]] = {}
        for event_type, fields in table.items():
            key = f'preview."{event_type}"'
            self.check_type(key, event_type, channels)
            names = self.strings(key, fields)
            model = EVENT_TYPES[event_type].model_fields["payload"].annotation
            known = getattr(model, "model_fields", {})
            for i, name in enumerate(names):
                if name not in known:
                    raise self.fail(
                        f"{key}[{i}]",
                        name,
                        f"{event_type} has no such payload field; it has "
                        f"{', '.join(known) or 'none'}",
                    )
                if (known[name].json_schema_extra or {}).get(PERSONAL):
                    raise self.fail(
                        f"{key}[{i}]",
                        name,
                        "is personal data; the timeline keeps none so erasure need not rewrite it",
                    )
            out[event_type] = tuple(names)
        return out


# --------------------------------------------------------------------------- reading


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
    except (binascii.Error, orjson.JSONDecodeError, TypeError, ValueError):
        raise ValueError(f"cursor {cursor!r}: {problem}") from None
    if moment.tzinfo is None:
        raise ValueError(f"cursor {cursor!r}: {problem}")
    return iso(moment), str(uuid)


# --------------------------------------------------------------------------- the view

_ENTRY_COLUMNS = (
    "subject_kind, subject_id, event_id, occurred_at, type, channel, permission, message_id, "
    "campaign_id, journey_id, preview, status, status_at, status_detail"
)
_INSERT_ENTRY = placeholders(14)
_ENTRY_KEY = "subject_kind = %s AND subject_id = %s AND occurred_at = %s AND event_id = %s"
_MessageKey = tuple[str, str, str, str]


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
        return cls(instance, TimelineSettings.load(settings.projections_dir))

    def __init__(self, instance: str | None = None, settings: TimelineSettings | None = None):
        super().__init__(instance)
        self.settings = settings if settings is not None else TimelineSettings.load()
        s = self.settings
        self._wanted = s.entry_types | s.corrections.keys()

    @property
    def tables(self) -> dict[str, str]:
        return {
            "entries": "subject_kind TEXT NOT NULL, subject_id TEXT NOT NULL, "
            "event_id TEXT NOT NULL, occurred_at TEXT NOT NULL, type TEXT NOT NULL, "
            "channel TEXT NOT NULL, permission TEXT NOT NULL, message_id TEXT, "
            "campaign_id TEXT, journey_id TEXT, preview TEXT NOT NULL, status TEXT, "
            "status_at TEXT, status_detail TEXT, "
            # Also the read path: a subject's entries by time, scanned backwards from a cursor.
            "PRIMARY KEY (subject_kind, subject_id, occurred_at, event_id)",
            # Every delivery report, so a message's status can be worked out again from all
            # of them whenever one arrives (before or after its message).
            "reports": "subject_kind TEXT NOT NULL, subject_id TEXT NOT NULL, "
            "event_id TEXT NOT NULL, occurred_at TEXT NOT NULL, type TEXT NOT NULL, "
            "channel TEXT NOT NULL, message_id TEXT NOT NULL, campaign_id TEXT, "
            "journey_id TEXT, status TEXT NOT NULL, detail TEXT NOT NULL, "
            "PRIMARY KEY (subject_kind, subject_id, event_id)",
        }

    def indexes(self, dialect: str) -> list[str]:
        entries, reports = self.table("entries"), self.table("reports")
        return [
            f"CREATE INDEX IF NOT EXISTS {self.table('entries_by_message')} ON {entries} "
            "(message_id) WHERE message_id IS NOT NULL",
            f"CREATE INDEX IF NOT EXISTS {self.table('reports_by_message')} ON {reports} "
            "(message_id)",
        ]

    def wants(self, event: InteractionEvent) -> bool:
        return event.type in self._wanted

    @staticmethod
    def subjects(event: InteractionEvent) -> list[tuple[str, str]]:
        """The timelines an event is on: (subject_kind, subject_id)."""
        s = event.subject
        out = []
        if s.contact_id is not None:
            out.append(("contact", str(s.contact_id)))
        if s.lead_id is not None:
            out.append(("lead", str(s.lead_id)))
        if not out and s.anonymous_id is not None:
            out.append(("anonymous", s.anonymous_id))
        return out

    def _preview(self, event: InteractionEvent) -> str:
        fields = self.settings.preview.get(event.type)
        if not fields:
            return "{}"
        shown = event.payload.model_dump(mode="json", include=set(fields), exclude_none=True)
        return orjson.dumps(shown).decode()

    def apply(self, cursor: Cursor, events: Sequence[InteractionEvent]) -> None:
        s = self.settings
        entries: list[tuple[Any, ...]] = []
        reports: list[tuple[Any, ...]] = []
        touched: set[str] = set()  # message ids whose status may have changed
        for event in events:
            event_type = event.type
            if event_type not in self._wanted:
                continue
            channel = event.channel
            corr = event.correlation
            head = (str(event.event_id), iso(event.occurred_at), event_type, channel)
            message = (corr.message_id, corr.campaign_id, corr.journey_id)
            preview = self._preview(event)
            status = s.corrections.get(event_type)
            if status is not None and corr.message_id is not None:
                touched.add(corr.message_id)
                reports += [
                    (kind, subject_id, *head, *message, status, preview)
                    for kind, subject_id in self.subjects(event)
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
                (kind, subject_id, *head, permission, *message, preview, *state)
                for kind, subject_id in self.subjects(event)
            ]
        if entries:
            cursor.executemany(
                f"INSERT INTO {self.table('entries')} ({_ENTRY_COLUMNS}) "
                f"VALUES ({_INSERT_ENTRY}) "
                "ON CONFLICT (subject_kind, subject_id, occurred_at, event_id) DO NOTHING",
                entries,
            )
        if reports:
            cursor.executemany(
                f"INSERT INTO {self.table('reports')} VALUES ({placeholders(11)}) "
                "ON CONFLICT (subject_kind, subject_id, event_id) DO NOTHING",
                reports,
            )
        if touched:
            self._settle(cursor, sorted(touched))

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
                "type, status, detail, campaign_id, journey_id "
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
                    when, event_id, event_type, _, detail, campaign, journey = history[0]
                    first = (when, event_id)
                    deletes += [(kind, subject_id, *r[:2]) for r in stand_in if r[:2] != first]
                    if not any(r[:2] == first and r[3:] == latest for r in stand_in):
                        head = (event_id, when, event_type, channel, s.permissions[channel])
                        ids = (message_id, campaign, journey)
                        stand_ins.append((kind, subject_id, *head, *ids, detail, *latest))
        table = self.table("entries")
        if deletes:
            cursor.executemany(
                f"DELETE FROM {table} WHERE {_ENTRY_KEY}",
                deletes,
            )
        if updates:
            cursor.executemany(
                f"UPDATE {table} SET status = %s, status_at = %s, status_detail = %s "
                f"WHERE {_ENTRY_KEY}",
                updates,
            )
        if stand_ins:
            cursor.executemany(
                f"INSERT INTO {table} ({_ENTRY_COLUMNS}) VALUES ({_INSERT_ENTRY}) "
                "ON CONFLICT (subject_kind, subject_id, occurred_at, event_id) DO UPDATE SET "
                "status = EXCLUDED.status, status_at = EXCLUDED.status_at, "
                "status_detail = EXCLUDED.status_detail",
                stand_ins,
            )

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
        visitors linked to it), a lead (lead-subject events only), an account (the timelines
        of its current members) or an anonymous visitor. Filters combine with AND: channels,
        types, statuses, ``since`` (inclusive) and ``until`` (exclusive). Without ``since``
        the window of ``window_days`` before ``now`` applies to the windowed channels.
        ``permissions`` are the read categories the caller holds (None: all); entries of
        other categories are neither returned nor counted. ``profiles`` is the profiles view
        (or its instance name) people are looked up in; None looks nothing up.
        ``cursor`` is a previous page's ``next_cursor``: pages stay stable while events
        arrive (newer ones are not on later pages; none is repeated or skipped).
        """
        s = self.settings
        subject = self._subject(contact_id, lead_id, account_id, anonymous_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit {limit!r}: must be a whole number from 1 to {MAX_LIMIT}")
        chosen = _choose("channels", channels, s.channels)
        type_filter = _choose("types", types, sorted(s.entry_types | s.corrections.keys()))
        status_filter = _choose("statuses", statuses, sorted(s.statuses))
        granted = _choose("permissions", permissions, sorted(set(s.permissions.values())))
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
        filters = [chosen, type_filter, status_filter, granted]
        if any(values is not None and not values for values in filters):
            return TimelinePage([], None, 0, window_start)  # a filter nothing can match
        where, params = self._conditions(
            chosen, type_filter, status_filter, granted, since, until, window_start
        )
        with store.reading() as c:
            groups = self._groups(c, subject, profiles)
            page, more, total = self._read(c, groups, where, params, after, limit)
            messages = self._messages(c, page, granted)
        sent_types = s.sent_types
        entries = [
            _entry(row, None if row[4] in sent_types else messages.get((row[0], row[1], row[7])))
            for row in page
        ]
        next_cursor = encode_cursor(page[-1][3], page[-1][2]) if more else None
        return TimelinePage(entries, next_cursor, total, window_start)

    def _read(
        self,
        c: Cursor,
        groups: list[tuple[str, set[str]]],
        where: list[str],
        params: list[Any],
        after: tuple[str, str] | None,
        limit: int,
    ) -> tuple[list[tuple[Any, ...]], bool, int]:
        """The page's rows, whether more follow, and how many match in all."""
        table = self.table("entries")
        rows: list[tuple[Any, ...]] = []
        total = 0
        for kind, ids in groups:
            for part in chunks(sorted(ids)):
                own = f"subject_kind = %s AND subject_id IN ({placeholders(len(part))})"
                matching = " AND ".join([own, *where])
                args = (kind, *part, *params)
                c.execute(f"SELECT COUNT(*) FROM {table} WHERE {matching}", args)
                total += int(c.fetchone()[0])
                if after is not None:
                    matching += " AND (occurred_at, event_id) < (%s, %s)"
                    args += after
                c.execute(
                    f"SELECT {_ENTRY_COLUMNS} FROM {table} WHERE {matching} "
                    "ORDER BY occurred_at DESC, event_id DESC LIMIT %s",
                    (*args, limit + 1),
                )
                rows += c.fetchall()
        # Several timelines (merged contacts, linked visitors, an account's members) merge
        # into one order, in which an event (were it on two of them) is shown once.
        rows.sort(key=lambda r: (r[3], r[2]), reverse=True)
        page: list[tuple[Any, ...]] = []
        for row in rows:
            if not page or page[-1][2] != row[2]:
                page.append(row)
        return page[:limit], len(page) > limit, total

    def _conditions(
        self,
        chosen: list[str] | None,
        type_filter: list[str] | None,
        status_filter: list[str] | None,
        granted: list[str] | None,
        since: datetime | None,
        until: datetime | None,
        window_start: datetime | None,
    ) -> tuple[list[str], list[Any]]:
        """The WHERE conditions (and their parameters) every timeline read shares."""
        s = self.settings
        where: list[str] = []
        params: list[Any] = []
        for column, values in (
            ("channel", chosen),
            ("type", type_filter),
            ("status", status_filter),
            ("permission", granted),
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
                where.append(
                    f"(occurred_at >= %s OR channel NOT IN ({placeholders(len(windowed))}))"
                )
                params += [iso(window_start), *windowed]
        if until is not None:
            where.append("occurred_at < %s")
            params.append(iso(until))
        return where, params

    @staticmethod
    def _subject(
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

    def _groups(
        self, c: Cursor, subject: tuple[str, str], profiles: Profiles | None
    ) -> list[tuple[str, set[str]]]:
        """The timelines to read, as (subject_kind, ids)."""
        kind, subject_id = subject
        if kind in ("lead", "anonymous"):
            return [(kind, {subject_id})]
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
        return [("contact", contacts), ("anonymous", visitors)]

    def _messages(
        self, c: Cursor, rows: list[tuple[Any, ...]], granted: Sequence[str] | None
    ) -> dict[tuple[str, str, str | None], dict[str, Any]]:
        """The previews of the messages the page's interactions are about, by (subject_kind,
        subject_id, message_id); the messages themselves are not about another."""
        sent_types = self.settings.sent_types
        wanted = {(r[0], r[1], r[7]) for r in rows if r[7] is not None and r[4] not in sent_types}
        if not wanted:
            return {}
        ids = sorted({w[2] for w in wanted})
        kinds = sorted(sent_types)
        c.execute(
            f"SELECT subject_kind, subject_id, message_id, permission, preview "
            f"FROM {self.table('entries')} WHERE message_id IN ({placeholders(len(ids))}) "
            f"AND type IN ({placeholders(len(kinds))})",
            (*ids, *kinds),
        )
        return {
            (kind, subject_id, message_id): orjson.loads(preview)
            for kind, subject_id, message_id, permission, preview in c.fetchall()
            if (kind, subject_id, message_id) in wanted
            and (granted is None or permission in granted)
        }


def _choose(name: str, values: Any, allowed: Sequence[str]) -> list[str] | None:
    """A filter's values, checked against what is allowed; None means no filter."""
    if values is None:
        return None
    if isinstance(values, str) or not isinstance(values, Collection):
        raise ValueError(f"{name} {values!r}: must be a list of strings, e.g. [{allowed[0]!r}]")
    unknown = sorted(str(v) for v in values if v not in allowed)
    if unknown:
        raise ValueError(f"{name} {unknown!r}: unknown; the known ones are {', '.join(allowed)}")
    return sorted(set(values))


def _instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _entry(row: tuple[Any, ...], message: dict[str, Any] | None) -> TimelineEntry:
    kind, subject_id, event_id, when, event_type, channel, permission, message_id = row[:8]
    campaign, journey, preview, status, status_at, detail = row[8:]
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
        message=message,
    )
