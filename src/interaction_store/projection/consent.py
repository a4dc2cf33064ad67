"""Consent state: each contact's preferences, subscription lists, contact-point consent, consent
level, child and guardian, with the audit trail of every change and a ``may_send`` decision.

Every consent-relevant event is kept as one audit row per contact. A contact's rows are folded
again in (occurred_at, event_id) order whenever one arrives: the fold resolves what each event
changed (an SMS "STOP" opts out the number the contact had at that moment) into the row's
``changes``, and writes the current state tables. ``as_of`` reads fold the ``changes`` of the rows
up to an instant, so the past is answered from the same record as the present.
"""

from __future__ import annotations

import tomllib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, get_args
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from interaction_store.events import (
    ConsentLevel,
    ConsentLevelChanged,
    ContactDetails,
    ContactPointConsent,
    EmailBounced,
    EmailUnsubscribed,
    InteractionEvent,
    PreferencesChanged,
    SmsReplied,
    SubscriptionJoined,
    SubscriptionLeft,
)
from interaction_store.projection.base import Projection, chunks, iso, placeholders
from interaction_store.settings import Settings
from interaction_store.views.base import Cursor, ViewStore

RULES_FILE = "consent.toml"

Channel = Literal["email", "sms", "push", "phone"]
Purpose = Literal["commercial", "transactional"]
CHANNELS: tuple[str, ...] = get_args(Channel)
PURPOSES: tuple[str, ...] = get_args(Purpose)
PREFERENCES = ("allow_email", "allow_bulk_email", "allow_prefill", "track_email")
CONTACT_FIELDS = ("email", "phone", "is_child", "guardian_contact_id")
LEVELS: dict[ConsentLevel, int] = {level: rank for rank, level in enumerate(ConsentLevel)}

ANY_POINT = "*"
"""The contact point of an opt-out whose address or number was not known when it happened (a
hard bounce or a STOP before any contact event gave one): it covers every address or number."""

CONSENT_TYPES = frozenset(
    {
        "consent.preferences_changed",
        "consent.subscription_joined",
        "consent.subscription_left",
        "consent.contact_point_changed",
        "consent.level_changed",
        "contact.created",
        "contact.updated",
    }
)
OptOutType = Literal["email.unsubscribed", "email.spam_reported", "sms.replied", "email.bounced"]


# --------------------------------------------------------------------------- the rules


class ConsentRulesError(ValueError):
    """``consent.toml`` says something the consent view cannot do; the message names the file,
    the key and the value."""


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Defaults(_Rules):
    allow_email: bool
    allow_bulk_email: bool
    allow_prefill: bool
    track_email: bool
    consent_level: ConsentLevel


class MinimumLevels(_Rules):
    transactional: ConsentLevel
    commercial: ConsentLevel
    commercial_list: ConsentLevel


class ChildRules(_Rules):
    commercial: Literal["never", "with_guardian"]


Enforcement = Literal["opt_in", "opt_out"]


class ChannelEnforcement(_Rules):
    email: Enforcement
    sms: Enforcement
    push: Enforcement
    phone: Enforcement


class ContactPointRules(_Rules):
    commercial: ChannelEnforcement
    transactional: ChannelEnforcement


class OptOuts(_Rules):
    email_unsubscribed: bool = Field(alias="email.unsubscribed")
    email_spam_reported: bool = Field(alias="email.spam_reported")
    sms_replied: bool = Field(alias="sms.replied")
    email_bounced: bool = Field(alias="email.bounced")

    def enabled(self) -> frozenset[str]:
        """The event types that withdraw consent under these rules."""
        return frozenset(
            f.alias or name
            for name, f in type(self).model_fields.items()
            if getattr(self, name) is True
        )


class ConsentRules(_Rules):
    """What ``projections/consent.toml`` says (its comments explain each rule)."""

    defaults: Defaults
    minimum_level: MinimumLevels
    children: ChildRules
    contact_points: ContactPointRules
    opt_outs: OptOuts

    @classmethod
    def load(cls, projections_dir: Path | None = None) -> ConsentRules:
        """Read ``consent.toml`` from ``projections_dir`` (default: ``ISTORE_PROJECTIONS_DIR``,
        else the checkout's or the wheel's ``projections/``)."""
        folder = projections_dir if projections_dir is not None else Settings().projections_dir
        path = folder / RULES_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConsentRulesError(
                f"{path}: cannot read the consent rules ({exc.strerror}); "
                f"set ISTORE_PROJECTIONS_DIR to the folder holding {RULES_FILE}"
            ) from None
        return cls.from_toml(text, str(path))

    @classmethod
    def from_toml(cls, text: str, source: str = RULES_FILE) -> ConsentRules:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConsentRulesError(f"{source}: not valid TOML: {exc}") from None
        return cls.from_dict(doc, source)

    @classmethod
    def from_dict(cls, doc: dict[str, Any], source: str = RULES_FILE) -> ConsentRules:
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])} = {e.get('input')!r}: {e['msg']}"
                for e in exc.errors()
            )
            raise ConsentRulesError(f"{source}: {problems}") from None

    def minimum(self, purpose: str, list_id: str | None) -> tuple[str, ConsentLevel]:
        """The rule name and the lowest consent level a message of ``purpose`` needs."""
        key = "commercial_list" if purpose == "commercial" and list_id else purpose
        level: ConsentLevel = getattr(self.minimum_level, key)
        return f"minimum_level.{key}", level


# --------------------------------------------------------------------------- what a reader gets

T = TypeVar("T")


@dataclass(frozen=True)
class Source:
    """The event that set a value: when, which one, of what type, and how it was read."""

    since: datetime
    event_id: str
    event_type: str
    note: str = ""

    def describe(self) -> str:
        text = f"since {when(self.since)} by {self.event_type} event {self.event_id}"
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True)
class Recorded(Generic[T]):
    """A value and the event that set it; no source: nothing recorded, the rules' default."""

    value: T
    source: Source | None = None

    def describe(self) -> str:
        return self.source.describe() if self.source else "(nothing recorded: the default)"


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

    @property
    def subscribed(self) -> list[str]:
        """The lists the contact is a member of."""
        return sorted(m.list_id for m in self.lists.values() if m.member)


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
    event_id: str
    type: str
    source: str
    changes: dict[str, Any]

    def describe(self) -> str:
        return f"{when(self.occurred_at)} {self.type} {self.event_id}: {summary(self.changes)}"


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


# --------------------------------------------------------------------------- the fold

# (since as iso() text, event_id, event type, note): kept as text while folding, for speed.
_Src = tuple[str, str, str, str]
_PointKey = tuple[str, str, str, str]  # channel, contact point, purpose, topic ("" for none)


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


class _Ledger:
    """One contact's consent while its audit rows are folded, oldest first."""

    __slots__ = ("bounced", "events", "facts", "first", "last", "lists", "points", "prefs")

    def __init__(self) -> None:
        self.prefs: dict[str, tuple[bool, _Src]] = {}
        self.facts: dict[str, tuple[Any, _Src]] = {}  # level and the CONTACT_FIELDS
        self.lists: dict[str, tuple[bool, str, _Src]] = {}  # member, list name
        self.points: dict[_PointKey, tuple[str, _Src]] = {}
        self.bounced: dict[str, _Src] = {}
        self.events = 0
        self.first = ""
        self.last = ""

    def current(self, name: str) -> Any:
        fact = self.facts.get(name)
        return None if fact is None else fact[0]

    def resolve(self, event_type: str, facts: dict[str, Any]) -> dict[str, Any]:
        """What an event changes, given the state before it (the address a bounce hit)."""
        t = event_type
        if t == "consent.preferences_changed":
            return {"preferences": facts}
        if t == "consent.subscription_joined":
            return {"lists": {facts["list_id"]: {"member": True, "name": facts["list_name"]}}}
        if t == "consent.subscription_left":
            return {"lists": {facts["list_id"]: {"member": False}}}
        if t == "consent.level_changed":
            return {"level": facts["level"]}
        if t == "consent.contact_point_changed":
            changes: dict[str, Any] = {"contact_points": [facts]}
            if facts["channel"] == "email" and facts["status"] == "opted_in":
                self._clear(changes, facts["contact_point"])
            return changes
        if t in ("contact.created", "contact.updated"):
            changes = {"contact": facts}
            email = facts.get("email")
            if email is not None and email != self.current("email"):
                self._clear(changes, email)
            return changes
        if t == "email.unsubscribed":
            via = facts["via"]
            if facts["list_id"]:
                return {
                    "lists": {facts["list_id"]: {"member": False}},
                    "note": f"unsubscribed from the list via {via}",
                }
            return {
                "preferences": {"allow_bulk_email": False},
                "note": f"unsubscribed from all bulk email via {via}",
            }
        if t == "email.spam_reported":
            return {
                "preferences": {"allow_bulk_email": False},
                "note": "spam report, treated as a bulk-email opt-out",
            }
        if t == "sms.replied":
            point = {
                "channel": "sms",
                "contact_point": self.current("phone") or ANY_POINT,
                "purpose": "commercial",
                "topic": None,
                "status": "opted_out",
            }
            return {"contact_points": [point], "note": f"SMS reply {facts['keyword']}"}
        if t == "email.bounced":
            reason = f": {facts['reason']}" if facts["reason"] else ""
            return {
                "bounced": self.current("email") or ANY_POINT,
                "note": f"hard bounce{reason}",
            }
        return {}

    def _clear(self, changes: dict[str, Any], address: str) -> None:
        # A new or re-confirmed address starts clean; so does one nobody knew was bounced.
        cleared = [a for a in (address, ANY_POINT) if a in self.bounced]
        if cleared:
            changes["cleared"] = cleared

    def apply(self, changes: dict[str, Any], since: str, event_id: str, event_type: str) -> None:
        src: _Src = (since, event_id, event_type, changes.get("note", ""))
        for name, value in changes.get("preferences", {}).items():
            self.prefs[name] = (bool(value), src)
        for list_id, m in changes.get("lists", {}).items():
            name = m.get("name") or (self.lists[list_id][1] if list_id in self.lists else "")
            self.lists[list_id] = (bool(m["member"]), name, src)
        for p in changes.get("contact_points", []):
            key = (p["channel"], p["contact_point"], p["purpose"], p.get("topic") or "")
            self.points[key] = (p["status"], src)
        if "level" in changes:
            self.facts["level"] = (changes["level"], src)
        for name, value in changes.get("contact", {}).items():
            self.facts[name] = (value, src)
        if "bounced" in changes:
            self.bounced[changes["bounced"]] = src
        for address in changes.get("cleared", []):
            self.bounced.pop(address, None)
        self.events += 1
        self.first = self.first or since
        self.last = since

    def state(self, contact_id: str, rules: ConsentRules, as_of: datetime | None) -> ConsentState:
        d = rules.defaults

        def recorded(value: Any, src: _Src | None) -> Recorded[Any]:
            return Recorded(value, None if src is None else _source(src))

        def fact(name: str, default: Any) -> Recorded[Any]:
            got = self.facts.get(name)
            return recorded(default, None) if got is None else recorded(*got)

        prefs = {
            name: recorded(*self.prefs[name])
            if name in self.prefs
            else recorded(getattr(d, name), None)
            for name in PREFERENCES
        }
        level = self.facts.get("level")
        return ConsentState(
            contact_id=contact_id,
            as_of=as_of,
            preferences=prefs,
            level=Recorded(d.consent_level)
            if level is None
            else Recorded(ConsentLevel(level[0]), _source(level[1])),
            is_child=fact("is_child", False),
            guardian_contact_id=fact("guardian_contact_id", None),
            email=fact("email", None),
            phone=fact("phone", None),
            lists={
                list_id: ListMembership(list_id, name, member, _source(src))
                for list_id, (member, name, src) in sorted(self.lists.items())
            },
            contact_points=[
                PointConsent(ch, point, purpose, topic or None, status, _source(src))
                for (ch, point, purpose, topic), (status, src) in sorted(self.points.items())
            ],
            undeliverable={a: _source(src) for a, src in sorted(self.bounced.items())},
            events=self.events,
        )


def _src(columns: Sequence[Any]) -> _Src:
    since, event_id, event_type, note = columns
    return (since, event_id, event_type, note or "")


def _source(src: _Src) -> Source:
    since, event_id, event_type, note = src
    return Source(datetime.fromisoformat(since), event_id, event_type, note)


def facts_of(event: InteractionEvent, opt_outs: frozenset[str]) -> dict[str, Any] | None:
    """The part of an event the consent view keeps, or None if it changes no consent."""
    t, p = event.type, event.payload
    if t not in CONSENT_TYPES and t not in opt_outs:
        return None
    if isinstance(p, PreferencesChanged):
        return {k: v for k, v in p.model_dump().items() if v is not None}
    if isinstance(p, SubscriptionJoined):
        return {"list_id": p.list_id, "list_name": p.list_name}
    if isinstance(p, SubscriptionLeft):
        return {"list_id": p.list_id}
    if isinstance(p, ContactPointConsent):
        return p.model_dump(mode="json")
    if isinstance(p, ConsentLevelChanged):
        return {"level": p.level.value}
    if isinstance(p, ContactDetails):
        got = {f: getattr(p, f) for f in CONTACT_FIELDS if getattr(p, f) is not None}
        if "guardian_contact_id" in got:
            got["guardian_contact_id"] = str(got["guardian_contact_id"])
        # A contact's creation makes it known even without consent details; an update only
        # matters if it changes one.
        return got if got or t == "contact.created" else None
    if isinstance(p, EmailUnsubscribed):
        return {"list_id": p.list_id, "via": p.via}
    if t == "email.spam_reported":
        return {}
    if isinstance(p, SmsReplied):
        if not p.is_opt_out:
            return None
        return {"keyword": (p.keyword or p.text).strip().split(maxsplit=1)[0].upper()}
    if isinstance(p, EmailBounced):
        return {"reason": p.reason} if p.bounce_type == "hard" else None
    return None


# --------------------------------------------------------------------------- the projection

_STATE_TABLES = ("contacts", "sources", "lists", "contact_points", "undeliverable")


class Consent(Projection):
    """The consent view; ``rules`` default to ``projections/consent.toml``."""

    kind = "consent"

    def __init__(self, instance: str | None = None, rules: ConsentRules | None = None) -> None:
        super().__init__(instance)
        self.rules = rules if rules is not None else ConsentRules.load()
        self.opt_outs = self.rules.opt_outs.enabled()
        self.types = CONSENT_TYPES | self.opt_outs

    @classmethod
    def from_settings(cls, settings: Settings, instance: str | None = None) -> Consent:
        """The view with ``consent.toml`` from the settings' projections folder."""
        return cls(instance, ConsentRules.load(settings.projections_dir))

    @property
    def tables(self) -> dict[str, str]:
        src = "since TEXT NOT NULL, event_id TEXT NOT NULL, event_type TEXT NOT NULL, note TEXT"
        return {
            # Every consent-relevant event: its own facts, and what it changed once resolved.
            "audit": "contact_id TEXT NOT NULL, occurred_at TEXT NOT NULL, "
            "event_id TEXT NOT NULL, type TEXT NOT NULL, source TEXT NOT NULL, "
            "facts TEXT NOT NULL, changes TEXT NOT NULL, PRIMARY KEY (contact_id, event_id)",
            # The current state; NULL: never recorded (the rules' defaults apply).
            "contacts": "contact_id TEXT PRIMARY KEY, allow_email BOOLEAN, "
            "allow_bulk_email BOOLEAN, allow_prefill BOOLEAN, track_email BOOLEAN, "
            "level TEXT, email TEXT, phone TEXT, is_child BOOLEAN, guardian_contact_id TEXT, "
            "events INTEGER NOT NULL, first_event_at TEXT NOT NULL, last_event_at TEXT NOT NULL",
            # Which event set each value of `contacts`.
            "sources": f"contact_id TEXT NOT NULL, fact TEXT NOT NULL, {src}, "
            "PRIMARY KEY (contact_id, fact)",
            "lists": "contact_id TEXT NOT NULL, list_id TEXT NOT NULL, list_name TEXT NOT NULL, "
            f"member BOOLEAN NOT NULL, {src}, PRIMARY KEY (contact_id, list_id)",
            # topic '' is "every topic" (a key column cannot be NULL in PostgreSQL).
            "contact_points": "contact_id TEXT NOT NULL, channel TEXT NOT NULL, "
            "contact_point TEXT NOT NULL, purpose TEXT NOT NULL, topic TEXT NOT NULL, "
            f"status TEXT NOT NULL, {src}, "
            "PRIMARY KEY (contact_id, channel, contact_point, purpose, topic)",
            "undeliverable": f"contact_id TEXT NOT NULL, address TEXT NOT NULL, {src}, "
            "PRIMARY KEY (contact_id, address)",
        }

    def indexes(self, dialect: str) -> list[str]:
        return [
            f"CREATE INDEX IF NOT EXISTS {self.table('lists_by_list')} "
            f"ON {self.table('lists')} (list_id, member)",
        ]

    def wants(self, event: InteractionEvent) -> bool:
        return event.type in self.types and event.subject.contact_id is not None

    def apply(self, cursor: Cursor, events: Sequence[InteractionEvent]) -> None:
        rows = []
        for event in events:
            contact_id = event.subject.contact_id
            if contact_id is None:
                continue
            facts = facts_of(event, self.opt_outs)
            if facts is None:
                continue
            rows.append(
                (
                    str(contact_id),
                    iso(event.occurred_at),
                    str(event.event_id),
                    event.type,
                    event.source,
                    _dumps(facts),
                    "",
                )
            )
        if not rows:
            return
        cursor.executemany(
            f"INSERT INTO {self.table('audit')} VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (contact_id, event_id) DO NOTHING",
            rows,
        )
        self._refold(cursor, sorted({r[0] for r in rows}))

    def _refold(self, cursor: Cursor, contact_ids: list[str]) -> None:
        """Fold each contact's audit again, store what each row changed, rewrite its state."""
        history: dict[str, list[tuple[str, str, str, str, str]]] = defaultdict(list)
        for part in chunks(contact_ids):
            cursor.execute(
                f"SELECT contact_id, occurred_at, event_id, type, facts, changes "
                f"FROM {self.table('audit')} WHERE contact_id IN ({placeholders(len(part))}) "
                "ORDER BY contact_id, occurred_at, event_id",
                part,
            )
            for contact_id, occurred_at, event_id, event_type, facts, stored in cursor.fetchall():
                history[contact_id].append((occurred_at, event_id, event_type, facts, stored))
        resolved: list[tuple[str, str, str]] = []
        state: dict[str, list[tuple[Any, ...]]] = {name: [] for name in _STATE_TABLES}
        for contact_id in contact_ids:
            ledger = _Ledger()
            for occurred_at, event_id, event_type, facts, stored in history[contact_id]:
                changes = ledger.resolve(event_type, orjson.loads(facts))
                text = _dumps(changes)
                if text != stored:
                    resolved.append((text, contact_id, event_id))
                ledger.apply(changes, occurred_at, event_id, event_type)
            for name, table_rows in _state_rows(contact_id, ledger).items():
                state[name].extend(table_rows)
        if resolved:
            cursor.executemany(
                f"UPDATE {self.table('audit')} SET changes = %s "
                "WHERE contact_id = %s AND event_id = %s",
                resolved,
            )
        # Rewritten whole: a late event can move a row's key (a STOP that now knows the number).
        for part in chunks(contact_ids):
            for name in _STATE_TABLES:
                cursor.execute(
                    f"DELETE FROM {self.table(name)} "
                    f"WHERE contact_id IN ({placeholders(len(part))})",
                    part,
                )
        for name, table_rows in state.items():
            if table_rows:
                cursor.executemany(
                    f"INSERT INTO {self.table(name)} VALUES ({placeholders(len(table_rows[0]))})",
                    table_rows,
                )

    # ------------------------------------------------------------------ reading

    def _read(self, cursor: Cursor, contact_id: str, as_of: datetime | None) -> _Ledger:
        """A contact's consent now (from the state tables) or as of an instant (its audit)."""
        ledger = _Ledger()
        if as_of is not None:
            cursor.execute(
                f"SELECT occurred_at, event_id, type, changes FROM {self.table('audit')} "
                "WHERE contact_id = %s AND occurred_at <= %s ORDER BY occurred_at, event_id",
                (contact_id, iso(as_of)),
            )
            for occurred_at, event_id, event_type, changes in cursor.fetchall():
                ledger.apply(orjson.loads(changes), occurred_at, event_id, event_type)
            if ledger.events == 0:
                self._known(cursor, contact_id)
            return ledger
        cursor.execute(
            f"SELECT {', '.join(PREFERENCES)}, level, {', '.join(CONTACT_FIELDS)}, events, "
            f"first_event_at, last_event_at FROM {self.table('contacts')} WHERE contact_id = %s",
            (contact_id,),
        )
        row = cursor.fetchone()
        if row is None:
            raise UnknownContact(contact_id, self.instance)
        values = dict(zip((*PREFERENCES, "level", *CONTACT_FIELDS), row[:9], strict=True))
        ledger.events, ledger.first, ledger.last = int(row[9]), row[10], row[11]
        cursor.execute(
            f"SELECT fact, since, event_id, event_type, note FROM {self.table('sources')} "
            "WHERE contact_id = %s",
            (contact_id,),
        )
        for name, *src in cursor.fetchall():
            value = values[name]
            if name in PREFERENCES:
                ledger.prefs[name] = (bool(value), _src(src))
            else:
                value = bool(value) if name == "is_child" else value
                ledger.facts[name] = (value, _src(src))
        cursor.execute(
            f"SELECT list_id, list_name, member, since, event_id, event_type, note "
            f"FROM {self.table('lists')} WHERE contact_id = %s",
            (contact_id,),
        )
        for list_id, name, member, *src in cursor.fetchall():
            ledger.lists[list_id] = (bool(member), name, _src(src))
        cursor.execute(
            f"SELECT channel, contact_point, purpose, topic, status, since, event_id, "
            f"event_type, note FROM {self.table('contact_points')} WHERE contact_id = %s",
            (contact_id,),
        )
        for channel, point, purpose, topic, status, *src in cursor.fetchall():
            ledger.points[(channel, point, purpose, topic)] = (status, _src(src))
        cursor.execute(
            f"SELECT address, since, event_id, event_type, note "
            f"FROM {self.table('undeliverable')} WHERE contact_id = %s",
            (contact_id,),
        )
        for address, *src in cursor.fetchall():
            ledger.bounced[address] = _src(src)
        return ledger

    def _known(self, cursor: Cursor, contact_id: str) -> None:
        cursor.execute(
            f"SELECT 1 FROM {self.table('contacts')} WHERE contact_id = %s", (contact_id,)
        )
        if cursor.fetchone() is None:
            raise UnknownContact(contact_id, self.instance)


def _state_rows(contact_id: str, ledger: _Ledger) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of each state table for one contact."""
    values: dict[str, Any] = {name: v for name, (v, _) in ledger.prefs.items()}
    values.update({name: v for name, (v, _) in ledger.facts.items()})
    contacts = (
        contact_id,
        *(values.get(name) for name in (*PREFERENCES, "level", *CONTACT_FIELDS)),
        ledger.events,
        ledger.first,
        ledger.last,
    )
    sources = [
        (contact_id, name, *src)
        for name, (_, src) in sorted((*ledger.prefs.items(), *ledger.facts.items()))
    ]
    return {
        "contacts": [contacts],
        "sources": sources,
        "lists": [
            (contact_id, list_id, name, member, *src)
            for list_id, (member, name, src) in ledger.lists.items()
        ],
        "contact_points": [
            (contact_id, *key, status, *src) for key, (status, src) in ledger.points.items()
        ],
        "undeliverable": [(contact_id, a, *src) for a, src in ledger.bounced.items()],
    }


# --------------------------------------------------------------------------- reading and deciding


def _contact(contact_id: UUID | str) -> str:
    return str(contact_id).strip().lower()


def _check_as_of(as_of: datetime | None) -> None:
    if as_of is not None and (as_of.tzinfo is None or as_of.utcoffset() is None):
        raise ValueError(f"as_of {as_of.isoformat()}: must be a timezone-aware datetime")


def consent_state(
    store: ViewStore,
    contact_id: UUID | str,
    as_of: datetime | None = None,
    *,
    view: Consent | None = None,
) -> ConsentState:
    """A contact's consent now, or as it stood at ``as_of`` (events up to and including it).

    Raises :class:`UnknownContact` if no event names the contact.
    """
    _check_as_of(as_of)
    view = view if view is not None else Consent()
    cid = _contact(contact_id)
    with store.reading() as cursor:
        ledger = view._read(cursor, cid, as_of)
    return ledger.state(cid, view.rules, as_of)


def audit_trail(
    store: ViewStore, contact_id: UUID | str, *, view: Consent | None = None
) -> list[AuditEntry]:
    """Every consent-relevant event of a contact, oldest first, with what it changed."""
    view = view if view is not None else Consent()
    cid = _contact(contact_id)
    with store.reading() as cursor:
        cursor.execute(
            f"SELECT occurred_at, event_id, type, source, changes FROM {view.table('audit')} "
            "WHERE contact_id = %s ORDER BY occurred_at, event_id",
            (cid,),
        )
        rows = cursor.fetchall()
    if not rows:
        raise UnknownContact(cid, view.instance)
    return [
        AuditEntry(datetime.fromisoformat(at), event_id, t, source, orjson.loads(changes))
        for at, event_id, t, source, changes in rows
    ]


def may_send(
    store: ViewStore,
    contact_id: UUID | str,
    channel: str,
    purpose: str,
    list_id: str | None = None,
    as_of: datetime | None = None,
    *,
    topic: str | None = None,
    contact_point: str | None = None,
    view: Consent | None = None,
) -> Decision:
    """May a message of ``purpose`` go to the contact on ``channel`` (to ``list_id``, about
    ``topic``, to ``contact_point``: default the contact's current email address or phone
    number, or any of its push devices), now or at ``as_of``? The reasons name each rule, the
    instant it took effect and the event that set it."""
    _validate(channel, purpose)
    view = view if view is not None else Consent()
    state = consent_state(store, contact_id, as_of, view=view)
    return decide(state, view.rules, channel, purpose, list_id, topic, contact_point)


def _validate(channel: str, purpose: str) -> None:
    if channel not in CHANNELS:
        raise ValueError(f"channel {channel!r}: use one of {', '.join(CHANNELS)}")
    if purpose not in PURPOSES:
        extra = " (tracking consent governs tracking, not sending)" if purpose == "tracking" else ""
        raise ValueError(f"purpose {purpose!r}: use one of {', '.join(PURPOSES)}{extra}")


def decide(
    state: ConsentState,
    rules: ConsentRules,
    channel: str,
    purpose: str,
    list_id: str | None = None,
    topic: str | None = None,
    contact_point: str | None = None,
) -> Decision:
    """The decision for a state already read (see :func:`may_send`)."""
    _validate(channel, purpose)
    checks: list[Check] = []
    commercial = purpose == "commercial"

    if channel == "email":
        allow = state.preferences["allow_email"]
        verdict = "allowed" if allow.value else "not allowed"
        checks.append(Check("allow_email", allow.value, f"email {verdict} {allow.describe()}"))
        if commercial:
            bulk = state.preferences["allow_bulk_email"]
            verdict = "allowed" if bulk.value else "not allowed"
            checks.append(
                Check("allow_bulk_email", bulk.value, f"bulk email {verdict} {bulk.describe()}")
            )

    point = contact_point
    if channel != "push" and point is None:
        current = state.email if channel == "email" else state.phone
        point = current.value
        if point is None:
            label = "email address" if channel == "email" else "phone number"
            checks.append(Check("contact_point", False, f"no {label} on record"))
    if channel == "email" and point is not None:
        checks.append(_deliverable(state, point))

    if commercial:
        checks.append(_child(state, rules))

    rule, minimum = rules.minimum(purpose, list_id)
    level = state.level
    ok = LEVELS[level.value] >= LEVELS[minimum]
    what = "commercial messages to a list" if rule.endswith("_list") else f"{purpose} messages"
    checks.append(
        Check(
            "consent_level",
            ok,
            f"consent level {level.value.value} {level.describe()} "
            f"{'meets' if ok else 'is below'} the minimum {minimum.value} for {what} ({rule})",
        )
    )

    if list_id is not None:
        checks.append(_membership(state, list_id))

    if channel == "push" and point is None:
        devices = sorted({p.contact_point for p in state.contact_points if p.channel == "push"})
        device_checks = [
            _point_consent(state, rules, channel, purpose, d, topic)
            for d in devices
            if d != ANY_POINT
        ] or [_point_consent(state, rules, channel, purpose, None, topic)]
        passed = [c for c in device_checks if c.passed]
        chosen = passed or device_checks
        checks.append(
            Check("contact_point_consent", bool(passed), "; ".join(c.reason for c in chosen))
        )
    elif point is not None:
        checks.append(_point_consent(state, rules, channel, purpose, point, topic))

    allowed = all(c.passed for c in checks)
    reasons = [c.reason for c in checks if allowed or not c.passed]
    return Decision(allowed, reasons, checks)


def _deliverable(state: ConsentState, address: str) -> Check:
    for bounced in (address, ANY_POINT):
        src = state.undeliverable.get(bounced)
        if src is not None:
            return Check(
                "deliverable",
                False,
                f"address {address} undeliverable {src.describe()}: no email to it until the "
                "contact's address changes or it is opted in again",
            )
    return Check("deliverable", True, f"address {address} has not hard-bounced")


def _child(state: ConsentState, rules: ConsentRules) -> Check:
    child = state.is_child
    if not child.value:
        return Check("children", True, f"not recorded as a child {child.describe()}")
    rule = rules.children.commercial
    if rule == "never":
        return Check(
            "children",
            False,
            f"contact is a child {child.describe()}: no commercial messages to children "
            "(children.commercial = never)",
        )
    guardian = state.guardian_contact_id
    if guardian.value is None:
        return Check(
            "children",
            False,
            f"contact is a child {child.describe()} and no parent or guardian is recorded "
            "(children.commercial = with_guardian)",
        )
    return Check(
        "children",
        True,
        f"contact is a child with guardian {guardian.value} recorded {guardian.describe()} "
        "(children.commercial = with_guardian)",
    )


def _membership(state: ConsentState, list_id: str) -> Check:
    m = state.lists.get(list_id)
    if m is None:
        return Check("list", False, f"not a member of list {list_id} (never joined)")
    if not m.member:
        return Check("list", False, f"not a member of list {list_id}: left {m.source.describe()}")
    return Check("list", True, f"member of list {list_id} {m.source.describe()}")


def _point_consent(
    state: ConsentState,
    rules: ConsentRules,
    channel: str,
    purpose: str,
    point: str | None,
    topic: str | None,
) -> Check:
    """The latest consent for this point (or every point) and purpose, for the topic or all."""
    points = {ANY_POINT} if point is None else {point, ANY_POINT}
    topics = {None, topic}
    applicable = [
        p
        for p in state.contact_points
        if p.channel == channel
        and p.purpose == purpose
        and p.contact_point in points
        and p.topic in topics
    ]
    label = f"{channel} {point or '(any device)'}"
    if applicable:
        latest = max(applicable, key=lambda p: (p.source.since, p.source.event_id))
        about = f" for topic {latest.topic}" if latest.topic else ""
        if latest.contact_point == ANY_POINT and point is not None:
            about += " (for every address or number)"
        return Check(
            "contact_point_consent",
            latest.status == "opted_in",
            f"{label}: {purpose} {latest.status.replace('_', ' ')}{about} "
            f"{latest.source.describe()}",
        )
    model: Enforcement = getattr(getattr(rules.contact_points, purpose), channel)
    rule = f"contact_points.{purpose}.{channel} = {model}"
    if model == "opt_in":
        return Check(
            "contact_point_consent",
            False,
            f"{label}: no {purpose} opt-in recorded, and one is needed ({rule})",
        )
    return Check(
        "contact_point_consent",
        True,
        f"{label}: no {purpose} opt-out recorded ({rule})",
    )
