"""Accounts on their own: events whose subject is only an account are accepted, keyed (and
sealed) by the account id, folded into the account's profile row (address, primary contact) and
shown on the account's own timeline. SQLite and PostgreSQL views; once on real Kafka."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from interaction_store.catalog import partition_of
from interaction_store.codec import EncodedEvent, EventRejected, decode, decode_document
from interaction_store.ingest import Ingest
from interaction_store.log import open_log
from interaction_store.privacy import is_sealed, open_key_store
from interaction_store.privacy.sealing import letter_subject
from interaction_store.projection.profiles import Profiles
from interaction_store.projection.subjects import SubjectIndex
from interaction_store.read import ReadAPI
from interaction_store.settings import Settings
from interaction_store.views import open_store
from tests.api_support import auth, client, project
from tests.factories import doc

CALL_SUBJECT = "Renewal call with the purchasing department"
ACTIVITIES = {
    "activity.phone_call": {"direction": "outbound", "subject": CALL_SUBJECT},
    "activity.appointment": {
        "subject": "Quarterly review",
        "starts_at": "2026-03-02T10:00:00+00:00",
        "ends_at": "2026-03-02T11:00:00+00:00",
    },
    "activity.task": {"subject": "Send the renewal offer"},
    "activity.case_opened": {"case_id": "CAS-1", "title": "Invoice wrong", "priority": "high"},
    "activity.case_resolved": {"case_id": "CAS-1", "resolution": "Credit note sent"},
}


def account_doc(kind: str, account: str, at: int, payload: Any = None, **kw: Any) -> Any:
    """An event about the account alone."""
    return doc(kind, at=at, payload=payload, subject={"account_id": account}, **kw)


def the_accounts_events(account: str, primary: str) -> list[dict[str, Any]]:
    return [
        account_doc(
            "account.created",
            account,
            0,
            {"name": "Contoso", "street": "1 Main St", "city": "Lyon", "country": "FR"},
            source="crm",
        ),
        # Moved: a later update gives a new city and postal code and names the primary contact.
        account_doc(
            "account.updated",
            account,
            30,
            {"city": "Paris", "postal_code": "75002", "primary_contact_id": primary},
            source="crm",
        ),
        *(
            account_doc(kind, account, 10 + i, payload, source="service-desk")
            for i, (kind, payload) in enumerate(ACTIVITIES.items())
        ),
    ]


def publish(settings: Settings, docs: list[dict[str, Any]]) -> list[Any]:
    with open_log(settings) as log:
        return Ingest(log, parallel=False).publish_documents(
            [orjson.dumps(d) for d in docs], "test_accounts_alone"
        )


@pytest.fixture
def api(view_settings: Settings) -> Iterator[TestClient]:
    with client(view_settings) as test_client:
        yield test_client


# ---------------------------------------------------------------------------- the contract


def test_an_account_alone_is_a_subject_and_keys_the_event() -> None:
    account = str(uuid.uuid4())
    event = decode_document(account_doc("account.created", account, 0, {"name": "Contoso"}))
    assert event.key == account
    assert EncodedEvent.of(event).key == account
    # Beside a person, the person keys it, as before.
    contact = str(uuid.uuid4())
    both = doc("activity.task", contact, subject={"contact_id": contact, "account_id": account})
    assert decode_document(both).key == contact
    # A dead letter naming only an account is sealed under the account's key.
    bad = account_doc("activity.phone_call", account, 0, {"direction": "sideways"})
    assert letter_subject(orjson.dumps(bad)) == account


def test_an_empty_subject_is_still_refused_naming_every_id() -> None:
    with pytest.raises(EventRejected) as info:
        decode_document(doc(subject={}))
    (violation,) = info.value.violations
    assert violation.rule == "subject_required"
    assert "account_id" in str(info.value)


def test_an_account_update_checks_its_fields() -> None:
    account = str(uuid.uuid4())
    with pytest.raises(EventRejected) as info:
        decode_document(account_doc("account.updated", account, 0, {"primary_contact_id": "x"}))
    assert [v.field for v in info.value.violations] == ["payload.primary_contact_id"]
    with pytest.raises(EventRejected) as info:
        decode_document(account_doc("account.updated", account, 0, {"name": ""}))
    assert [v.field for v in info.value.violations] == ["payload.name"]


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.text(max_size=600),
            "street": st.text(max_size=600),
            "city": st.text(max_size=300),
            "postal_code": st.text(max_size=60),
            "country": st.text(max_size=150),
            "primary_contact_id": st.one_of(st.uuids().map(str), st.text(max_size=40)),
        },
    )
)
def test_any_account_update_is_accepted_or_refused_naming_a_field(payload: Any) -> None:
    document = account_doc("account.updated", str(uuid.uuid4()), 0, payload)
    try:
        event = decode_document(document)
    except EventRejected as exc:
        assert all(v.field.startswith("payload.") for v in exc.violations), exc
    else:
        assert event.key == document["subject"]["account_id"]


# ---------------------------------------------------------------------------- the views


def test_an_accounts_own_events_make_its_profile_and_timeline(
    view_settings: Settings, api: TestClient
) -> None:
    account, primary, member = (str(uuid.uuid4()) for _ in range(3))
    docs = the_accounts_events(account, primary)
    docs += [
        doc("contact.joined_account", member, at=1, payload={"account_id": account}),
        doc("web.page_viewed", member, at=2),
    ]
    outcomes = publish(view_settings, docs)
    assert [o.status for o in outcomes] == ["accepted"] * len(docs)
    project(view_settings)

    # Sealed under the account's own data key: the log holds the call's subject sealed.
    with open_log(view_settings) as log:
        records = [
            r
            for t in log.catalog.event_topics
            for p in log.partitions(t.name)
            for r in log.read(t.name, p, 0)
        ]
    call = next(r for r in records if r.type == "activity.phone_call")
    assert call.key == account
    assert is_sealed(orjson.loads(call.value or b"")["payload"]["subject"])
    with open_key_store(view_settings) as keys:
        assert keys.get(account) is not None

    with open_store(view_settings) as store, store.reading() as c:
        c.execute(
            "SELECT name, street, city, postal_code, country, primary_contact_id, created_at "
            f"FROM {Profiles().table('accounts')} WHERE account_id = %s",
            (account,),
        )
        row = c.fetchone()
        assert tuple(row[:6]) == ("Contoso", "1 Main St", "Paris", "75002", "FR", primary)
        assert row[6].startswith("2026-03-01T09:00:00")
        c.execute(
            f"SELECT DISTINCT type FROM {SubjectIndex().table('events')} "
            "WHERE subject_kind = %s AND subject_id = %s",
            ("account", account),
        )
        indexed = {r[0] for r in c.fetchall()}
    assert indexed == {"account.created", "account.updated", *ACTIVITIES}

    answer = api.get(f"/v1/accounts/{account}/timeline", headers=auth("admin"))
    assert answer.status_code == 200, answer.text
    entries = answer.json()["entries"]
    assert [e["type"] for e in entries] == [*reversed(ACTIVITIES), "web.page_viewed"]
    own = [e for e in entries if e["channel"] == "activity"]
    assert {(e["subject_kind"], e["subject_id"], e["source"]) for e in own} == {
        ("account", account, "service-desk")
    }
    assert own[-1]["preview"]["subject"] == CALL_SUBJECT  # opened for the view
    # The service role reads activities; marketing does not, and is not told they exist.
    marketing = api.get(f"/v1/accounts/{account}/timeline", headers=auth("marketing")).json()
    assert [e["type"] for e in marketing["entries"]] == ["web.page_viewed"]
    assert marketing["total"] == 1
    # The member's own timeline does not hold the account's activities.
    with ReadAPI(view_settings) as read:
        assert [e.type for e in read.timeline(contact_id=member).entries] == ["web.page_viewed"]


def test_an_account_known_only_by_an_activity_has_a_timeline(
    view_settings: Settings, api: TestClient
) -> None:
    account = str(uuid.uuid4())
    publish(view_settings, [account_doc("activity.task", account, 0, {"subject": "Call back"})])
    project(view_settings)
    answer = api.get(f"/v1/accounts/{account}/timeline", headers=auth("sales"))
    assert answer.status_code == 200, answer.text
    assert [e["type"] for e in answer.json()["entries"]] == ["activity.task"]
    # Another role sees nothing of it but the account is known: an empty page, not a 404.
    hidden = api.get(f"/v1/accounts/{account}/timeline", headers=auth("marketing"))
    assert hidden.status_code == 200 and hidden.json()["entries"] == []
    missing = str(uuid.uuid4())
    absent = api.get(f"/v1/accounts/{missing}/timeline", headers=auth("admin"))
    assert absent.status_code == 404 and missing in absent.text


def test_the_account_profile_is_the_same_in_any_order(view_settings: Settings) -> None:
    """Updates before the creation, repeated, in other batches: one row."""
    account, primary = str(uuid.uuid4()), str(uuid.uuid4())
    events = [decode(orjson.dumps(d)) for d in the_accounts_events(account, primary)]
    events.append(
        decode_document(account_doc("account.updated", account, 20, {"street": "9 Rue Neuve"}))
    )
    rows = set()
    with open_store(view_settings) as store:
        for seed in range(4):
            view = Profiles(f"profiles_{seed}")
            store.ensure(view.schema(store.dialect))
            shuffled = random.Random(seed).sample(events, len(events))
            shuffled += shuffled[: seed + 1]  # redelivered
            cut = random.Random(seed).randrange(1, len(shuffled))
            for batch in (shuffled[:cut], shuffled[cut:]):
                with store.transaction() as c:
                    view.apply(c, batch)
            with store.reading() as c:
                c.execute(f"SELECT * FROM {view.table('accounts')}")
                rows.add(tuple(c.fetchall()))
    (only,) = rows
    ((_, name, street, city, postal, country, chief, created, updated),) = only
    assert (name, street, city, postal, country, chief) == (
        "Contoso",
        "9 Rue Neuve",
        "Paris",
        "75002",
        "FR",
        primary,
    )
    assert created < updated


# ---------------------------------------------------------------------------- on Kafka


def test_on_kafka_an_account_alone_is_keyed_and_routed_by_its_id(kafka_settings: Settings) -> None:
    account = str(uuid.uuid4())
    call = account_doc("activity.phone_call", account, 0, ACTIVITIES["activity.phone_call"])
    (outcome,) = publish(kafka_settings, [call])
    assert outcome.status == "accepted", outcome
    with open_log(kafka_settings) as log:
        topic = log.catalog.topic_for("activity.phone_call").name
        partitions = log.partitions(topic)
        expected = partition_of(account.encode(), len(partitions))
        found = [r for p in partitions for r in log.read(topic, p, 0)]
    (record,) = found
    assert record.position.partition == expected
    assert record.stored_key == account
    assert str(record.event().event_id) == call["event_id"]
