"""Profile reads: a contact, account or lead as the profiles view holds it, each value with the
event that set it, now or as of an instant.

The profiles view keeps every profile event per entity; a read folds the entity's events up to
``as_of`` again (a handful per entity), so a past state costs what the present one does. The
engagement counters are counted from the timeline view, over its window.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from interaction_store.projection.base import iso, placeholders
from interaction_store.projection.profiles import Profiles
from interaction_store.projection.timeline import Timeline
from interaction_store.projection.timeline.query import timelines_of
from interaction_store.views.base import Cursor

FIELD_GROUPS = {
    "names": ("first_name", "last_name"),
    "contact_points": ("email", "phone", "external_id"),
}
"""The personal fields of a contact profile, by the group a role is granted (``profile`` in the
access file)."""

_MAX_HOPS = 16


@dataclass(frozen=True)
class Source:
    """The event that set a value."""

    event_id: str
    event_type: str
    occurred_at: datetime


@dataclass(frozen=True)
class Recorded:
    value: Any
    source: Source | None = None


@dataclass(frozen=True)
class Origin:
    """Where an entity came from: the envelope of its creation event."""

    source: str
    campaign_id: str | None
    journey_id: str | None
    event: Source


@dataclass(frozen=True)
class Membership:
    """One period of a contact in an account (``until`` None: still a member)."""

    account_id: str
    contact_id: str
    since: Source
    until: Source | None


@dataclass(frozen=True)
class LeadRef:
    lead_id: str
    topic: str | None
    status: str
    source: Source


@dataclass(frozen=True)
class Registration:
    """A marketing event registration, net of cancellations."""

    event_ref: str
    event_name: str
    registered: bool
    attended: bool
    source: Source


@dataclass(frozen=True)
class OpenCase:
    case_id: str
    priority: str
    origin: str
    source: Source


@dataclass(frozen=True)
class Engagement:
    """Entries of one channel on the timeline within its window, and the latest of them."""

    channel: str
    count: int
    latest: Source


@dataclass
class Profile:
    """A contact's, account's or lead's profile. ``fields`` holds the values by name; those a
    reader may not see are left out and named in ``withheld``."""

    kind: str
    id: str
    as_of: datetime | None
    fields: dict[str, Recorded] = field(default_factory=dict)
    origin: Origin | None = None
    merged_into: Recorded | None = None
    merged_from: list[str] = field(default_factory=list)
    memberships: list[Membership] = field(default_factory=list)
    leads: list[LeadRef] = field(default_factory=list)
    registrations: list[Registration] = field(default_factory=list)
    open_cases: list[OpenCase] = field(default_factory=list)
    engagement: list[Engagement] = field(default_factory=list)
    window_start: datetime | None = None
    withheld: list[str] = field(default_factory=list)
    events: int = 0


Shown = Callable[[str], bool] | None


def _source(doc: dict[str, Any]) -> Source:
    return Source(str(doc["event_id"]), str(doc["type"]), _instant(doc["occurred_at"]))


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _origin(doc: dict[str, Any]) -> Origin:
    corr = doc.get("correlation") or {}
    return Origin(
        str(doc.get("source", "")), corr.get("campaign_id"), corr.get("journey_id"), _source(doc)
    )


class ProfileReader:
    """Reads profiles from the profiles view (and counters from the timeline view)."""

    def __init__(self, profiles: Profiles, timeline: Timeline | None) -> None:
        self.profiles = profiles
        self.timeline = timeline

    def history(
        self, c: Cursor, kind: str, ids: Collection[str], as_of: datetime | None, prefix: bool
    ) -> dict[str, list[dict[str, Any]]]:
        """The stored events of entities (or, ``prefix``, of entities whose id starts with
        ``<id>|``), oldest first, up to ``as_of``."""
        out: dict[str, list[dict[str, Any]]] = {}
        table = self.profiles.table("events")
        until, bound = ("AND occurred_at <= %s", [iso(as_of)]) if as_of else ("", [])
        for entity in sorted(ids):
            if prefix:
                where, params = "entity_id >= %s AND entity_id < %s", [f"{entity}|", f"{entity}}}"]
            else:
                where, params = "entity_id = %s", [entity]
            c.execute(
                f"SELECT entity_id, doc FROM {table} WHERE kind = %s AND {where} {until} "
                "ORDER BY entity_id, occurred_at, event_id",
                (kind, *params, *bound),
            )
            for entity_id, doc in c.fetchall():
                out.setdefault(str(entity_id), []).append(orjson.loads(doc))
        return out

    def related(self, c: Cursor, table: str, wanted: str, column: str, value: str) -> list[str]:
        c.execute(
            f"SELECT {wanted} FROM {self.profiles.table(table)} WHERE {column} = %s ORDER BY 1",
            (value,),
        )
        return [str(row[0]) for row in c.fetchall()]

    # ------------------------------------------------------------------ contact

    def contact(
        self,
        c: Cursor,
        contact_id: str,
        as_of: datetime | None,
        shown: Shown,
        fields: Collection[str] | None,
        now: datetime | None = None,
    ) -> Profile:
        profile = Profile("contact", contact_id, as_of)
        docs = self.history(c, "contact", [contact_id], as_of, False).get(contact_id, [])
        values: dict[str, Recorded] = {}
        for d in docs:
            payload = d["payload"]
            if d["type"] == "contact.merged":
                if payload["merged_contact_id"] == contact_id:
                    profile.merged_into = Recorded(d["subject"]["contact_id"], _source(d))
                else:
                    profile.merged_from.append(str(payload["merged_contact_id"]))
                continue
            if d["type"] == "contact.created" and profile.origin is None:
                profile.origin = _origin(d)
            if d["type"] in ("contact.created", "contact.updated"):
                for name, value in payload.items():
                    if value is not None:
                        values[name] = Recorded(value, _source(d))
        profile.events = len(docs)
        granted = set(FIELD_GROUPS) if fields is None else set(fields)
        for group, names in FIELD_GROUPS.items():
            if group not in granted:
                profile.withheld += list(names)
        hidden = set(profile.withheld)
        order = ("first_name", "last_name", "email", "phone", "external_id", "is_child")
        for name in (*order, "guardian_contact_id"):
            if name not in hidden:
                profile.fields[name] = values.get(name, Recorded(None))
        profile.merged_from = sorted(set(profile.merged_from))
        profile.memberships = self._memberships(c, "contact_id", contact_id, as_of)
        profile.leads = self._leads(c, "parent_contact_id", contact_id, as_of)
        if shown is None or shown("event.registered"):
            profile.registrations = self._registrations(c, contact_id, as_of)
        else:
            profile.withheld.append("registrations")
        if shown is None or shown("activity.case_opened"):
            profile.open_cases = self._open_cases(c, contact_id, as_of)
        else:
            profile.withheld.append("open_cases")
        self._engage(c, profile, ("contact", contact_id), as_of, shown, now)
        return profile

    def survivor(self, c: Cursor, contact_id: str, as_of: datetime | None) -> Recorded | None:
        """Where a merged-away contact went in the end (following merges of merges)."""
        found: Recorded | None = None
        current, seen = contact_id, {contact_id}
        for _ in range(_MAX_HOPS):
            into: Recorded | None = None
            for d in self.history(c, "contact", [current], as_of, False).get(current, []):
                if d["type"] == "contact.merged" and d["payload"]["merged_contact_id"] == current:
                    into = Recorded(str(d["subject"]["contact_id"]), _source(d))
            if into is None or into.value in seen:
                break
            found, current = into, into.value
            seen.add(current)
        return found

    def _memberships(
        self, c: Cursor, column: str, value: str, as_of: datetime | None
    ) -> list[Membership]:
        accounts_or_contacts = self.related(
            c, "members", "account_id || '|' || contact_id", column, value
        )
        out: list[Membership] = []
        for key, docs in self.history(c, "member", accounts_or_contacts, as_of, False).items():
            account_id, contact_id = key.split("|", 1)
            since: Source | None = None
            for d in docs:
                if d["type"] == "contact.joined_account" and since is None:
                    since = _source(d)
                elif d["type"] == "contact.left_account" and since is not None:
                    out.append(Membership(account_id, contact_id, since, _source(d)))
                    since = None
            if since is not None:
                out.append(Membership(account_id, contact_id, since, None))
        return out

    def _leads(self, c: Cursor, column: str, value: str, as_of: datetime | None) -> list[LeadRef]:
        ids = self.related(c, "leads", "lead_id", column, value)
        out = []
        for lead_id, docs in self.history(c, "lead", ids, as_of, False).items():
            lead = self._lead_values(docs)
            if "created" in lead:
                topic, status = lead.get("topic"), lead["status"]
                out.append(
                    LeadRef(
                        lead_id,
                        topic.value if topic else None,
                        status.value,
                        lead["created"].source or _source(docs[0]),
                    )
                )
        return out

    @staticmethod
    def _lead_values(docs: list[dict[str, Any]]) -> dict[str, Recorded]:
        from interaction_store.projection.profiles import LEAD_STATUS

        out: dict[str, Recorded] = {}
        for d in docs:
            if d["type"] == "lead.created" and "created" not in out:
                out["created"] = Recorded(True, _source(d))
                for name in ("topic", "parent_contact_id", "parent_account_id"):
                    if d["payload"].get(name):
                        out[name] = Recorded(d["payload"][name], _source(d))
            if d["type"] in LEAD_STATUS:
                out["status"] = Recorded(LEAD_STATUS[d["type"]], _source(d))
        return out

    def _registrations(
        self, c: Cursor, contact_id: str, as_of: datetime | None
    ) -> list[Registration]:
        out = []
        for key, docs in self.history(c, "registration", [contact_id], as_of, True).items():
            registered, attended, name, last = False, False, "", docs[-1]
            for d in docs:
                name = d["payload"].get("event_name") or name
                if d["type"] in ("event.registered", "event.registration_cancelled"):
                    registered, last = d["type"] == "event.registered", d
                elif d["type"] in ("event.checked_in", "event.session_attended"):
                    attended = True
            out.append(
                Registration(key.split("|", 1)[1], name, registered, attended, _source(last))
            )
        return out

    def _open_cases(self, c: Cursor, contact_id: str, as_of: datetime | None) -> list[OpenCase]:
        out = []
        for key, docs in self.history(c, "case", [contact_id], as_of, True).items():
            opened = [d for d in docs if d["type"] == "activity.case_opened"]
            if opened and not any(d["type"] == "activity.case_resolved" for d in docs):
                p = opened[-1]["payload"]
                out.append(
                    OpenCase(
                        key.split("|", 1)[1],
                        p.get("priority", "normal"),
                        p.get("origin", "web"),
                        _source(opened[-1]),
                    )
                )
        return out

    # ------------------------------------------------------------------ account, lead

    def account(
        self,
        c: Cursor,
        account_id: str,
        as_of: datetime | None,
        shown: Shown,
        now: datetime | None = None,
    ) -> Profile:
        profile = Profile("account", account_id, as_of)
        docs = self.history(c, "account", [account_id], as_of, False).get(account_id, [])
        profile.events = len(docs)
        name: Recorded = Recorded(None)
        for d in docs:
            if profile.origin is None:
                profile.origin = _origin(d)
            name = Recorded(d["payload"].get("name"), _source(d))
        profile.fields["name"] = name
        profile.memberships = self._memberships(c, "account_id", account_id, as_of)
        profile.leads = self._leads(c, "parent_account_id", account_id, as_of)
        self._engage(c, profile, ("account", account_id), as_of, shown, now)
        return profile

    def lead(
        self,
        c: Cursor,
        lead_id: str,
        as_of: datetime | None,
        shown: Shown,
        now: datetime | None = None,
    ) -> Profile:
        profile = Profile("lead", lead_id, as_of)
        docs = self.history(c, "lead", [lead_id], as_of, False).get(lead_id, [])
        profile.events = len(docs)
        values = self._lead_values(docs)
        created = next((d for d in docs if d["type"] == "lead.created"), None)
        if created is not None:
            profile.origin = _origin(created)
        for name in ("parent_contact_id", "parent_account_id", "topic", "status"):
            profile.fields[name] = values.get(name, Recorded(None))
        self._engage(c, profile, ("lead", lead_id), as_of, shown, now)
        return profile

    # ------------------------------------------------------------------ engagement

    def _engage(
        self,
        c: Cursor,
        profile: Profile,
        subject: tuple[str, str],
        as_of: datetime | None,
        shown: Shown,
        now: datetime | None,
    ) -> None:
        """Per channel: the entries the timeline counts in its window (the windowed channels
        from ``window_days`` before ``as_of``/now; the others whatever their age), up to
        ``as_of``, of the categories the reader may read."""
        timeline = self.timeline
        if timeline is None:
            return
        s = timeline.settings
        end = as_of or now or datetime.now(UTC)
        start = end - timedelta(days=s.window_days)
        profile.window_start = start
        channels = [ch for ch in s.channels if shown is None or shown(f"{ch}.x")]
        profile.withheld += [f"engagement.{ch}" for ch in s.channels if ch not in channels]
        windowed = [ch for ch in channels if ch in s.windowed_channels]
        if not channels:
            return
        owners, args = [], []
        for kind, ids in timelines_of(c, subject, self.profiles):
            if ids:
                owners.append(f"(subject_kind = %s AND subject_id IN ({placeholders(len(ids))}))")
                args += [kind, *sorted(ids)]
        if not owners:
            return
        window = (
            f"(occurred_at >= %s OR channel NOT IN ({placeholders(len(windowed))}))"
            if windowed
            else "1 = 1"
        )
        c.execute(
            "SELECT channel, COUNT(DISTINCT event_id), "
            "MAX(occurred_at || ' ' || event_id || ' ' || type) "
            f"FROM {timeline.table('entries')} WHERE ({' OR '.join(owners)}) "
            f"AND channel IN ({placeholders(len(channels))}) AND {window} AND occurred_at <= %s "
            "GROUP BY channel ORDER BY channel",
            (*args, *channels, *([iso(start), *windowed] if windowed else []), iso(end)),
        )
        for channel, count, latest in c.fetchall():
            at, event_id, event_type = str(latest).split(" ", 2)
            profile.engagement.append(
                Engagement(str(channel), int(count), Source(event_id, event_type, _instant(at)))
            )
