"""The parts of a profile (each value with the event that set it) and the folds that make
them from an entity's stored profile events, oldest first. Read by
:mod:`interaction_store.projection.profile_read`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from interaction_store.projection.profiles import LEAD_STATUS

FIELD_GROUPS = {
    "names": ("first_name", "last_name"),
    "contact_points": ("email", "phone", "external_id"),
}
"""The personal fields of a contact profile, by the group a role is granted (``profile`` in the
access file)."""


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


def source_of(doc: dict[str, Any]) -> Source:
    return Source(str(doc["event_id"]), str(doc["type"]), instant(doc["occurred_at"]))


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def origin_of(doc: dict[str, Any]) -> Origin:
    corr = doc.get("correlation") or {}
    return Origin(
        str(doc.get("source", "")), corr.get("campaign_id"), corr.get("journey_id"), source_of(doc)
    )


# Each fold below makes part of a profile from the loaded events of some entities.

Loaded = dict[str, list[dict[str, Any]]]


def memberships(loaded: Loaded) -> list[Membership]:
    out: list[Membership] = []
    for key, docs in sorted(loaded.items()):
        account_id, contact_id = key.split("|", 1)
        since: Source | None = None
        for d in docs:
            if d["type"] == "contact.joined_account" and since is None:
                since = source_of(d)
            elif d["type"] == "contact.left_account" and since is not None:
                out.append(Membership(account_id, contact_id, since, source_of(d)))
                since = None
        if since is not None:
            out.append(Membership(account_id, contact_id, since, None))
    return out


def leads(loaded: Loaded) -> list[LeadRef]:
    out = []
    for lead_id, docs in sorted(loaded.items()):
        lead = lead_values(docs)
        created, status, topic = lead.get("created"), lead.get("status"), lead.get("topic")
        if created is not None and created.source is not None and status is not None:
            out.append(
                LeadRef(lead_id, topic.value if topic else None, status.value, created.source)
            )
    return out


def lead_values(docs: list[dict[str, Any]]) -> dict[str, Recorded]:
    out: dict[str, Recorded] = {}
    for d in docs:
        if d["type"] == "lead.created" and "created" not in out:
            out["created"] = Recorded(True, source_of(d))
            for name in ("topic", "parent_contact_id", "parent_account_id"):
                if d["payload"].get(name):
                    out[name] = Recorded(d["payload"][name], source_of(d))
        if d["type"] in LEAD_STATUS:
            out["status"] = Recorded(LEAD_STATUS[d["type"]], source_of(d))
    return out


def registrations(loaded: Loaded) -> list[Registration]:
    out = []
    for key, docs in sorted(loaded.items()):
        registered, attended, name, last = False, False, "", docs[-1]
        for d in docs:
            name = d["payload"].get("event_name") or name
            if d["type"] in ("event.registered", "event.registration_cancelled"):
                registered, last = d["type"] == "event.registered", d
            elif d["type"] in ("event.checked_in", "event.session_attended"):
                attended = True
        out.append(Registration(key.split("|", 1)[1], name, registered, attended, source_of(last)))
    return out


def open_cases(loaded: Loaded) -> list[OpenCase]:
    out = []
    for key, docs in sorted(loaded.items()):
        opened = [d for d in docs if d["type"] == "activity.case_opened"]
        if opened and not any(d["type"] == "activity.case_resolved" for d in docs):
            p = opened[-1]["payload"]
            out.append(
                OpenCase(
                    key.split("|", 1)[1],
                    p.get("priority", "normal"),
                    p.get("origin", "web"),
                    source_of(opened[-1]),
                )
            )
    return out
