"""The fold: what each consent-relevant event keeps (its facts), what it changed given the
contact's state before it, and that state, one contact's audit rows at a time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

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
from interaction_store.projection.consent.rules import ConsentRules
from interaction_store.projection.consent.state import (
    ANY_POINT,
    CONTACT_FIELDS,
    PREFERENCES,
    ConsentState,
    ListMembership,
    PointConsent,
    Recorded,
    Source,
)

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

# (since as iso() text, event_id, event type, note): kept as text while folding, for speed.
Src = tuple[str, str, str, str]
_PointKey = tuple[str, str, str, str]  # channel, contact point, purpose, topic ("" for none)


class Ledger:
    """One contact's consent while its audit rows are folded, oldest first."""

    __slots__ = ("bounced", "events", "facts", "first", "last", "lists", "points", "prefs")

    def __init__(self) -> None:
        self.prefs: dict[str, tuple[bool, Src]] = {}
        self.facts: dict[str, tuple[Any, Src]] = {}  # level and the CONTACT_FIELDS
        self.lists: dict[str, tuple[bool, str, Src]] = {}  # member, list name
        self.points: dict[_PointKey, tuple[str, Src]] = {}
        self.bounced: dict[str, Src] = {}
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
        src: Src = (since, event_id, event_type, changes.get("note", ""))
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

        def recorded(value: Any, src: Src | None) -> Recorded[Any]:
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


def src_from(columns: Sequence[Any]) -> Src:
    since, event_id, event_type, note = columns
    return (since, event_id, event_type, note or "")


def _source(src: Src) -> Source:
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
