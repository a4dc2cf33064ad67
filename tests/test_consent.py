"""The consent view: preferences, lists, contact points, levels, children, opt-out events, the
audit trail, ``as_of`` and ``may_send``, on SQLite and PostgreSQL, whatever the event order."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from interaction_store import demo
from interaction_store.events import EmailSent, InteractionEvent
from interaction_store.log import open_log
from interaction_store.projection import ProjectionRunner, view_checksum
from interaction_store.projection.consent import (
    ChildRules,
    Consent,
    ConsentLevel,
    ConsentRules,
    ConsentRulesError,
    UnknownContact,
    audit_trail,
    consent_state,
    decide,
    may_send,
)
from interaction_store.settings import Settings
from interaction_store.views import ViewStore, open_store
from tests.factories import BASE, event

ADA = "ada@example.com"
ADA_NEW = "ada@new.example"
PHONE = "+33612345678"
FAR = datetime(2100, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(view_settings: Settings) -> Iterator[ViewStore]:
    with open_store(view_settings) as store:
        yield store


@pytest.fixture
def view() -> Consent:
    return Consent()


def project(
    settings: Settings,
    store: ViewStore,
    view: Consent,
    events: Sequence[InteractionEvent],
    batch_size: int = 7,
) -> None:
    """Publish the events to the log and run the view over it (small batches by default, so
    a contact's events are split across them)."""
    with open_log(settings) as log:
        log.publish(list(events))
        ProjectionRunner(log, store, [view], batch_size=batch_size).run(follow=False)


def minutes(n: float) -> datetime:
    return BASE + timedelta(minutes=n)


def marketable(contact: uuid.UUID, at: int = 0, **details: Any) -> list[InteractionEvent]:
    """A contact everything allows: an address and number, marketing consent, bulk email on."""
    return [
        event(
            type="contact.created",
            contact=contact,
            at=at,
            payload={"first_name": "Ada", "email": ADA, "phone": PHONE, **details},
        ),
        event(
            type="consent.preferences_changed",
            contact=contact,
            at=at + 1,
            payload={"allow_email": True, "allow_bulk_email": True},
        ),
        event(
            type="consent.level_changed", contact=contact, at=at + 2, payload={"level": "marketing"}
        ),
        point(contact, at + 3, "sms", PHONE, "commercial", "opted_in"),
    ]


def point(
    contact: uuid.UUID,
    at: int,
    channel: str,
    contact_point: str,
    purpose: str,
    status: str,
    topic: str | None = None,
) -> InteractionEvent:
    payload = {
        "channel": channel,
        "contact_point": contact_point,
        "purpose": purpose,
        "status": status,
        "topic": topic,
    }
    return event(type="consent.contact_point_changed", contact=contact, at=at, payload=payload)


# --------------------------------------------------------------------------- preferences


def test_each_preference_is_recorded_with_its_event_and_absent_ones_keep(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    c = uuid.uuid4()
    first = event(
        type="consent.preferences_changed",
        contact=c,
        at=1,
        payload={
            "allow_bulk_email": False,
            "allow_email": True,
            "allow_prefill": True,
            "track_email": False,
        },
    )
    second = event(
        type="consent.preferences_changed", contact=c, at=2, payload={"allow_prefill": False}
    )
    project(view_settings, store, view, [second, first])
    prefs = consent_state(store, c, view=view).preferences
    assert {name: p.value for name, p in prefs.items()} == {
        "allow_bulk_email": False,
        "allow_email": True,
        "allow_prefill": False,
        "track_email": False,
    }
    assert prefs["allow_prefill"].source is not None
    assert prefs["allow_prefill"].source.event_id == str(second.event_id)
    assert prefs["allow_prefill"].source.since == minutes(2)
    for name in ("allow_bulk_email", "allow_email", "track_email"):
        source = prefs[name].source
        assert source is not None and source.event_id == str(first.event_id), name


def test_defaults_apply_when_nothing_is_recorded(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    c, nameless = uuid.uuid4(), uuid.uuid4()
    created = event(type="contact.created", contact=nameless, payload={"first_name": "Léa"})
    project(view_settings, store, view, [event(type="contact.created", contact=c), created])
    state = consent_state(store, c, view=view)
    defaults = view.rules.defaults
    assert {name: (p.value, p.source) for name, p in state.preferences.items()} == {
        "allow_email": (defaults.allow_email, None),
        "allow_bulk_email": (defaults.allow_bulk_email, None),
        "allow_prefill": (defaults.allow_prefill, None),
        "track_email": (defaults.track_email, None),
    }
    assert state.level.value is ConsentLevel.not_consented and state.level.source is None
    assert state.email.value == ADA and not state.is_child.value
    # Without any recorded consent level, nothing commercial goes out.
    decision = may_send(store, c, "email", "commercial", view=view)
    assert not decision.allowed
    assert any("consent level not_consented" in r for r in decision.reasons)
    # And no address on record means no email at all.
    decision = may_send(store, nameless, "email", "transactional", view=view)
    assert not decision.allowed and "no email address on record" in decision.reasons


def test_bulk_email_off_blocks_commercial_email_but_not_transactional(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    c = uuid.uuid4()
    off = event(
        type="consent.preferences_changed",
        contact=c,
        at=10,
        payload={"allow_bulk_email": False},
    )
    project(view_settings, store, view, [*marketable(c), off])
    commercial = may_send(store, c, "email", "commercial", view=view)
    assert not commercial.allowed
    assert commercial.reasons == [
        f"bulk email not allowed since 2026-03-01T09:10:00Z by consent.preferences_changed "
        f"event {off.event_id}"
    ]
    transactional = may_send(store, c, "email", "transactional", view=view)
    assert transactional.allowed
    assert any(
        r.startswith("email allowed since 2026-03-01T09:01:00Z") for r in transactional.reasons
    )
    # Bulk email is about email: a commercial SMS is another matter.
    assert may_send(store, c, "sms", "commercial", view=view).allowed


def test_email_off_blocks_commercial_and_transactional(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    c = uuid.uuid4()
    off = event(
        type="consent.preferences_changed", contact=c, at=10, payload={"allow_email": False}
    )
    # Prefill and tracking have no say in sending.
    other = uuid.uuid4()
    neutral = {"allow_prefill": False, "track_email": False}
    change = event(type="consent.preferences_changed", contact=other, at=10, payload=neutral)
    project(view_settings, store, view, [*marketable(c), off, *marketable(other), change])
    assert may_send(store, other, "email", "commercial", view=view).allowed
    for purpose in ("commercial", "transactional"):
        decision = may_send(store, c, "email", purpose, view=view)
        assert not decision.allowed
        assert decision.reasons == [
            f"email not allowed since 2026-03-01T09:10:00Z by consent.preferences_changed "
            f"event {off.event_id}"
        ]


# --------------------------------------------------------------------------- lists


def test_list_sends_need_membership(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    c = uuid.uuid4()
    joined = event(
        type="consent.subscription_joined",
        contact=c,
        at=10,
        payload={"list_id": "list-offers", "list_name": "Offres et promotions"},
    )
    left = event(
        type="consent.subscription_left", contact=c, at=20, payload={"list_id": "list-offers"}
    )
    project(view_settings, store, view, [*marketable(c), joined, left])

    before = may_send(store, c, "email", "commercial", "list-offers", as_of=minutes(15), view=view)
    assert before.allowed
    assert "member of list list-offers since 2026-03-01T09:10:00Z by " in " ".join(before.reasons)

    now = may_send(store, c, "email", "commercial", "list-offers", view=view)
    assert not now.allowed
    assert now.reasons == [
        "not a member of list list-offers: left since 2026-03-01T09:20:00Z by "
        f"consent.subscription_left event {left.event_id}"
    ]
    never = may_send(store, c, "email", "commercial", "list-events", view=view)
    assert never.reasons == ["not a member of list list-events (never joined)"]
    state = consent_state(store, c, view=view)
    assert state.subscribed == []
    assert state.lists["list-offers"].list_name == "Offres et promotions"


def test_a_list_send_needs_subscriptions_level_not_marketing(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    c = uuid.uuid4()
    events = [
        *marketable(c),
        event(type="consent.level_changed", contact=c, at=10, payload={"level": "subscriptions"}),
        event(
            type="consent.subscription_joined",
            contact=c,
            at=11,
            payload={"list_id": "list-newsletter"},
        ),
    ]
    project(view_settings, store, view, events)
    assert may_send(store, c, "email", "commercial", "list-newsletter", view=view).allowed
    outside = may_send(store, c, "email", "commercial", view=view)
    assert not outside.allowed
    assert "is below the minimum marketing" in outside.reasons[0]


# --------------------------------------------------------------------------- opt-out events


def test_an_unsubscribe_link_leaves_the_list_or_all_bulk_email(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    c, everything = uuid.uuid4(), uuid.uuid4()
    joins = [
        event(type="consent.subscription_joined", contact=c, at=5, payload={"list_id": name})
        for name in ("list-offers", "list-events")
    ]
    from_list = event(
        type="email.unsubscribed", contact=c, at=30, payload={"list_id": "list-offers"}
    )
    from_all = event(type="email.unsubscribed", contact=everything, at=30, payload={"via": "link"})
    events = [*marketable(c), *joins, from_list, *marketable(everything), from_all]
    project(view_settings, store, view, events)

    offers = may_send(store, c, "email", "commercial", "list-offers", view=view)
    assert offers.reasons == [
        "not a member of list list-offers: left since 2026-03-01T09:30:00Z by email.unsubscribed "
        f"event {from_list.event_id} (unsubscribed from the list via link)"
    ]
    assert may_send(store, c, "email", "commercial", "list-events", view=view).allowed
    assert may_send(store, c, "email", "commercial", view=view).allowed

    decision = may_send(store, everything, "email", "commercial", view=view)
    assert decision.reasons == [
        f"bulk email not allowed since 2026-03-01T09:30:00Z by email.unsubscribed event "
        f"{from_all.event_id} (unsubscribed from all bulk email via link)"
    ]
    assert may_send(store, everything, "email", "transactional", view=view).allowed


def test_a_spam_report_turns_bulk_email_off_and_says_so(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    c = uuid.uuid4()
    spam = event(type="email.spam_reported", contact=c, at=30, payload={})
    project(view_settings, store, view, [*marketable(c), spam])
    decision = may_send(store, c, "email", "commercial", view=view)
    assert decision.reasons == [
        f"bulk email not allowed since 2026-03-01T09:30:00Z by email.spam_reported event "
        f"{spam.event_id} (spam report, treated as a bulk-email opt-out)"
    ]
    assert may_send(store, c, "email", "transactional", view=view).allowed


def test_an_sms_stop_opts_the_number_out_of_commercial_sms(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    c = uuid.uuid4()
    chatter = event(type="sms.replied", contact=c, at=20, payload={"text": "Merci !"})
    stop = event(type="sms.replied", contact=c, at=30, payload={"text": "stop svp"})
    project(view_settings, store, view, [*marketable(c), chatter, stop])
    decision = may_send(store, c, "sms", "commercial", view=view)
    assert decision.reasons == [
        f"sms {PHONE}: commercial opted out since 2026-03-01T09:30:00Z by sms.replied event "
        f"{stop.event_id} (SMS reply STOP)"
    ]
    assert may_send(store, c, "sms", "commercial", as_of=minutes(29), view=view).allowed
    assert may_send(store, c, "sms", "transactional", view=view).allowed
    # A reply that is not an opt-out is no consent event at all.
    assert str(chatter.event_id) not in {e.event_id for e in audit_trail(store, c, view=view)}


def test_a_hard_bounce_stops_all_email_to_the_address_until_it_changes(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    c = uuid.uuid4()
    soft = event(
        type="email.bounced", contact=c, at=10, payload={"bounce_type": "soft", "reason": "full"}
    )
    hard = event(
        type="email.bounced",
        contact=c,
        at=20,
        payload={"bounce_type": "hard", "reason": "mailbox unknown"},
    )
    moved = event(type="contact.updated", contact=c, at=40, payload={"email": ADA_NEW})
    # Another contact keeps its address and opts it in again instead.
    again = uuid.uuid4()
    bounced = event(type="email.bounced", contact=again, at=20)
    opt_in = point(again, 40, "email", ADA, "commercial", "opted_in")
    events = [*marketable(c), soft, hard, moved, *marketable(again), bounced, opt_in]
    project(view_settings, store, view, events)

    assert may_send(store, c, "email", "transactional", as_of=minutes(19), view=view).allowed
    for purpose in ("commercial", "transactional"):
        decision = may_send(store, c, "email", purpose, as_of=minutes(30), view=view)
        assert decision.reasons == [
            f"address {ADA} undeliverable since 2026-03-01T09:20:00Z by email.bounced event "
            f"{hard.event_id} (hard bounce: mailbox unknown): no email to it until the "
            "contact's address changes or it is opted in again"
        ]
    # The new address is clean; the old one stays marked.
    assert may_send(store, c, "email", "commercial", view=view).allowed
    old = may_send(store, c, "email", "transactional", contact_point=ADA, view=view)
    assert not old.allowed
    assert set(consent_state(store, c, view=view).undeliverable) == {ADA}

    assert not may_send(
        store, again, "email", "transactional", as_of=minutes(39), view=view
    ).allowed
    assert may_send(store, again, "email", "transactional", view=view).allowed
    [entry] = [
        e for e in audit_trail(store, again, view=view) if e.event_id == str(opt_in.event_id)
    ]
    assert entry.changes["cleared"] == [ADA]


def test_opt_out_events_can_be_switched_off_in_the_rules(
    view_settings: Settings, store: ViewStore
) -> None:
    rules = ConsentRules.load()
    off = rules.model_copy(
        update={"opt_outs": rules.opt_outs.model_copy(update={"email_spam_reported": False})}
    )
    view = Consent(rules=off)
    c = uuid.uuid4()
    spam = event(type="email.spam_reported", contact=c, at=30, payload={})
    assert not view.wants(spam)
    project(view_settings, store, view, [*marketable(c), spam])
    assert may_send(store, c, "email", "commercial", view=view).allowed


# --------------------------------------------------------------------------- contact points


def test_a_contact_point_opt_out_is_per_address_purpose_and_topic(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    c = uuid.uuid4()
    out = point(c, 10, "email", ADA, "commercial", "opted_out", topic="events")
    # Another contact opts out of a topic, then back in to everything: the latest counts.
    back = uuid.uuid4()
    events = [
        *marketable(c),
        out,
        *marketable(back),
        point(back, 10, "email", ADA, "commercial", "opted_out", topic="events"),
        point(back, 20, "email", ADA, "commercial", "opted_in"),
    ]
    project(view_settings, store, view, events)

    events_topic = may_send(store, c, "email", "commercial", topic="events", view=view)
    assert events_topic.reasons == [
        f"email {ADA}: commercial opted out for topic events since 2026-03-01T09:10:00Z by "
        f"consent.contact_point_changed event {out.event_id}"
    ]
    assert may_send(store, c, "email", "commercial", topic="offers", view=view).allowed
    assert may_send(store, c, "email", "commercial", view=view).allowed
    assert may_send(store, c, "email", "transactional", topic="events", view=view).allowed
    other = may_send(
        store, c, "email", "commercial", topic="events", contact_point=ADA_NEW, view=view
    )
    assert other.allowed

    assert may_send(store, back, "email", "commercial", topic="events", view=view).allowed
    earlier = minutes(15)
    assert not may_send(
        store, back, "email", "commercial", topic="events", as_of=earlier, view=view
    ).allowed


def test_commercial_sms_and_push_need_an_opt_in(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    c, device = uuid.uuid4(), "device:0f3a9c"
    events = [*marketable(c)[:3], point(c, 10, "push", device, "commercial", "opted_in")]
    project(view_settings, store, view, events)
    sms = may_send(store, c, "sms", "commercial", view=view)
    assert sms.reasons == [
        f"sms {PHONE}: no commercial opt-in recorded, and one is needed "
        "(contact_points.commercial.sms = opt_in)"
    ]
    assert may_send(store, c, "sms", "transactional", view=view).allowed
    push = may_send(store, c, "push", "commercial", view=view)
    assert push.allowed
    assert any(r.startswith(f"push {device}: commercial opted in") for r in push.reasons)
    assert not may_send(store, c, "push", "commercial", as_of=minutes(9), view=view).allowed


# --------------------------------------------------------------------------- levels and children


# level: (commercial, commercial to a list the contact joined, transactional)
THRESHOLDS = {
    "not_consented": (False, False, False),
    "consent": (False, False, True),
    "transactional": (False, False, True),
    "subscriptions": (False, True, True),
    "marketing": (True, True, True),
    "profiling": (True, True, True),
}


def test_consent_level_thresholds(view_settings: Settings, store: ViewStore, view: Consent) -> None:
    contacts = {level: uuid.uuid4() for level in THRESHOLDS}
    changes = {
        level: event(type="consent.level_changed", contact=c, at=10, payload={"level": level})
        for level, c in contacts.items()
    }
    events: list[InteractionEvent] = []
    for level, c in contacts.items():
        joined = {"list_id": "list-x"}
        events += [
            *marketable(c),
            changes[level],
            event(type="consent.subscription_joined", contact=c, at=11, payload=joined),
        ]
    project(view_settings, store, view, events, batch_size=50)
    for level, c in contacts.items():
        got = (
            may_send(store, c, "email", "commercial", view=view).allowed,
            may_send(store, c, "email", "commercial", "list-x", view=view).allowed,
            may_send(store, c, "email", "transactional", view=view).allowed,
        )
        assert got == THRESHOLDS[level], level
        decision = may_send(store, c, "sms", "commercial", view=view)
        assert decision.allowed is THRESHOLDS[level][0]
        if not decision.allowed:
            assert decision.reasons == [
                f"consent level {level} since 2026-03-01T09:10:00Z by consent.level_changed "
                f"event {changes[level].event_id} is below the minimum marketing for commercial "
                "messages (minimum_level.commercial)"
            ]


def test_a_child_gets_no_commercial_messages_without_guardian_consent(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    child, guardian = uuid.uuid4(), uuid.uuid4()
    events = marketable(child, is_child=True)
    project(view_settings, store, view, events)
    decision = may_send(store, child, "email", "commercial", view=view)
    assert decision.reasons == [
        f"contact is a child since 2026-03-01T09:00:00Z by contact.created event "
        f"{events[0].event_id}: no commercial messages to children (children.commercial = never)"
    ]
    assert not may_send(store, child, "sms", "commercial", view=view).allowed
    assert may_send(store, child, "email", "transactional", view=view).allowed

    # Under the other rule, a guardian on record is what it takes.
    rules = view.rules.model_copy(update={"children": ChildRules(commercial="with_guardian")})
    state = consent_state(store, child, view=view)
    without = decide(state, rules, "email", "commercial")
    assert without.reasons == [
        f"contact is a child since 2026-03-01T09:00:00Z by contact.created event "
        f"{events[0].event_id} and no parent or guardian is recorded "
        "(children.commercial = with_guardian)"
    ]
    named = event(
        type="contact.updated",
        contact=child,
        at=50,
        payload={"guardian_contact_id": str(guardian)},
    )
    project(view_settings, store, view, [named])
    state = consent_state(store, child, view=view)
    assert state.guardian_contact_id.value == str(guardian)
    assert decide(state, rules, "email", "commercial").allowed
    assert not decide(state, view.rules, "email", "commercial").allowed


# --------------------------------------------------------------------------- time and audit


def test_as_of_answers_before_and_after_a_change(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    c = uuid.uuid4()
    off = event(
        type="consent.preferences_changed", contact=c, at=60, payload={"allow_bulk_email": False}
    )
    project(view_settings, store, view, [*marketable(c), off])
    assert may_send(store, c, "email", "commercial", as_of=minutes(59), view=view).allowed
    at_change = may_send(store, c, "email", "commercial", as_of=minutes(60), view=view)
    assert not at_change.allowed
    assert not may_send(store, c, "email", "commercial", view=view).allowed
    before_anything = consent_state(store, c, as_of=minutes(-1), view=view)
    assert before_anything.events == 0 and before_anything.email.value is None
    # The state tables and the fold of the audit agree.
    now = consent_state(store, c, view=view)
    assert consent_state(store, c, as_of=FAR, view=view) == replace(now, as_of=FAR)


def test_the_audit_trail_lists_every_change_with_its_event(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    c = uuid.uuid4()
    events = [
        *marketable(c),
        event(type="email.opened", contact=c, at=5),
        event(type="consent.subscription_joined", contact=c, at=6, payload={"list_id": "l1"}),
        event(type="email.unsubscribed", contact=c, at=7, payload={"list_id": "l1"}),
        event(type="email.spam_reported", contact=c, at=8, payload={}),
        event(type="sms.replied", contact=c, at=9, payload={"text": "ALTO"}),
        event(type="email.bounced", contact=c, at=10),
        event(type="contact.updated", contact=c, at=11, payload={"last_name": "Lovelace"}),
        event(type="contact.updated", contact=c, at=12, payload={"phone": "+34600000000"}),
    ]
    project(view_settings, store, view, list(reversed(events)))
    trail = audit_trail(store, c, view=view)
    relevant = [e for e in events if e.type != "email.opened" and e is not events[-2]]
    assert [a.event_id for a in trail] == [str(e.event_id) for e in relevant]
    assert [a.type for a in trail] == [e.type for e in relevant]
    assert all(a.source == "tests" for a in trail)
    by_type = {a.type: a for a in trail}
    assert by_type["email.spam_reported"].changes == {
        "preferences": {"allow_bulk_email": False},
        "note": "spam report, treated as a bulk-email opt-out",
    }
    assert by_type["sms.replied"].changes["contact_points"][0]["contact_point"] == PHONE
    assert by_type["email.bounced"].changes["bounced"] == ADA
    assert (
        by_type["email.unsubscribed"]
        .describe()
        .endswith("left list l1 (unsubscribed from the list via link)")
    )


def test_a_late_event_moves_an_opt_out_to_the_right_number(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    # The STOP arrives first; the contact's number, set earlier, arrives after it.
    c = uuid.uuid4()
    stop = event(type="sms.replied", contact=c, at=30, payload={"text": "STOP"})
    project(view_settings, store, view, [stop])
    [entry] = audit_trail(store, c, view=view)
    assert entry.changes["contact_points"][0]["contact_point"] == "*"
    assert not may_send(store, c, "sms", "commercial", contact_point=PHONE, view=view).allowed

    project(view_settings, store, view, marketable(c))
    stopped = may_send(store, c, "sms", "commercial", view=view)
    assert not stopped.allowed and stopped.reasons[0].startswith(f"sms {PHONE}: commercial opted")
    other = "+33700000000"
    assert not may_send(store, c, "sms", "commercial", contact_point=other, view=view).allowed
    points = consent_state(store, c, view=view).contact_points
    assert {(p.contact_point, p.status) for p in points} == {(PHONE, "opted_out")}


# --------------------------------------------------------------------------- order and errors


def scenario() -> list[InteractionEvent]:
    """Several contacts whose events depend on one another's order."""
    events: list[InteractionEvent] = []
    for k in range(6):
        c = uuid.uuid4()
        events += marketable(c, at=k)
        events += [
            event(type="contact.updated", contact=c, at=k + 20, payload={"phone": f"+3361{k}"}),
            event(type="sms.replied", contact=c, at=k + 25, payload={"text": "STOP"}),
            event(type="email.bounced", contact=c, at=k + 30),
            event(type="contact.updated", contact=c, at=k + 35, payload={"email": f"n{k}@x.es"}),
            event(
                type="consent.subscription_joined", contact=c, at=k + 5, payload={"list_id": "a"}
            ),
            event(type="email.unsubscribed", contact=c, at=k + 40, payload={"list_id": "a"}),
            event(type="email.spam_reported", contact=c, at=k + 45, payload={}),
            point(c, k + 50, "email", f"n{k}@x.es", "commercial", "opted_out", topic="t"),
            # Same instant as the one before: the event id breaks the tie.
            point(c, k + 50, "email", f"n{k}@x.es", "commercial", "opted_in", topic="t"),
        ]
    return events


def test_the_same_events_in_any_order_with_duplicates_give_the_same_rows(
    view_settings: Settings, store: ViewStore, tmp_path: Path
) -> None:
    events = scenario()
    events += list(demo.generate(30, seed=3, end=datetime(2026, 3, 1, tzinfo=UTC), days=60))
    live = Consent()
    project(view_settings, store, live, events, batch_size=50)
    expected = view_checksum(store, live)
    rng = random.Random(11)
    for k in range(3):
        shuffled = events + rng.sample(events, len(events) // 5)  # redelivered copies
        rng.shuffle(shuffled)
        shadow = Consent(f"consent_check{k}")
        store.ensure(shadow.schema(store.dialect))
        size = rng.choice((1, 13, 500))
        for start in range(0, len(shuffled), size):
            with store.transaction() as cursor:
                shadow.apply(cursor, shuffled[start : start + size])
        assert view_checksum(store, shadow) == expected, f"shuffle {k}, batches of {size}"
    # And through the runner, from a log the events reached newest first.
    replay = Consent("consent_replay")
    reversed_log = view_settings.model_copy(update={"data_dir": tmp_path / "reversed"})
    with open_log(reversed_log) as log:
        log.publish(list(reversed(events)))
        ProjectionRunner(log, store, [replay], batch_size=97).run(follow=False)
    assert view_checksum(store, replay) == expected


def test_unknown_contacts_and_bad_arguments_are_named(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    c = uuid.uuid4()
    project(view_settings, store, view, marketable(c))
    stranger = uuid.uuid4()
    with pytest.raises(UnknownContact, match=str(stranger)) as raised:
        may_send(store, stranger, "email", "commercial", view=view)
    assert isinstance(raised.value, LookupError)
    with pytest.raises(UnknownContact, match=str(stranger)):
        consent_state(store, stranger, as_of=FAR, view=view)
    with pytest.raises(UnknownContact, match=str(stranger)):
        audit_trail(store, stranger, view=view)
    with pytest.raises(ValueError, match=r"channel 'fax'"):
        may_send(store, c, "fax", "commercial", view=view)
    with pytest.raises(ValueError, match=r"purpose 'tracking'.*not sending"):
        may_send(store, c, "email", "tracking", view=view)
    with pytest.raises(ValueError, match="timezone-aware"):
        may_send(store, c, "email", "commercial", as_of=datetime(2026, 3, 1), view=view)


def test_the_rules_file_is_checked_with_the_key_and_value_named(tmp_path: Path) -> None:
    shipped = ConsentRules.load()
    assert shipped.minimum_level.commercial is ConsentLevel.marketing
    text = (Settings().projections_dir / "consent.toml").read_text(encoding="utf-8")
    bad = text.replace('commercial = "marketing"', 'commercial = "loads"')
    with pytest.raises(ConsentRulesError, match=r"minimum_level\.commercial = 'loads'"):
        ConsentRules.from_toml(bad, "consent.toml")
    with pytest.raises(ConsentRulesError, match="ISTORE_PROJECTIONS_DIR"):
        ConsentRules.load(tmp_path)


# --------------------------------------------------------------------------- demo data


def test_the_demo_never_sends_an_email_consent_forbade_at_the_time(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    events = list(demo.generate(200, seed=5, end=datetime(2026, 3, 1, tzinfo=UTC), days=365))
    project(view_settings, store, view, events, batch_size=2000)
    sent = [e for e in events if e.type == "email.sent" and e.subject.contact_id is not None]
    commercial = 0
    refused: list[str] = []
    for e in sent:
        assert isinstance(e.payload, EmailSent)
        purpose = e.payload.legal_designation
        commercial += purpose == "commercial"
        decision = may_send(
            store,
            e.subject.contact_id,
            "email",
            purpose,
            e.payload.list_id,
            as_of=e.occurred_at,
            contact_point=e.payload.to_address,
            view=view,
        )
        if not decision.allowed:
            refused.append(f"{e.event_id} ({purpose}): {decision.reasons}")
    assert commercial > 1000
    assert refused == []
    # The other way round: what the demo blocked, the view refuses as well.
    blocked = [e for e in events if e.type == "email.blocked"]
    assert blocked
    for e in blocked:
        assert e.subject.contact_id is not None
        reason = getattr(e.payload, "reason", "")
        purpose = "commercial" if "bulk" in reason or "child" in reason else "transactional"
        decision = may_send(
            store, e.subject.contact_id, "email", purpose, as_of=e.occurred_at, view=view
        )
        assert not decision.allowed, (e.event_id, reason)
