"""Reading a contact's consent (now or as of an instant) and its audit trail, and deciding
whether a message may go out, with the reason for each rule."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import orjson

from interaction_store.projection.base import iso
from interaction_store.projection.consent.group import group_state
from interaction_store.projection.consent.ledger import Ledger
from interaction_store.projection.consent.rules import CHANNELS, PURPOSES, ConsentRules, Enforcement
from interaction_store.projection.consent.state import (
    ANY_POINT,
    LEVELS,
    AuditEntry,
    Check,
    ConsentState,
    Decision,
    Shown,
    UnknownContact,
)
from interaction_store.projection.consent.view import Consent
from interaction_store.projection.merges import group_of, merge_links
from interaction_store.views.base import ViewStore


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
    shown: Shown | None = None,
) -> ConsentState:
    """A contact's consent now, or as it stood at ``as_of`` (events up to and including it);
    with ``shown``, as that reader sees it (:meth:`ConsentState.seen_by`). A contact merged
    with others (by then) has its group's consent, by the ``[merges]`` rules.

    Raises :class:`UnknownContact` if no event names the contact or its group.
    """
    _check_as_of(as_of)
    view = view if view is not None else Consent()
    cid = _contact(contact_id)
    with store.reading() as cursor:
        links = merge_links(cursor, view.merges, [cid], None if as_of is None else iso(as_of))
        members = group_of(cid, links)
        ledgers: dict[str, Ledger] = {}
        for member in members:
            try:
                ledgers[member] = view._read(cursor, member, as_of)
            except UnknownContact:
                if len(members) == 1:
                    raise
                continue  # in the group, but no consent event names it: it adds nothing
        if not ledgers:
            raise UnknownContact(cid, view.instance)
        events = sum(ledger.events for ledger in ledgers.values())
        if shown is not None:
            by_type = [view.events_by_type(cursor, member, as_of) for member in ledgers]
            events = sum(n for counts in by_type for t, n in counts.items() if shown(t))
    states = {m: ledger.state(m, view.rules, as_of) for m, ledger in ledgers.items()}
    if len(members) == 1:
        state = states[cid]
    else:
        state = group_state(cid, members, states, links, view.rules)
    return state.seen_by(shown, events)


def audit_trail(
    store: ViewStore,
    contact_id: UUID | str,
    *,
    view: Consent | None = None,
    shown: Shown | None = None,
) -> list[AuditEntry]:
    """Every consent-relevant event of a contact, oldest first, with what it changed; with
    ``shown``, as that reader sees it (:meth:`AuditEntry.seen_by`)."""
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
        AuditEntry(datetime.fromisoformat(at), event_id, t, source, orjson.loads(changes)).seen_by(
            shown
        )
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
    shown: Shown | None = None,
) -> Decision:
    """May a message of ``purpose`` go to the contact on ``channel`` (to ``list_id``, about
    ``topic``, to ``contact_point``: default the contact's current email address or phone
    number, or any of its push devices), now or at ``as_of``? The reasons name each rule, the
    instant it took effect and the event that set it (only the instant for an event of a
    category ``shown`` hides)."""
    _validate(channel, purpose)
    view = view if view is not None else Consent()
    state = consent_state(store, contact_id, as_of, view=view)
    return decide(state, view.rules, channel, purpose, list_id, topic, contact_point, shown)


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
    shown: Shown | None = None,
) -> Decision:
    """The decision for a state already read in full (see :func:`may_send`); the reasons as
    the reader ``shown`` describes sees them."""
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

    if shown is not None:
        # Decided on the whole state (the latest of two same-instant sources is taken by
        # event id), then each hidden source's description replaced by its instant alone.
        hidden = {s.describe(): s.seen_by(shown).describe() for s in state.sources()}
        hidden = {full: seen for full, seen in hidden.items() if full != seen}
        checks = [Check(c.rule, c.passed, _withheld(c.reason, hidden)) for c in checks]
    allowed = all(c.passed for c in checks)
    reasons = [c.reason for c in checks if allowed or not c.passed]
    return Decision(allowed, reasons, checks)


def _withheld(reason: str, hidden: dict[str, str]) -> str:
    for full, seen in hidden.items():
        reason = reason.replace(full, seen)
    return reason


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
