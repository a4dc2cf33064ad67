"""What a reader gets: a contact's consent state, each value with the event that set it, the
audit entries, and a decision with the rule checks behind it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from interaction_store.events import ConsentLevel
from interaction_store.projection.base import HIDDEN_EVENT
from interaction_store.projection.merges import MergeLink

PREFERENCES = ("allow_email", "allow_bulk_email", "allow_prefill", "track_email")
CONTACT_FIELDS = ("email", "phone", "is_child", "guardian_contact_id")

LEVELS: dict[ConsentLevel, int] = {level: rank for rank, level in enumerate(ConsentLevel)}
"""Each consent level's rank, lowest first."""

ANY_POINT = "*"
"""The contact point of an opt-out whose address or number was not known when it happened (a
hard bounce or a STOP before any contact event gave one): it covers every address or number."""

T = TypeVar("T")

Shown = Callable[[str], bool]
"""Whether the reader may see an event of a type (its read category); None: every type."""


@dataclass(frozen=True)
class Source:
    """The event that set a value: when, which one, of what type, and how it was read.

    For a reader that may not read the event's category only the instant is kept: its id,
    type and note (a bounce's reason, the keyword of an SMS reply) are None and ""."""

    since: datetime
    event_id: str | None
    event_type: str | None
    note: str = ""
    contact_id: str | None = None
    """Another contact of the merged group, whose event this was (None: the contact read)."""
    merge: MergeLink | None = None
    """How that contact joined the group (None: the others were merged into it)."""

    def describe(self) -> str:
        if self.event_id is None or self.event_type is None:
            return f"since {when(self.since)} by {HIDDEN_EVENT}"
        text = f"since {when(self.since)} by {self.event_type} event {self.event_id}"
        text = f"{text} ({self.note})" if self.note else text
        if self.contact_id is None:
            return text
        if self.merge is None:
            return f"{text} of contact {self.contact_id} (the contact it was merged into)"
        m = self.merge
        return (
            f"{text} of contact {self.contact_id} (merged into {m.into} by contact.merged "
            f"event {m.event_id} at {when(m.since)})"
        )

    def seen_by(self, shown: Shown | None) -> Source:
        """The source as a reader sees it (the instant only, for a hidden category: not the
        contact of the group either)."""
        if shown is None or self.event_type is None or shown(self.event_type):
            return self
        return Source(self.since, None, None)


@dataclass(frozen=True)
class Recorded(Generic[T]):
    """A value and the event that set it; no source: nothing recorded, the rules' default."""

    value: T
    source: Source | None = None

    def describe(self) -> str:
        return self.source.describe() if self.source else "(nothing recorded: the default)"

    def seen_by(self, shown: Shown | None) -> Recorded[T]:
        return self if self.source is None else Recorded(self.value, self.source.seen_by(shown))

    @property
    def at(self) -> tuple[datetime, str]:
        """Where it falls in the order of events (the default: before every event)."""
        if self.source is None:
            return (datetime.min.replace(tzinfo=UTC), "")
        return (self.source.since, self.source.event_id or "")


@dataclass(frozen=True)
class ListMembership:
    list_id: str
    list_name: str
    member: bool
    source: Source


@dataclass(frozen=True)
class PointConsent:
    """Consent for one address, number or device, for one purpose and (optionally) topic."""

    channel: str
    contact_point: str
    purpose: str
    topic: str | None
    status: str
    """opted_in or opted_out"""
    source: Source


@dataclass(frozen=True)
class ConsentState:
    """A contact's consent, now or ``as_of`` an instant."""

    contact_id: str
    as_of: datetime | None
    preferences: dict[str, Recorded[bool]]
    level: Recorded[ConsentLevel]
    is_child: Recorded[bool]
    guardian_contact_id: Recorded[str | None]
    email: Recorded[str | None]
    phone: Recorded[str | None]
    lists: dict[str, ListMembership]
    contact_points: list[PointConsent]
    undeliverable: dict[str, Source]
    """Email addresses that hard-bounced, with the bounce."""
    events: int
    merged: list[MergeLink] = field(default_factory=list)
    """The contact's merged group (each contact merged into another, by which event); the
    values above are the group's (``[merges]`` of ``consent.toml``)."""

    @property
    def subscribed(self) -> list[str]:
        """The lists the contact is a member of."""
        return sorted(m.list_id for m in self.lists.values() if m.member)

    def sources(self) -> Iterator[Source]:
        """Every event the state names."""
        recorded: list[Recorded[Any]] = [*self.preferences.values(), self.level, self.is_child]
        recorded += [self.guardian_contact_id, self.email, self.phone]
        yield from (r.source for r in recorded if r.source is not None)
        yield from (m.source for m in self.lists.values())
        yield from (p.source for p in self.contact_points)
        yield from self.undeliverable.values()

    def seen_by(self, shown: Shown | None, events: int) -> ConsentState:
        """The state as a reader sees it: every value and its instant, the events of the
        categories it may not read unnamed, and ``events`` counting only the others."""
        if shown is None:
            return self
        return replace(self.with_sources(lambda s: s.seen_by(shown)), events=events)

    def with_sources(self, change: Callable[[Source], Source]) -> ConsentState:
        """The same state, every source replaced by ``change(source)``."""

        def recorded(r: Recorded[Any]) -> Recorded[Any]:
            return r if r.source is None else Recorded(r.value, change(r.source))

        return replace(
            self,
            preferences={k: recorded(r) for k, r in self.preferences.items()},
            level=recorded(self.level),
            is_child=recorded(self.is_child),
            guardian_contact_id=recorded(self.guardian_contact_id),
            email=recorded(self.email),
            phone=recorded(self.phone),
            lists={k: replace(m, source=change(m.source)) for k, m in self.lists.items()},
            contact_points=[replace(p, source=change(p.source)) for p in self.contact_points],
            undeliverable={a: change(s) for a, s in self.undeliverable.items()},
        )


@dataclass(frozen=True)
class Check:
    """One rule of a decision: its name, whether it passed, and why."""

    rule: str
    passed: bool
    reason: str


@dataclass(frozen=True)
class Decision:
    """Whether a message may go out; ``reasons`` are the failed rules, or every rule passed."""

    allowed: bool
    reasons: list[str]
    checks: list[Check] = field(default_factory=list)


@dataclass(frozen=True)
class AuditEntry:
    """One consent-relevant event and what it changed."""

    occurred_at: datetime
    event_id: str | None
    type: str | None
    source: str | None
    """The upstream system that published it."""
    changes: dict[str, Any]

    def describe(self) -> str:
        if self.event_id is None:
            return f"{when(self.occurred_at)} ({HIDDEN_EVENT}): {summary(self.changes)}"
        return f"{when(self.occurred_at)} {self.type} {self.event_id}: {summary(self.changes)}"

    def seen_by(self, shown: Shown | None) -> AuditEntry:
        """The entry as a reader sees it: for a category it may not read, what changed and
        when, without the event's id, type, publisher or note."""
        if shown is None or self.type is None or shown(self.type):
            return self
        changes = {k: v for k, v in self.changes.items() if k != "note"}
        return AuditEntry(self.occurred_at, None, None, None, changes)


class UnknownContact(LookupError):
    """No consent or contact event names this contact in the consent view."""

    def __init__(self, contact_id: str, instance: str) -> None:
        self.contact_id = contact_id
        super().__init__(
            f"contact {contact_id} is not in the consent view {instance!r}: no consent or "
            "contact event names it (check the id, or let the view catch up with the log)"
        )


def when(moment: datetime) -> str:
    """An instant as readers see it in reasons: UTC, ``Z``, milliseconds only if any."""
    moment = moment.astimezone(UTC)
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def summary(changes: dict[str, Any]) -> str:
    """What an audit entry changed, in a line."""
    parts: list[str] = []
    for name, value in changes.get("preferences", {}).items():
        parts.append(f"{name} = {str(value).lower()}")
    for list_id, m in changes.get("lists", {}).items():
        parts.append(f"{'joined' if m['member'] else 'left'} list {list_id}")
    for p in changes.get("contact_points", []):
        topic = f" topic {p['topic']}" if p.get("topic") else ""
        parts.append(f"{p['channel']} {p['contact_point']} {p['purpose']}{topic} {p['status']}")
    if "level" in changes:
        parts.append(f"consent level = {changes['level']}")
    for name, value in changes.get("contact", {}).items():
        parts.append(f"{name} = {value}")
    if "bounced" in changes:
        parts.append(f"address {changes['bounced']} undeliverable")
    for address in changes.get("cleared", []):
        parts.append(f"address {address} deliverable again")
    text = ", ".join(parts) or "contact known"
    return f"{text} ({changes['note']})" if changes.get("note") else text
