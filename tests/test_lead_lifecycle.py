"""The lead lifecycle (issue 10, item 4): a lead returned to marketing opens a new scoring
episode and is handed over again (one ``lead.sales_ready`` per episode, deterministic ids);
rules that test the lead's own topic and source; ``lead.updated`` moving a lead; opportunities
in the profiles and on timelines; a seller's queue. SQLite and PostgreSQL."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from interaction_store.codec import decode
from interaction_store.events import EVENT_ADAPTER, InteractionEvent
from interaction_store.log import EventLog, open_log
from interaction_store.projection import view_checksum
from interaction_store.projection.base import Projection
from interaction_store.projection.profiles import Profiles
from interaction_store.projection.scoring import (
    SALES_READY_NAMESPACE,
    LeadScores,
    UnknownModel,
    explain,
    lead_scores,
    publish_outbox,
    sales_ready_event_id,
    sales_ready_leads,
)
from interaction_store.projection.scoring.files import ScoringModelError, parse_model
from interaction_store.projection.scoring.model import ScoringModel
from interaction_store.projection.timeline import Timeline
from interaction_store.read import ReadAPI
from interaction_store.settings import Settings
from interaction_store.views import ViewStore, open_store
from tests.api_support import auth, client, project
from tests.factories import BASE, doc, event
from tests.test_api_read import publish
from tests.test_lead_scores import sales_ready_events

DAY = 24 * 60  # the factories count in minutes

NURTURE: dict[str, Any] = {
    "name": "nurture",
    "version": 1,
    "sales_ready_threshold": 50,
    "grades": [{"grade": "A", "min_score": 50}, {"grade": "B"}],
    "rules": [
        {
            "id": "download",
            "description": "Downloaded a PDF, in the last 30 days",
            "when": {"type": "web.link_clicked"},
            "points": 30,
            "window_days": 30,
        },
        {
            "id": "solar-page",
            "description": "Read about solar panels: counts for solar leads only",
            "when": {"type": "web.page_viewed", "lead": {"topic": {"regex": "(?i)solar"}}},
            "points": 40,
        },
        {
            "id": "webinar",
            "description": "Came through a webinar: its pages count double",
            "when": {"type": "web.page_viewed", "lead": {"source": "webinar"}},
            "points": 40,
        },
    ],
}


def nurture() -> ScoringModel:
    return parse_model(NURTURE)


@pytest.fixture
def store(view_settings: Settings) -> Iterator[ViewStore]:
    with open_store(view_settings) as store:
        yield store


@pytest.fixture
def log(view_settings: Settings) -> Iterator[EventLog]:
    with open_log(view_settings) as log:
        yield log


def apply(store: ViewStore, view: Projection, *batches: Sequence[InteractionEvent]) -> None:
    store.ensure(view.schema(store.dialect))
    for batch in batches:
        with store.transaction() as c:
            view.apply(c, [e for e in batch if view.wants(e)])


def lead_event(lead_id: uuid.UUID, at: int, type: str, **payload: Any) -> InteractionEvent:
    clear = {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in payload.items()}
    return event(type=type, at=at, subject={"lead_id": str(lead_id)}, payload=clear)


def download(contact: uuid.UUID, at: int) -> InteractionEvent:
    payload = {"url": "https://example.com/brochure.pdf"}
    return event(type="web.link_clicked", contact=contact, at=at, payload=payload)


def page(contact: uuid.UUID, at: int) -> InteractionEvent:
    payload = {"url": "https://example.com/solar", "seconds_on_page": 40}
    return event(type="web.page_viewed", contact=contact, at=at, payload=payload)


def deal(
    type: str, contact: uuid.UUID, at: int, account: uuid.UUID | None = None, **p: Any
) -> InteractionEvent:
    subject = {"contact_id": str(contact)} | ({"account_id": str(account)} if account else {})
    return event(type=type, at=at, subject=subject, payload={"opportunity_id": "OPP-1", **p})


def lifecycle(contact: uuid.UUID, lead_id: uuid.UUID) -> tuple[list[InteractionEvent], str]:
    """Sales-ready on day 2, qualified on day 5, returned on day 40 (its downloads out of the
    window by then), sales-ready again on day 46; returned again on day 47 while still scoring
    90 (no hand-over in that episode). The id of the first return."""
    first_return = lead_event(lead_id, 40 * DAY, "lead.returned_to_marketing", reason="later")
    events = [
        lead_event(lead_id, 0, "lead.created", parent_contact_id=contact, topic="Heat pumps"),
        download(contact, 1 * DAY),
        download(contact, 2 * DAY),  # 60: sales-ready
        lead_event(lead_id, 5 * DAY, "lead.qualified", opportunity_id="OPP-1"),
        first_return,
        download(contact, 45 * DAY),  # 30
        download(contact, 46 * DAY),  # 60: crosses again
        lead_event(lead_id, 47 * DAY, "lead.returned_to_marketing"),
        download(contact, 48 * DAY),  # 90, never below: no third hand-over
    ]
    return events, str(first_return.event_id)


# --------------------------------------------------------------------------- episodes


def test_a_returned_lead_is_handed_over_again_once_per_episode(
    log: EventLog, store: ViewStore
) -> None:
    contact, lead_id = uuid.uuid4(), uuid.uuid4()
    view = LeadScores([nurture()])
    events, returned_by = lifecycle(contact, lead_id)
    for e in events:  # one batch each, as a worker following the log would
        apply(store, view, [e])
    [score] = lead_scores(store, lead_id)
    assert (score.episode, score.sales_ready, score.score) == (2, False, 90)

    with store.reading() as c:
        c.execute(
            f"SELECT event_id, episode_key, occurred_at, score FROM {view.table('outbox')} "
            "ORDER BY occurred_at"
        )
        rows = c.fetchall()
    first = str(sales_ready_event_id("nurture", str(lead_id)))
    second = str(sales_ready_event_id("nurture", str(lead_id), returned_by))
    assert rows == [
        (first, "", "2026-03-03T09:00:00.000000Z", 60),
        (second, returned_by, "2026-04-16T09:00:00.000000Z", 60),
    ]
    assert second == str(uuid.uuid5(SALES_READY_NAMESPACE, f"nurture|{lead_id}|{returned_by}"))

    # Redelivered, all at once and again: the same rows; published twice: two events in all.
    before = view_checksum(store, view)
    apply(store, view, events, list(reversed(events)))
    assert view_checksum(store, view) == before
    assert publish_outbox(store, log) == 2
    assert publish_outbox(store, log) == 0
    published = sorted(sales_ready_events(log), key=lambda e: e.occurred_at)
    assert [str(e.event_id) for e in published] == [first, second]
    assert [e.payload.returned_by for e in published] == [None, uuid.UUID(returned_by)]

    # As of a past instant: the episode then, and whether it was sales-ready by then.
    [then] = lead_scores(store, lead_id, as_of=BASE + timedelta(days=45, hours=1))
    assert (then.episode, then.sales_ready, then.score) == (1, False, 30)
    [then] = lead_scores(store, lead_id, as_of=BASE + timedelta(days=46, hours=1))
    assert (then.episode, then.sales_ready) == (1, True)
    assert then.sales_ready_at == BASE + timedelta(days=46)


def _fold(
    store: ViewStore, views: list[Projection], batches: list[list[InteractionEvent]]
) -> list[str]:
    for view in views:
        view.drop(store)
        apply(store, view, *batches)
    return [view_checksum(store, view) for view in views]


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_episodes_and_opportunities_do_not_depend_on_arrival(
    data: st.DataObject, store: ViewStore
) -> None:
    contact, other, lead_id = uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3)
    events, _ = lifecycle(contact, lead_id)
    events += [
        lead_event(lead_id, 50 * DAY, "lead.updated", parent_contact_id=other, source="webinar"),
        page(other, 51 * DAY),
        download(other, 52 * DAY),
        deal("opportunity.created", contact, 6 * DAY, lead_id=str(lead_id), name="Heat pump"),
        deal("opportunity.stage_changed", contact, 7 * DAY, stage="propose"),
        deal("opportunity.lost", contact, 8 * DAY, value=12000, currency="EUR", reason="price"),
    ]
    views: list[Projection] = [LeadScores([nurture()]), Profiles(), Timeline()]
    reference = _fold(store, views, [events])
    order = data.draw(st.permutations(events), label="order")
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=5), label="again")
    delivered = [*order, *repeats]
    size = data.draw(st.integers(1, len(delivered)), label="batch size")
    batches = [delivered[i : i + size] for i in range(0, len(delivered), size)]
    assert _fold(store, views, batches) == reference


# --------------------------------------------------------------------------- lead attributes


def test_two_leads_of_one_contact_score_by_their_own_topic_and_source(store: ViewStore) -> None:
    contact, solar, heat = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    view = LeadScores([nurture()])
    apply(
        store,
        view,
        [
            lead_event(solar, 0, "lead.created", parent_contact_id=contact, topic="Solar roof"),
            lead_event(heat, 0, "lead.created", parent_contact_id=contact, topic="Heat pumps"),
            page(contact, DAY),
            download(contact, DAY),
        ],
    )
    scores = {s.lead_id: s for s in (lead_scores(store, x)[0] for x in (solar, heat))}
    assert (scores[str(solar)].score, scores[str(solar)].sales_ready) == (70, True)
    assert (scores[str(heat)].score, scores[str(heat)].sales_ready) == (30, False)
    why = explain(store, heat, "nurture")
    assert [e.rule_id for e in why.events] == ["download"]
    assert sorted(a.rule_id for a in why.set_aside) == ["solar-page", "webinar"]
    assert "topic" in {a.reason for a in why.set_aside if a.rule_id == "solar-page"}.pop()

    # The heat-pump lead turns out to come from a webinar: its pages count now.
    apply(store, view, [lead_event(heat, 2 * DAY, "lead.updated", source="webinar")])
    [now] = lead_scores(store, heat)
    assert (now.score, now.sales_ready) == (70, True)
    assert now.sales_ready_at == BASE + timedelta(days=1)  # the page was read then


def test_a_lead_condition_on_an_unknown_attribute_is_refused_naming_it() -> None:
    bad = {
        **NURTURE,
        "rules": [
            {
                **NURTURE["rules"][1],
                "when": {"type": "web.page_viewed", "lead": {"budget": {"at_least": 10}}},
            }
        ],
    }
    with pytest.raises(ScoringModelError, match=r"budget.*topic, source"):
        parse_model(bad)


# --------------------------------------------------------------------------- lead.updated


def test_lead_updated_moves_the_lead_and_scores_and_profiles_follow(store: ViewStore) -> None:
    ada, bob, account, lead_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    scores, profiles = LeadScores([nurture()]), Profiles()
    batch = [
        lead_event(lead_id, 0, "lead.created", parent_contact_id=ada, topic="Heat pumps"),
        download(ada, DAY),
        download(ada, DAY + 1),
        download(bob, DAY),
        event(type="contact.joined_account", contact=bob, payload={"account_id": str(account)}),
    ]
    for view in (scores, profiles):
        apply(store, view, batch)
    assert lead_scores(store, lead_id)[0].score == 60

    moved = lead_event(lead_id, 2 * DAY, "lead.updated", parent_contact_id=bob)
    for view in (scores, profiles):
        apply(store, view, [moved])
    assert _lead_row(store, profiles, lead_id)[:3] == (str(bob), None, "Heat pumps")
    assert lead_scores(store, lead_id)[0].score == 30  # bob's download only
    assert explain(store, lead_id, "nurture").subjects == (str(bob),)

    # To the account alone: the parent contact is cleared; its members score the lead.
    to_account = lead_event(lead_id, 3 * DAY, "lead.updated", parent_account_id=account)
    topic = lead_event(lead_id, 3 * DAY, "lead.updated", topic="Solar", source="fair")
    for view in (scores, profiles):
        apply(store, view, [to_account, topic])
    assert _lead_row(store, profiles, lead_id) == (None, str(account), "Solar", "fair", "open")
    assert lead_scores(store, lead_id)[0].score == 30


def _lead_row(store: ViewStore, profiles: Profiles, lead_id: uuid.UUID) -> tuple[Any, ...]:
    with store.reading() as c:
        c.execute(
            "SELECT parent_contact_id, parent_account_id, topic, source, status "
            f"FROM {profiles.table('leads')} WHERE lead_id = %s",
            (str(lead_id),),
        )
        row: tuple[Any, ...] = c.fetchone()
    return row


def test_bad_lead_and_opportunity_events_are_refused_naming_the_field() -> None:
    base = doc("lead.updated", subject={"lead_id": str(uuid.uuid4())}, payload={})
    with pytest.raises(ValidationError, match="at least one of topic, source"):
        EVENT_ADAPTER.validate_python(base)
    for payload, field in (
        ({"opportunity_id": "O", "value": 10, "currency": "eur"}, "currency"),
        ({"opportunity_id": "O", "value": -1, "currency": "EUR"}, "value"),
        ({"opportunity_id": "", "value": 1, "currency": "EUR"}, "opportunity_id"),
    ):
        with pytest.raises(ValidationError, match=field):
            EVENT_ADAPTER.validate_python(doc("opportunity.won", payload=payload))
    with pytest.raises(ValidationError, match="a value needs its currency"):
        EVENT_ADAPTER.validate_python(
            doc("opportunity.created", payload={"opportunity_id": "O", "value": 5})
        )


# --------------------------------------------------------------------------- opportunities


def test_opportunities_in_the_profiles_and_on_contact_and_account_timelines(
    store: ViewStore,
) -> None:
    contact, account, lead_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    profiles, timeline = Profiles(), Timeline()
    events = [
        event(type="contact.joined_account", contact=contact, payload={"account_id": str(account)}),
        deal(
            "opportunity.created",
            contact,
            DAY,
            account,
            lead_id=str(lead_id),
            name="Pumps",
            value=9000,
            currency="EUR",
        ),
        deal("opportunity.stage_changed", contact, 2 * DAY, account, stage="propose"),
        deal(
            "opportunity.lost",
            contact,
            3 * DAY,
            account,
            value=8000,
            currency="EUR",
            reason="went with a competitor",
        ),
    ]
    for view in (profiles, timeline):
        apply(store, view, events)
    with store.reading() as c:
        c.execute(f"SELECT * FROM {profiles.table('opportunities')}")
        [row] = c.fetchall()
    assert row[:10] == (
        "OPP-1",
        str(lead_id),
        str(contact),
        str(account),
        "Pumps",
        "propose",
        "lost",
        8000,
        "EUR",
        "went with a competitor",
    )
    now = BASE + timedelta(days=10)
    for who in ({"contact_id": contact}, {"account_id": account}):
        page_ = timeline.query(store, **who, now=now)  # type: ignore[arg-type]
        assert [e.type for e in page_.entries] == [
            "opportunity.lost",
            "opportunity.stage_changed",
            "opportunity.created",
        ]
        assert page_.entries[0].permission == "opportunity"
        assert page_.entries[0].preview == {
            "opportunity_id": "OPP-1",
            "value": 8000.0,
            "currency": "EUR",
            "reason": "went with a competitor",
        }
    # A reader without the opportunity category neither sees nor counts them.
    hidden = timeline.query(store, contact_id=contact, now=now, permissions=["activity"])
    assert (hidden.entries, hidden.total) == ([], 0)

    # Erased: the reason (personal, sealed) is forgotten by the profiles and the timeline.
    erased = event(
        type="contact.erased", contact=contact, payload={"request_id": str(uuid.uuid4())}
    )
    for view in (profiles, timeline):
        apply(store, view, [erased])
    with store.reading() as c:
        c.execute(f"SELECT reason, status FROM {profiles.table('opportunities')}")
        assert c.fetchall() == [("(erased)", "lost")]
    [lost, *_] = timeline.query(store, contact_id=contact, now=now).entries
    assert "went with a competitor" not in str(lost.preview)


# --------------------------------------------------------------------------- the queue


def _queue_docs() -> tuple[list[dict[str, Any]], list[str]]:
    """Three leads sales-ready under the shipped sales-signals model (two appointments and a
    contact-sales form: 80 of 60) on days 1, 2 and 3; a fourth below the threshold."""
    docs, leads = [], []
    for day in (1, 2, 3, 4):
        contact, lead_id = uuid.uuid4(), str(uuid.uuid4())
        leads.append(lead_id)
        docs.append(
            doc(
                "lead.created",
                subject={"lead_id": lead_id},
                payload={"parent_contact_id": str(contact), "topic": f"Deal {day}"},
            )
        )
        meeting = {"starts_at": BASE.isoformat(), "ends_at": BASE.isoformat()}
        docs += [doc("activity.appointment", contact, day * DAY - 2, meeting)]
        if day < 4:
            docs += [
                doc("activity.appointment", contact, day * DAY - 1, meeting),
                doc("form.submitted", contact, day * DAY, {"form_id": "form-contact-sales"}),
            ]
    return docs, leads


def test_the_sellers_queue_pages_newest_first(view_settings: Settings) -> None:
    docs, leads = _queue_docs()
    publish(view_settings, docs)
    project(view_settings)
    url = "/v1/leads"
    with client(view_settings) as http:
        got, cursor = [], None
        while True:
            params: dict[str, Any] = {"sales_ready": "true", "model": "sales-signals", "limit": 2}
            if cursor:
                params["cursor"] = cursor
            r = http.get(url, params=params, headers=auth("sales"))
            assert r.status_code == 200, r.text
            body = r.json()
            assert len(body["leads"]) <= 2
            got += body["leads"]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert [x["lead_id"] for x in got] == [leads[2], leads[1], leads[0]]
        assert [x["topic"] for x in got] == ["Deal 3", "Deal 2", "Deal 1"]
        assert all(x["score"] == 80 and x["episode"] == 0 for x in got)
        with ReadAPI(view_settings) as read:
            page_ = read.sales_ready_leads("sales-signals", limit=10, lead_status="open")
            assert [x.lead_id for x in page_.leads] == [leads[2], leads[1], leads[0]]
            with pytest.raises(UnknownModel):
                read.sales_ready_leads("nope")

        _bad_queue_input(http)


def _bad_queue_input(http: TestClient) -> None:
    def get(role: str = "sales", **params: Any) -> Any:
        return http.get("/v1/leads", params=params, headers=auth(role))

    r = get(sales_ready="true", model="no-such-model")
    assert r.status_code == 404 and r.json()["model"] == "no-such-model"
    assert "no-such-model" in r.json()["detail"] and "sales-signals" in r.json()["detail"]
    r = get(sales_ready="false", model="sales-signals")
    assert r.status_code == 422 and "sales_ready" in r.json()["detail"]
    r = get(sales_ready="true")
    assert r.status_code == 422 and "model" in r.text
    r = get(sales_ready="true", model="sales-signals", cursor="garbage")
    assert r.status_code == 422 and "'garbage'" in r.json()["detail"]
    r = get(sales_ready="true", model="sales-signals", lead_status="won")
    assert r.status_code == 422 and "lead_status" in r.json()["detail"]
    r = get(sales_ready="true", model="sales-signals", limit=0)
    assert r.status_code == 422
    assert get("service", sales_ready="true", model="sales-signals").status_code == 403


def test_the_queue_reads_the_view_directly(store: ViewStore) -> None:
    view = LeadScores([nurture()])
    rng = random.Random(7)
    leads = []
    for i in range(7):
        contact, lead_id = uuid.uuid4(), uuid.uuid4()
        leads.append(str(lead_id))
        at = (i + 1) * DAY
        apply(
            store,
            view,
            [
                lead_event(lead_id, 0, "lead.created", parent_contact_id=contact, topic="x"),
                download(contact, at - rng.randrange(1, 60)),
                download(contact, at),
            ],
        )
    seen, cursor = [], None
    while True:
        page_ = sales_ready_leads(store, "nurture", limit=3, cursor=cursor)
        seen += [x.lead_id for x in page_.leads]
        cursor = page_.next_cursor
        if cursor is None:
            break
    assert seen == list(reversed(leads))
    with pytest.raises(ValueError, match="cursor"):
        sales_ready_leads(store, "nurture", cursor="Zm9v")


def test_decoded_lead_sales_ready_of_a_later_episode_round_trips() -> None:
    returned_by = uuid.uuid4()
    d = doc(
        "lead.sales_ready",
        subject={"lead_id": str(uuid.uuid4())},
        payload={"model": "m", "score": 60, "threshold": 50, "returned_by": str(returned_by)},
    )
    assert decode(orjson.dumps(d)).payload.returned_by == returned_by
