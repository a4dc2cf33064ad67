"""Consent across merges: a duplicate's opt-out holds for the contact it was merged into, an
opt-in lifts it only for the same list or contact point (a preference: only once merged), as of
an instant only the merges of that instant count; chains and several duplicates. On SQLite and
PostgreSQL, over the Python read API and HTTP, whatever the order the events arrive in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from interaction_store.events import InteractionEvent
from interaction_store.ingest import Ingest
from interaction_store.log import open_log
from interaction_store.projection.base import HIDDEN_EVENT
from interaction_store.projection.consent import (
    Consent,
    Decision,
    consent_state,
    may_send,
)
from interaction_store.read import ReadAPI
from interaction_store.settings import Settings
from interaction_store.views import ViewStore, open_store
from tests.api_support import auth, client
from tests.api_support import project as project_all
from tests.factories import BASE, doc, event
from tests.test_consent import ADA, PHONE, marketable, point, project

OTHER_PHONE = "+33698765432"


@pytest.fixture
def store(view_settings: Settings) -> Iterator[ViewStore]:
    with open_store(view_settings) as store:
        yield store


@pytest.fixture
def view() -> Consent:
    return Consent()


def at(minutes: float) -> datetime:
    return BASE + timedelta(minutes=minutes)


def merged(into: uuid.UUID, duplicate: uuid.UUID, minutes: int) -> InteractionEvent:
    return event(
        type="contact.merged",
        contact=into,
        at=minutes,
        payload={"merged_contact_id": str(duplicate)},
    )


def bulk(contact: uuid.UUID, minutes: int, allowed: bool) -> InteractionEvent:
    return event(
        type="consent.preferences_changed",
        contact=contact,
        at=minutes,
        payload={"allow_bulk_email": allowed},
    )


def duplicate(contact: uuid.UUID, minutes: int = 0) -> InteractionEvent:
    return event(
        type="contact.created",
        contact=contact,
        at=minutes,
        payload={"first_name": "Ada", "email": ADA, "phone": PHONE},
    )


def failed(decision: Decision, rule: str) -> str:
    """The reason of the one failed check, which must be ``rule``."""
    fails = [c for c in decision.checks if not c.passed]
    assert [c.rule for c in fails] == [rule], decision.reasons
    return fails[0].reason


# --------------------------------------------------------------------------- the defect


def documents(c: uuid.UUID, d: uuid.UUID) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """C can be sent everything; its duplicate D unsubscribed from all bulk email (an email
    event: the marketing_email category) at minute 10; D merged into C at minute 20. The
    merge first, as it may come on another partition."""
    unsubscribed = doc("email.unsubscribed", d, at(10), {"via": "link"})
    merge = doc("contact.merged", c, at(20), {"merged_contact_id": str(d)})
    own = [e.model_dump(mode="json") for e in marketable(c)]
    docs = [merge, *own, doc("contact.created", d, at(0), {"email": ADA}), unsubscribed]
    return docs, unsubscribed, merge["event_id"]


def publish(settings: Settings, docs: Sequence[dict[str, Any]]) -> None:
    with open_log(settings) as log:
        outcomes = Ingest(log, parallel=False).publish_documents(
            [orjson.dumps(d) for d in docs], "test_consent_merges"
        )
    assert [o.status for o in outcomes] == ["accepted"] * len(docs)


def test_a_duplicates_opt_out_holds_for_the_contact_it_was_merged_into(
    view_settings: Settings,
) -> None:
    c, d = uuid.uuid4(), uuid.uuid4()
    docs, unsubscribed, merge_id = documents(c, d)
    publish(view_settings, docs)
    project_all(view_settings)
    before, after = at(15), at(25)

    with ReadAPI(view_settings) as api:
        decision = api.may_send(c, "email", "commercial")
        assert decision.allowed is False
        reason = failed(decision, "allow_bulk_email")
        assert f"email.unsubscribed event {unsubscribed['event_id']}" in reason
        assert f"of contact {d} (merged into {c} by contact.merged event {merge_id}" in reason
        state = api.consent(c)
        assert state.preferences["allow_bulk_email"].value is False
        assert [(m.contact_id, m.into, m.event_id) for m in state.merged] == [
            (str(d), str(c), merge_id)
        ]
        # Before the merge C was on its own; from it on, the group's.
        assert api.may_send(c, "email", "commercial", as_of=before).allowed is True
        assert api.may_send(c, "email", "commercial", as_of=after).allowed is False
        assert api.consent(c, before).merged == []
        # The duplicate reads as the group too.
        assert api.may_send(d, "email", "commercial").allowed is False
        # A role that may not read email events: the fact and its instant, not the event,
        # nor whose it was.
        hidden = failed(
            api.may_send(c, "email", "commercial", permissions=["chat"]), "allow_bulk_email"
        )
        assert f"by {HIDDEN_EVENT}" in hidden
        assert unsubscribed["event_id"] not in hidden and str(d) not in hidden

    url = f"/v1/contacts/{c}/consent"
    query = {"channel": "email", "purpose": "commercial"}
    with client(view_settings) as http:
        answer = http.get(f"{url}/decision", params=query, headers=auth("admin")).json()
        assert answer["may_send"] is False
        assert any(
            unsubscribed["event_id"] in r and f"of contact {d}" in r for r in answer["reasons"]
        )
        then = http.get(
            f"{url}/decision", params=query | {"as_of": before.isoformat()}, headers=auth("admin")
        ).json()
        assert then["may_send"] is True
        state = http.get(url, headers=auth("admin")).json()
        source = state["preferences"]["allow_bulk_email"]["source"]
        assert (source["event_id"], source["contact_id"]) == (unsubscribed["event_id"], str(d))
        assert [m["event_id"] for m in state["merged"]] == [merge_id]
        service = http.get(f"{url}/decision", params=query, headers=auth("service")).json()
        assert service["may_send"] is False
        assert f"by {HIDDEN_EVENT}" in " ".join(service["reasons"])
        assert unsubscribed["event_id"] not in orjson.dumps(service).decode()
        seen = http.get(url, headers=auth("service")).json()
        assert seen["preferences"]["allow_bulk_email"]["source"] == {
            "since": seen["preferences"]["allow_bulk_email"]["source"]["since"],
            "event_id": None,
            "event_type": None,
            "note": "",
            "contact_id": None,
        }


# --------------------------------------------------------------------------- the rules


def test_an_opt_in_lifts_a_duplicates_opt_out_only_for_the_same_contact_point(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    c, d = uuid.uuid4(), uuid.uuid4()
    events = [
        *marketable(c),  # C opted its number in for commercial SMS at minute 3
        duplicate(d),
        point(d, 10, "sms", PHONE, "commercial", "opted_out"),  # after C's opt-in
        merged(c, d, 20),
        point(c, 30, "sms", OTHER_PHONE, "commercial", "opted_in"),  # another number
    ]
    project(view_settings, store, view, events)
    reason = failed(may_send(store, c, "sms", "commercial", view=view), "contact_point_consent")
    assert "opted out" in reason and f"of contact {d}" in reason
    assert may_send(store, c, "sms", "commercial", contact_point=OTHER_PHONE, view=view).allowed

    # The same number opted in again, on the contact the duplicate was merged into: lifted.
    project(view_settings, store, view, [point(c, 40, "sms", PHONE, "commercial", "opted_in")])
    assert may_send(store, c, "sms", "commercial", view=view).allowed is True
    assert may_send(store, c, "sms", "commercial", at(35), view=view).allowed is False


def test_a_preference_opt_out_is_lifted_only_by_an_opt_in_given_once_merged(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    c, d = uuid.uuid4(), uuid.uuid4()
    events = [
        *marketable(c),
        duplicate(d),
        bulk(d, 10, False),
        bulk(c, 15, True),  # later, but given apart: C did not speak for D yet
        merged(c, d, 20),
    ]
    project(view_settings, store, view, events)
    assert failed(may_send(store, c, "email", "commercial", view=view), "allow_bulk_email")

    # Under "latest", C's later true wins as if the two had been one contact all along.
    merges = view.rules.merges.model_copy(update={"preferences": "latest"})
    latest = view.rules.model_copy(update={"merges": merges})
    as_one = Consent(view.instance, latest, view.opt_outs)
    assert may_send(store, c, "email", "commercial", view=as_one).allowed is True

    project(view_settings, store, view, [bulk(c, 30, True)])  # on the merged record
    assert may_send(store, c, "email", "commercial", view=view).allowed is True
    assert may_send(store, c, "email", "commercial", at(25), view=view).allowed is False


def test_the_lowest_consent_level_of_the_group_holds_until_raised_once_merged(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    c, d = uuid.uuid4(), uuid.uuid4()
    level = "consent.level_changed"
    events = [
        *marketable(c),
        duplicate(d),
        event(type=level, contact=d, at=10, payload={"level": "transactional"}),
        merged(c, d, 20),
    ]
    project(view_settings, store, view, events)
    state = consent_state(store, c, view=view)
    assert state.level.value.value == "transactional" and state.level.source is not None
    assert state.level.source.contact_id == str(d)
    assert failed(may_send(store, c, "email", "commercial", view=view), "consent_level")
    project(
        view_settings,
        store,
        view,
        [event(type=level, contact=c, at=30, payload={"level": "marketing"})],
    )
    assert may_send(store, c, "email", "commercial", view=view).allowed is True


# --------------------------------------------------------------------------- groups


def test_a_chain_and_several_duplicates(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    a, b, c, e = (uuid.uuid4() for _ in range(4))
    events = [
        merged(c, b, 30),  # B into C, after A into B: a chain
        merged(b, a, 20),
        merged(c, e, 40),  # and a second duplicate of C
        *marketable(c),
        duplicate(a),
        bulk(a, 5, False),
        duplicate(e),
        point(e, 6, "sms", PHONE, "commercial", "opted_out"),
        event(type="consent.subscription_left", contact=b, at=7, payload={"list_id": "newsletter"}),
        event(
            type="consent.subscription_joined",
            contact=c,
            at=2,
            payload={"list_id": "newsletter", "list_name": "Newsletter"},
        ),
    ]
    project(view_settings, store, view, list(reversed(events)), batch_size=3)

    email = may_send(store, c, "email", "commercial", "newsletter", view=view)
    fails = {ch.rule: ch.reason for ch in email.checks if not ch.passed}
    assert set(fails) == {"allow_bulk_email", "list"}
    assert f"of contact {a} (merged into {b} by contact.merged" in fails["allow_bulk_email"]
    assert f"of contact {b} (merged into {c}" in fails["list"]
    sms = failed(may_send(store, c, "sms", "commercial", view=view), "contact_point_consent")
    assert f"of contact {e}" in sms
    # Every contact of the group reads the same.
    for member in (a, b, e):
        assert may_send(store, member, "sms", "commercial", view=view).allowed is False
    state = consent_state(store, a, view=view)
    assert sorted((m.contact_id, m.into) for m in state.merged) == sorted(
        [(str(a), str(b)), (str(b), str(c)), (str(e), str(c))]
    )

    # As of minute 25, A was in B, and B not yet in C: C on its own.
    assert may_send(store, c, "email", "commercial", as_of=at(25), view=view).allowed is True
    assert may_send(store, b, "email", "commercial", as_of=at(25), view=view).allowed is False
    assert may_send(store, c, "sms", "commercial", as_of=at(35), view=view).allowed is True


def test_a_contact_with_no_consent_event_of_its_own_gets_its_duplicates(
    view_settings: Settings, store: ViewStore, view: Consent
) -> None:
    c, d = uuid.uuid4(), uuid.uuid4()
    project(view_settings, store, view, [merged(c, d, 20), duplicate(d), bulk(d, 10, False)])
    state = consent_state(store, c, view=view)
    assert state.contact_id == str(c) and state.events == 2
    assert state.preferences["allow_bulk_email"].value is False
    assert state.email.value == ADA
