"""Timeline reads by delivery status, journey and campaign, with each entry's source: alone, with
the channel and type filters, over cursor pages, in the Python API and over HTTP; unknown
values named. SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from interaction_store.ingest import Ingest
from interaction_store.log import open_log
from interaction_store.projection.timeline import TimelineEntry
from interaction_store.read import ReadAPI
from interaction_store.settings import Settings
from tests.api_support import auth, client, project
from tests.factories import BASE, doc

CAMPAIGNS = ("spring", "summer")
JOURNEYS = ("welcome", "winback")
STATUSES = ("sent", "delivered", "bounced", "failed")


def the_contacts_events(contact: str) -> list[dict[str, Any]]:
    """Messages of two campaigns and journeys, each delivery status once, an open, a bounce
    whose message never came (its own entry), and entries with no correlation at all."""

    def on(*head: Any, payload: Any = None) -> dict[str, Any]:
        kind, at, message, campaign, journey, source = head
        correlation = {"message_id": message, "campaign_id": campaign, "journey_id": journey}
        return doc(kind, contact, at=at, payload=payload, source=source, correlation=correlation)

    text = {"text": "Spring sale"}
    push = {"title": "Summer is here"}
    return [
        on("email.sent", 0, "m1", "spring", "welcome", "journeys"),
        on("email.delivered", 1, "m1", "spring", "welcome", "esp", payload={}),
        on("email.opened", 5, "m1", "spring", "welcome", "esp"),
        on("email.sent", 10, "m2", "spring", "winback", "journeys"),
        on("email.bounced", 11, "m2", "spring", "winback", "esp"),
        on("sms.sent", 20, "m3", "summer", "welcome", "journeys", payload=text),
        on(
            "sms.failed",
            21,
            "m3",
            "summer",
            "welcome",
            "sms-gateway",
            payload={"reason": "no route"},
        ),
        on("push.sent", 30, "m4", "summer", None, "journeys", payload=push),
        on("email.bounced", 40, "m5", "summer", "winback", "esp"),  # its message never came
        on("web.page_viewed", 50, None, None, None, "website"),
        on("activity.task", 60, None, "spring", None, "crm", payload={"subject": "Call back"}),
    ]


@pytest.fixture
def contact(view_settings: Settings) -> str:
    contact = str(uuid.uuid4())
    with open_log(view_settings) as log:
        docs = [orjson.dumps(d) for d in the_contacts_events(contact)]
        outcomes = Ingest(log, parallel=False).publish_documents(docs, "test_timeline_filters")
    assert {o.status for o in outcomes} == {"accepted"}
    project(view_settings)
    return contact


@pytest.fixture
def read(view_settings: Settings) -> Iterator[ReadAPI]:
    with ReadAPI(view_settings) as api:
        yield api


@pytest.fixture
def api(view_settings: Settings) -> Iterator[TestClient]:
    with client(view_settings) as test_client:
        yield test_client


def every_page(read: ReadAPI, limit: int, **filters: Any) -> tuple[list[TimelineEntry], int]:
    """All entries over cursor pages, and the total (the same on every page)."""
    out: list[TimelineEntry] = []
    totals = set()
    cursor = None
    while True:
        page = read.timeline(limit=limit, cursor=cursor, since=BASE, **filters)
        out += page.entries
        totals.add(page.total)
        cursor = page.next_cursor
        if cursor is None:
            break
    (total,) = totals
    return out, total


def test_each_status_journey_and_campaign_alone(read: ReadAPI, contact: str) -> None:
    def kinds(**filters: Any) -> list[tuple[str, str | None]]:
        page = read.timeline(contact_id=contact, since=BASE, **filters)
        return [(e.type, e.message_id) for e in page.entries]

    assert kinds(statuses=["delivered"]) == [("email.sent", "m1")]
    assert kinds(statuses=["bounced"]) == [("email.bounced", "m5"), ("email.sent", "m2")]
    assert kinds(statuses=["failed", "sent"]) == [("push.sent", "m4"), ("sms.sent", "m3")]
    assert kinds(campaigns=["spring"]) == [
        ("activity.task", None),
        ("email.sent", "m2"),
        ("email.opened", "m1"),
        ("email.sent", "m1"),
    ]
    assert kinds(journeys=["welcome"]) == [
        ("sms.sent", "m3"),
        ("email.opened", "m1"),
        ("email.sent", "m1"),
    ]
    assert kinds(journeys=["nowhere"]) == []
    assert kinds(campaigns=[]) == []  # a filter nothing can match


def test_filters_combine_with_channel_type_and_each_other(read: ReadAPI, contact: str) -> None:
    def kinds(**filters: Any) -> list[tuple[str, str | None]]:
        page = read.timeline(contact_id=contact, since=BASE, **filters)
        return [(e.type, e.message_id) for e in page.entries]

    assert kinds(campaigns=["spring"], types=["email.opened"]) == [("email.opened", "m1")]
    assert kinds(campaigns=["summer"], channels=["sms", "push"]) == [
        ("push.sent", "m4"),
        ("sms.sent", "m3"),
    ]
    assert kinds(campaigns=["spring"], journeys=["winback"], statuses=["bounced"]) == [
        ("email.sent", "m2")
    ]
    assert kinds(campaigns=["summer"], channels=["email"], statuses=["bounced"]) == [
        ("email.bounced", "m5")
    ]
    assert kinds(campaigns=["spring"], statuses=["failed"]) == []
    assert kinds(journeys=list(JOURNEYS), channels=["email"], permissions=["sms"]) == []


def test_every_entry_carries_its_source(read: ReadAPI, contact: str) -> None:
    page = read.timeline(contact_id=contact, since=BASE, limit=50)
    sources = {(e.type, e.message_id): e.source for e in page.entries}
    assert sources == {
        ("activity.task", None): "crm",
        ("web.page_viewed", None): "website",
        ("email.bounced", "m5"): "esp",  # a report standing in: the report's source
        ("push.sent", "m4"): "journeys",
        ("sms.sent", "m3"): "journeys",
        ("email.sent", "m2"): "journeys",
        ("email.opened", "m1"): "esp",
        ("email.sent", "m1"): "journeys",
    }


@hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    statuses=st.none() | st.lists(st.sampled_from(STATUSES), unique=True),
    campaigns=st.none() | st.lists(st.sampled_from((*CAMPAIGNS, "autumn")), unique=True),
    journeys=st.none() | st.lists(st.sampled_from(JOURNEYS), unique=True),
    channels=st.none() | st.lists(st.sampled_from(("email", "sms", "push", "web")), unique=True),
    limit=st.integers(1, 4),
)
def test_any_combination_pages_through_what_filtering_everything_gives(
    read: ReadAPI,
    contact: str,
    statuses: list[str] | None,
    campaigns: list[str] | None,
    journeys: list[str] | None,
    channels: list[str] | None,
    limit: int,
) -> None:
    everything, _ = every_page(read, 50, contact_id=contact)
    expected = [
        e
        for e in everything
        if (statuses is None or e.status in statuses)
        and (campaigns is None or e.campaign_id in campaigns)
        and (journeys is None or e.journey_id in journeys)
        and (channels is None or e.channel in channels)
    ]
    found, total = every_page(
        read,
        limit,
        contact_id=contact,
        statuses=statuses,
        campaigns=campaigns,
        journeys=journeys,
        channels=channels,
    )
    assert [e.event_id for e in found] == [e.event_id for e in expected]
    assert total == len(expected)


def test_unknown_or_malformed_filter_values_are_named(read: ReadAPI, contact: str) -> None:
    with pytest.raises(ValueError, match=r"statuses \['opened'\]: unknown.*delivered"):
        read.timeline(contact_id=contact, statuses=["opened"])
    with pytest.raises(ValueError, match="campaigns ''"):
        read.timeline(contact_id=contact, campaigns=[""])
    with pytest.raises(ValueError, match="journeys 'welcome': must be a list"):
        read.timeline(contact_id=contact, journeys="welcome")


def test_over_http_with_paging_and_the_callers_role(api: TestClient, contact: str) -> None:
    url = f"/v1/contacts/{contact}/timeline"
    since = {"from": BASE.isoformat()}
    answer = api.get(url, params={**since, "campaign": "spring", "limit": 2}, headers=auth("admin"))
    assert answer.status_code == 200, answer.text
    first = answer.json()
    assert first["total"] == 4
    assert [(e["type"], e["source"]) for e in first["entries"]] == [
        ("activity.task", "crm"),
        ("email.sent", "journeys"),
    ]
    params = {**since, "campaign": "spring", "limit": 2, "cursor": first["next_cursor"]}
    second = api.get(url, params=params, headers=auth("admin")).json()
    assert [e["type"] for e in second["entries"]] == ["email.opened", "email.sent"]
    assert second["next_cursor"] is None and second["total"] == 4
    # Repeatable, combined with the type filter; sales reads emails and activities, not SMS.
    params = {**since, "status": ["bounced", "failed"], "type": ["email.sent", "sms.sent"]}
    admin = api.get(url, params=params, headers=auth("admin")).json()
    assert [e["message_id"] for e in admin["entries"]] == ["m3", "m2"]
    sales = api.get(url, params=params, headers=auth("sales")).json()
    assert [e["message_id"] for e in sales["entries"]] == ["m2"] and sales["total"] == 1
    params = {**since, "journey": ["welcome", "winback"], "channel": "sms"}
    both = api.get(url, params=params, headers=auth("admin"))
    assert [e["message_id"] for e in both.json()["entries"]] == ["m3"]


@pytest.mark.parametrize(
    ("params", "parameter", "value"),
    [
        ({"status": "opened"}, "status", "opened"),
        ({"status": ["delivered", "read"]}, "status", "read"),
        ({"campaign": ""}, "campaign", ""),
        ({"journey": "j" * 1001}, "journey", "j" * 1001),
    ],
)
def test_over_http_an_unknown_status_or_empty_id_is_a_422_naming_it(
    api: TestClient, contact: str, params: dict[str, Any], parameter: str, value: str
) -> None:
    answer = api.get(f"/v1/contacts/{contact}/timeline", params=params, headers=auth("admin"))
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["errors"]
    assert (error["parameter"], error["value"]) == (parameter, value)
    assert repr(value)[:40] in answer.json()["detail"]
