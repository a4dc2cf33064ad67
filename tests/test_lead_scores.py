"""Lead scores: rules, windows, decay and grades; leads scored from their parent contact or all
the contacts of their parent account; explanations; one ``lead.sales_ready`` per lead and model
through the outbox; the same rows in any order. SQLite and PostgreSQL."""

from __future__ import annotations

import math
import random
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import SecretStr

from interaction_store import demo
from interaction_store.events import InteractionEvent
from interaction_store.log import EventLog, open_log
from interaction_store.log.base import Appended
from interaction_store.projection import ProjectionRunner, view_checksum
from interaction_store.projection.scoring import (
    NO_PARENT,
    NOT_CREATED,
    LeadScore,
    LeadScores,
    ModelsChanged,
    UnknownLead,
    UnknownModel,
    explain,
    lead_scores,
    publish_outbox,
    sales_ready_event_id,
)
from interaction_store.projection.scoring.files import (
    ScoringModelError,
    load_models,
    models_folder,
    parse_model,
)
from interaction_store.projection.scoring.model import ScoringModel
from interaction_store.settings import Settings
from interaction_store.views import ViewStore, open_store
from tests.factories import BASE, event
from tests.test_log_behaviour import read_all

DAY = 24 * 60  # the factories count in minutes

ENGAGEMENT: dict[str, Any] = {
    "name": "engagement",
    "version": 1,
    "sales_ready_threshold": 50,
    "grades": [
        {"grade": "A", "min_score": 50},
        {"grade": "B", "min_score": 20},
        {"grade": "C"},
    ],
    "rules": [
        {
            "id": "opened",
            "description": "Opened an email",
            "when": {"type": "email.opened"},
            "points": 5,
            "once_per": "correlation.message_id",
        },
        {
            "id": "pricing",
            "description": "Read the pricing page",
            "when": {
                "type": "web.page_viewed",
                "where": {
                    "payload.url": {"contains": "/pricing"},
                    "payload.seconds_on_page": {"at_least": 30},
                },
            },
            "points": 10,
            "max_count": 2,
            "window_days": 7,
        },
        {
            "id": "download",
            "description": "Downloaded a PDF",
            "when": {"type": "web.*", "where": {"payload.url": {"regex": r"\.pdf$"}}},
            "points": 15,
        },
        {
            "id": "unsubscribed",
            "description": "Unsubscribed",
            "when": {"type": "email.unsubscribed"},
            "points": -30,
        },
    ],
}


def model(**changes: Any) -> ScoringModel:
    return parse_model({**ENGAGEMENT, **changes})


@pytest.fixture
def store(view_settings: Settings) -> Iterator[ViewStore]:
    with open_store(view_settings) as store:
        yield store


@pytest.fixture
def log(view_settings: Settings) -> Iterator[EventLog]:
    with open_log(view_settings) as log:
        yield log


def apply(store: ViewStore, view: LeadScores, *batches: Sequence[InteractionEvent]) -> None:
    """Each batch in its own transaction, as the runner would."""
    store.ensure(view.schema(store.dialect))
    for batch in batches:
        with store.transaction() as c:
            view.apply(c, batch)


# --------------------------------------------------------------------------- event builders


def lead(
    lead_id: uuid.UUID,
    at: int = 0,
    contact: uuid.UUID | None = None,
    account: uuid.UUID | None = None,
    type: str = "lead.created",
) -> InteractionEvent:
    payload: dict[str, Any] = {}
    if type == "lead.created":
        payload = {"topic": "CRM"}
        if contact:
            payload["parent_contact_id"] = str(contact)
        if account:
            payload["parent_account_id"] = str(account)
    return event(type=type, at=at, subject={"lead_id": str(lead_id)}, payload=payload)


def opened(contact: uuid.UUID | str, at: int, message: str | None = None) -> InteractionEvent:
    return event(
        type="email.opened",
        contact=contact,
        at=at,
        correlation={"message_id": message or str(uuid.uuid4())},
    )


def pricing(
    contact: uuid.UUID, at: int, seconds: float = 45, page: str = "pricing"
) -> InteractionEvent:
    url = f"https://example.com/{page}"
    return event(
        type="web.page_viewed",
        contact=contact,
        at=at,
        payload={"url": url, "seconds_on_page": seconds},
    )


def download(at: int | datetime, **subject: str) -> InteractionEvent:
    url = "https://example.com/brochure.pdf"
    return event(type="web.link_clicked", at=at, subject=subject, payload={"url": url})


def unsubscribed(contact: uuid.UUID, at: int | datetime) -> InteractionEvent:
    return event(type="email.unsubscribed", contact=contact, at=at, payload={})


def membership(
    contact: uuid.UUID, account: uuid.UUID, at: int, joined: bool = True
) -> InteractionEvent:
    kind = "contact.joined_account" if joined else "contact.left_account"
    return event(type=kind, contact=contact, at=at, payload={"account_id": str(account)})


def only(scores: list[LeadScore]) -> LeadScore:
    [score] = scores
    return score


# --------------------------------------------------------------------------- rules


def test_points_per_rule_with_attribute_conditions(store: ViewStore) -> None:
    contact, lead_id = uuid.uuid4(), uuid.uuid4()
    view = LeadScores([model()])
    apply(
        store,
        view,
        [
            opened(contact, 1, "m1"),
            opened(contact, 2, "m1"),  # the same email opened again: once per message
            opened(contact, 3, "m2"),
            pricing(contact, 4, seconds=42),
            pricing(contact, 5, seconds=10),  # too short
            pricing(contact, 6, page="about"),  # another page
            download(7, contact_id=str(contact)),
            event(
                type="web.link_clicked", contact=contact, at=8, payload={"url": "https://x.com/a"}
            ),
            lead(lead_id, at=10, contact=contact),
        ],
    )
    score = only(lead_scores(store, lead_id))
    assert (score.status, score.reason, score.score, score.grade) == ("scored", None, 35.0, "B")
    assert score.counted == 4 and score.lead_status == "open" and not score.sales_ready
    assert score.as_of == BASE + timedelta(minutes=10)  # the lead's creation is its latest instant


def test_max_count_counts_the_most_recent_within_the_window(store: ViewStore) -> None:
    contact, lead_id = uuid.uuid4(), uuid.uuid4()
    view = LeadScores([model()])
    apply(
        store,
        view,
        [lead(lead_id, contact=contact), *(pricing(contact, d * DAY) for d in (1, 2, 3))],
    )
    assert only(lead_scores(store, lead_id)).score == 20  # 3 views, only 2 count
    why = explain(store, lead_id, "engagement")
    assert [e.occurred_at.day for e in why.events] == [3, 4]  # BASE is March 1st
    assert [a.reason for a in why.set_aside] == [
        "over max_count: only the 2 most recent in 7 days count"
    ]
    apply(store, view, [pricing(contact, 20 * DAY)])
    assert only(lead_scores(store, lead_id)).score == 10  # the others are out of the window
    aside = explain(store, lead_id, "engagement").set_aside
    assert {a.reason for a in aside} == {"older than the rule's 7-day window"} and len(aside) == 3
    # Read as of an earlier instant: recomputed from the same matches.
    earlier = only(lead_scores(store, lead_id, as_of=BASE + timedelta(days=2, hours=1)))
    assert (earlier.score, earlier.counted) == (20, 2)


def test_decay_halves_points_every_half_life(store: ViewStore) -> None:
    contact, lead_id = uuid.uuid4(), uuid.uuid4()
    decaying = model(decay={"half_life_days": 10})
    view = LeadScores([decaying])
    apply(store, view, [lead(lead_id, contact=contact), download(0, contact_id=str(contact))])
    assert only(lead_scores(store, lead_id)).score == 15
    apply(store, view, [download(10 * DAY, contact_id=str(contact))])
    assert only(lead_scores(store, lead_id)).score == pytest.approx(7.5 + 15)
    later = only(lead_scores(store, lead_id, as_of=BASE + timedelta(days=20)))
    assert later.score == pytest.approx(3.75 + 7.5) and later.grade == "C"
    why = explain(store, lead_id, "engagement")
    assert [e.decayed_points for e in why.events] == [7.5, 15.0]


def test_grades_go_from_the_highest_down() -> None:
    m = model()
    assert [m.grade_for(s) for s in (120, 50, 49.99, 20, 0, -40)] == ["A", "A", "B", "B", "C", "C"]


# --------------------------------------------------------------------------- who a lead is


def test_a_lead_is_scored_from_all_contacts_of_its_parent_account(store: ViewStore) -> None:
    account, lead_id = uuid.uuid4(), uuid.uuid4()
    ada, bob, cy = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    view = LeadScores([model()])
    apply(
        store,
        view,
        [
            # The interactions arrive before the lead and before the memberships.
            opened(ada, 1),
            download(2, contact_id=str(bob)),
            pricing(cy, 3),
        ],
        [lead(lead_id, at=5, account=account), membership(ada, account, 0)],
        [membership(bob, account, 0)],
    )
    assert only(lead_scores(store, lead_id)).score == 20
    assert set(explain(store, lead_id, "engagement").subjects) == {str(ada), str(bob)}
    apply(
        store, view, [membership(bob, account, 6 * DAY, joined=False), membership(cy, account, DAY)]
    )
    assert only(lead_scores(store, lead_id)).score == 15  # ada's 5 and cy's 10
    assert set(explain(store, lead_id, "engagement").subjects) == {str(ada), str(cy)}


def test_a_score_as_of_an_instant_counts_the_members_of_that_instant(store: ViewStore) -> None:
    account, lead_id = uuid.uuid4(), uuid.uuid4()
    ada, bob, cy = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    view = LeadScores([model()])
    apply(
        store,
        view,
        [membership(ada, account, 0), membership(bob, account, 0), lead(lead_id, 5, None, account)],
        [opened(ada, 1), download(2, contact_id=str(bob)), pricing(cy, 3)],
        # Since then bob left and cy joined: today's members are ada and cy.
        [membership(bob, account, 2 * DAY, joined=False), membership(cy, account, 3 * DAY)],
    )
    assert only(lead_scores(store, lead_id)).score == 15  # ada's 5 and cy's 10
    then = BASE + timedelta(days=1)
    past = only(lead_scores(store, lead_id, as_of=then))
    assert (past.score, past.counted) == (20, 2)  # ada's 5 and bob's 15: cy was not a member
    why = explain(store, lead_id, "engagement", as_of=then)
    assert set(why.subjects) == {str(ada), str(bob)}
    assert {e.subject for e in why.events} == {str(ada), str(bob)}
    # At an instant between the two changes: bob gone, cy not yet there.
    between = only(lead_scores(store, lead_id, as_of=BASE + timedelta(days=2, hours=12)))
    assert between.score == 5


def test_a_lead_with_neither_parent_is_not_scored_and_says_why(store: ViewStore) -> None:
    orphan, unseen = uuid.uuid4(), uuid.uuid4()
    view = LeadScores([model()])
    apply(store, view, [lead(orphan), lead(unseen, type="lead.qualified")])
    score = only(lead_scores(store, orphan))
    assert (score.status, score.reason, score.score, score.grade) == (
        "not_scored",
        NO_PARENT,
        None,
        None,
    )
    assert only(lead_scores(store, unseen)).reason == NOT_CREATED
    why = explain(store, orphan, "engagement")
    assert (why.status, why.reason, why.events) == ("not_scored", NO_PARENT, ())


def test_visitors_identified_later_and_merged_contacts_count(store: ViewStore) -> None:
    contact, duplicate, lead_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    view = LeadScores([model()])
    apply(
        store,
        view,
        [lead(lead_id, contact=contact), download(1, anonymous_id="cookie-1")],
        [pricing(duplicate, 2)],
    )
    assert only(lead_scores(store, lead_id)).score == 0
    link = {"anonymous_id": "cookie-1", "contact_id": str(contact)}
    merge = {"merged_contact_id": str(duplicate)}
    apply(
        store,
        view,
        [event(type="identity.linked", contact=contact, at=3, payload=link)],
        [event(type="contact.merged", contact=contact, at=4, payload=merge)],
    )
    assert only(lead_scores(store, lead_id)).score == 25
    assert set(explain(store, lead_id, "engagement").subjects) == {
        str(contact),
        str(duplicate),
        "anonymous:cookie-1",
    }
    # The visitor turns out to be someone else (a later link): it leaves this lead.
    other, other_lead = uuid.uuid4(), uuid.uuid4()
    relink = {"anonymous_id": "cookie-1", "contact_id": str(other)}
    apply(
        store,
        view,
        [lead(other_lead, contact=other)],
        [event(type="identity.linked", contact=other, at=5, payload=relink)],
    )
    assert only(lead_scores(store, lead_id)).score == 10
    assert only(lead_scores(store, other_lead)).score == 15


def test_unknown_lead_or_model_is_a_lookup_error_naming_it(store: ViewStore) -> None:
    known, missing = uuid.uuid4(), uuid.uuid4()
    view = LeadScores([model()])
    apply(store, view, [lead(known, contact=uuid.uuid4())])
    with pytest.raises(UnknownLead, match=str(missing)) as caught:
        lead_scores(store, missing)
    assert isinstance(caught.value, LookupError)
    with pytest.raises(LookupError, match=str(missing)):
        explain(store, missing, "engagement")
    with pytest.raises(UnknownModel, match=r"'nope'.*engagement"):
        explain(store, known, "nope")


# --------------------------------------------------------------------------- explanations


def test_explain_lists_exactly_the_events_behind_the_score(store: ViewStore) -> None:
    contact, lead_id = uuid.uuid4(), uuid.uuid4()
    view = LeadScores([model(decay={"half_life_days": 30})])
    counted = [
        opened(contact, 1, "m1"),
        pricing(contact, 2 * DAY),
        download(3 * DAY, contact_id=str(contact)),
    ]
    repeat = opened(contact, 4 * DAY, "m1")
    capped = [pricing(contact, DAY), pricing(contact, 2 * DAY + 1)]
    ignored = [pricing(contact, 5, seconds=3), event(type="email.sent", contact=contact, at=6)]
    apply(store, view, [lead(lead_id, contact=contact), *counted, repeat, *capped, *ignored])
    why = explain(store, lead_id, "engagement")
    behind = {e.event_id for e in why.events}
    assert behind == {str(e.event_id) for e in [*counted, capped[1]]}
    assert {a.event_id for a in why.set_aside} == {str(repeat.event_id), str(capped[0].event_id)}
    assert math.isclose(sum(e.decayed_points for e in why.events), why.score or 0, abs_tol=1e-5)
    assert why.score == only(lead_scores(store, lead_id)).score
    totals = {r.rule_id: (r.counted, r.set_aside, r.total) for r in why.rules}
    assert totals["unsubscribed"] == (0, 0, 0)
    assert totals["pricing"][:2] == (2, 1) and totals["opened"][:2] == (1, 1)
    assert math.isclose(sum(r.total for r in why.rules), why.score or 0, abs_tol=1e-5)
    first = next(e for e in why.events if e.rule_id == "opened")
    assert (first.type, first.rule, first.points, first.subject) == (
        "email.opened",
        "Opened an email",
        5,
        str(contact),
    )
    assert first.decayed_points < 5  # three days of a 30-day half-life


# --------------------------------------------------------------------------- sales-ready


def sales_ready_events(log: EventLog) -> list[InteractionEvent]:
    found = []
    for topic in log.catalog.event_topics:
        found += [r.event() for r in read_all(log, topic.name)]
    return [e for e in found if e.type == "lead.sales_ready"]


def test_crossing_the_threshold_emits_lead_sales_ready_exactly_once(
    log: EventLog, store: ViewStore
) -> None:
    contact, lead_id = uuid.uuid4(), uuid.uuid4()
    view = LeadScores([model()])
    runner = ProjectionRunner(log, store, [view])
    steps = [
        [lead(lead_id, contact=contact), opened(contact, DAY)],
        [download(2 * DAY, contact_id=str(contact)), download(3 * DAY, contact_id=str(contact))],
        [pricing(contact, 4 * DAY)],  # 5 + 15 + 15 + 10: 45
        [pricing(contact, 5 * DAY)],  # 55: sales-ready here
        [unsubscribed(contact, 6 * DAY)],  # 25: below again
        [download(7 * DAY, contact_id=str(contact)), opened(contact, 7 * DAY)],  # 45
        [download(8 * DAY, contact_id=str(contact))],  # 60: crosses again, emits nothing
    ]
    for batch in steps:  # separate batches, each in its own run
        log.publish(batch)
        runner.run(follow=False)
    score = only(lead_scores(store, lead_id))
    assert (score.score, score.sales_ready) == (60, True)
    assert score.sales_ready_at == BASE + timedelta(days=5)
    with store.reading() as c:
        c.execute(f"SELECT event_id, occurred_at, score FROM {view.table('outbox')}")
        assert c.fetchall() == [
            (
                str(sales_ready_event_id("engagement", str(lead_id))),
                "2026-03-06T09:00:00.000000Z",
                55,
            )
        ]
    before = view_checksum(store, view)
    # Redelivery: the same records again to a restarted worker, and the events applied again.
    topic = log.catalog.by_name("interactions").name
    again = ProjectionRunner(log, store, [view])
    again.load_positions()
    again.process(log.read(topic, 0, 0, 100))
    apply(store, view, [e for batch in steps for e in batch])
    assert view_checksum(store, view) == before

    assert publish_outbox(store, log) == 1
    assert publish_outbox(store, log) == 0
    [published] = sales_ready_events(log)
    assert published.event_id == sales_ready_event_id("engagement", str(lead_id))
    assert published.subject.lead_id == lead_id and published.subject.contact_id == contact
    assert published.payload.model_dump() == {
        "model": "engagement",
        "score": 55,
        "threshold": 50,
        "returned_by": None,
    }
    runner.run(follow=False)  # the view reads its own event back and ignores it
    assert view_checksum(store, view) == before


class WorkerKilled(Exception):
    pass


class DiesAfterPublishing:
    """The real log, but the worker dies right after the events reached it."""

    def __init__(self, log: EventLog) -> None:
        self.log = log

    def publish(self, events: Sequence[InteractionEvent]) -> list[Appended]:
        self.log.publish(events)
        raise WorkerKilled("between publish and mark")


def test_a_crash_between_publish_and_mark_publishes_once(log: EventLog, store: ViewStore) -> None:
    contact, lead_id = uuid.uuid4(), uuid.uuid4()
    view = LeadScores([model(sales_ready_threshold=10)])
    log.publish([lead(lead_id, contact=contact), download(1, contact_id=str(contact))])
    ProjectionRunner(log, store, [view]).run(follow=False)
    with pytest.raises(WorkerKilled):
        publish_outbox(store, cast(EventLog, DiesAfterPublishing(log)))
    assert len(sales_ready_events(log)) == 1
    assert publish_outbox(store, log) == 1  # published again: the log keeps its one copy
    assert len(sales_ready_events(log)) == 1
    assert publish_outbox(store, log) == 0


def test_sales_ready_only_while_the_lead_is_open(store: ViewStore) -> None:
    contact, lead_id = uuid.uuid4(), uuid.uuid4()
    view = LeadScores([model()])
    apply(
        store,
        view,
        [
            lead(lead_id, contact=contact),
            lead(lead_id, at=DAY, type="lead.qualified"),
            *(download(2 * DAY + i, contact_id=str(contact)) for i in range(4)),
        ],
    )
    assert only(lead_scores(store, lead_id)).score == 60
    assert not only(lead_scores(store, lead_id)).sales_ready  # qualified already: no hand-over
    apply(store, view, [lead(lead_id, at=9 * DAY, type="lead.returned_to_marketing")])
    # Returned while scoring 60: a new episode, in which it must fall below the threshold and
    # climb back to be handed over again (test_lead_lifecycle.py); no decay here, so it never does.
    score = only(lead_scores(store, lead_id))
    assert not score.sales_ready and score.episode == 1


def test_a_late_event_moves_the_crossing_but_keeps_its_event_id(store: ViewStore) -> None:
    contact, lead_id = uuid.uuid4(), uuid.uuid4()
    view = LeadScores([model()])
    apply(
        store,
        view,
        [
            lead(lead_id, contact=contact),
            *(download(d * DAY, contact_id=str(contact)) for d in (2, 3, 4, 5)),
        ],
    )
    assert only(lead_scores(store, lead_id)).sales_ready_at == BASE + timedelta(days=5)
    apply(store, view, [download(DAY, contact_id=str(contact))])  # arrives late
    assert only(lead_scores(store, lead_id)).sales_ready_at == BASE + timedelta(days=4)
    with store.reading() as c:
        c.execute(f"SELECT event_id, occurred_at FROM {view.table('outbox')}")
        assert c.fetchall() == [
            (str(sales_ready_event_id("engagement", str(lead_id))), "2026-03-05T09:00:00.000000Z")
        ]


def test_workers_side_by_side_see_each_others_batches(postgres_admin: str, tmp_path: Path) -> None:
    """Two workers apply batches of two contacts of one account at once (PostgreSQL)."""
    from tests.postgres_server import fresh_database

    account, lead_id, ada, bob = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with fresh_database(postgres_admin) as dsn:
        settings = Settings(data_dir=tmp_path, postgres_dsn=SecretStr(dsn))
        with open_store(settings) as store:
            joined = [membership(ada, account, 0), membership(bob, account, 0)]
            apply(store, LeadScores([model()]), [lead(lead_id, account=account), *joined])
            first, second = LeadScores([model()]), LeadScores([model()])
            first.schema(store.dialect), second.schema(store.dialect)

            def other_worker() -> None:
                with store.transaction() as c:
                    second.apply(c, [download(2, contact_id=str(bob))])

            worker = threading.Thread(target=other_worker)
            with store.transaction() as c:
                first.apply(c, [download(1, contact_id=str(ada))])
                worker.start()
                worker.join(0.5)
                assert worker.is_alive()  # it waits for this batch
            worker.join(30)
            assert only(lead_scores(store, lead_id)).score == 30  # neither download is lost


# --------------------------------------------------------------------------- models


def test_two_models_side_by_side(store: ViewStore) -> None:
    contact, lead_id = uuid.uuid4(), uuid.uuid4()
    strict = model(name="strict", sales_ready_threshold=1000)
    signals = parse_model(
        {
            "name": "downloads",
            "version": 3,
            "sales_ready_threshold": 20,
            "grades": [{"grade": "hot", "min_score": 20}, {"grade": "cold"}],
            "rules": [{"id": "pdf", "when": {"type": "web.link_clicked"}, "points": 20}],
        }
    )
    view = LeadScores([strict, signals])
    apply(
        store,
        view,
        [lead(lead_id, contact=contact), download(1, contact_id=str(contact)), opened(contact, 2)],
    )
    scores = {s.model: s for s in lead_scores(store, lead_id)}
    assert list(scores) == ["downloads", "strict"]
    assert (scores["downloads"].score, scores["downloads"].grade) == (20, "hot")
    assert (scores["downloads"].model_version, scores["downloads"].sales_ready) == (3, True)
    assert (scores["strict"].score, scores["strict"].sales_ready) == (20, False)
    with store.reading() as c:
        c.execute(f"SELECT model FROM {view.table('outbox')}")
        assert c.fetchall() == [("downloads",)]


def test_a_changed_model_is_replayed_beside_the_live_view(store: ViewStore) -> None:
    contact, lead_id = uuid.uuid4(), uuid.uuid4()
    events = [lead(lead_id, contact=contact), download(1, contact_id=str(contact))]
    apply(store, LeadScores([model()]), events)
    changed = parse_model(
        {**ENGAGEMENT, "version": 2, "rules": [{**ENGAGEMENT["rules"][2], "points": 40}]}
    )
    with pytest.raises(ModelsChanged, match="replay"):
        apply(store, LeadScores([changed]), events)
    apply(store, LeadScores([changed], instance="lead_scores_v2"), events)
    assert only(lead_scores(store, lead_id)).score == 15
    assert only(lead_scores(store, lead_id, instance="lead_scores_v2")).score == 40


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """
name = "good"
version = 1
sales_ready_threshold = 10
grades = [{ grade = "A", min_score = 10 }, { grade = "B" }]
[[rules]]
id = "download"
points = 5
when = { type = "web.link_clicked", where = { "payload.url" = { regex = "pdf$" } } }
"""


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("points = 5", "points = 5 +"), r"not valid syntax"),
        (
            ('"payload.url"', '"payload.uri"'),
            r"rule 'download' \(rules\[0\]\), field when\.where: 'payload\.uri': no payload "
            r"field 'uri' in web\.link_clicked",
        ),
        (('"pdf$"', '"(pdf"'), r"field when\.where\.payload\.url\.regex: '\(pdf' is not a valid"),
        (("points = 5", "pointz = 5"), r"rule 'download' \(rules\[0\]\), field pointz: Extra"),
        (('"web.link_clicked"', '"web.clik*"'), r"field when\.type: 'web\.clik\*' matches no"),
        (
            (
                'min_score = 10 }, { grade = "B" }',
                'min_score = 10 }, { grade = "B", min_score = 20 }',
            ),
            r"field grades: the last grade \('B'\) must have no min_score",
        ),
        (
            ("points = 5", 'points = 5\nonce_per = "correlation.msg"'),
            r"rule 'download' \(rules\[0\]\), field once_per: 'correlation\.msg': correlation has "
            r"no field 'msg'",
        ),
    ],
)
def test_a_bad_model_file_names_the_file_the_rule_and_the_field(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    path = write(tmp_path / "scoring", "bad.toml", GOOD.replace(*change))
    with pytest.raises(ScoringModelError, match=expected) as caught:
        load_models(path.parent)
    assert str(caught.value).startswith(f"{path}: invalid scoring model")


def test_models_load_from_toml_and_yaml_and_names_are_unique(tmp_path: Path) -> None:
    folder = tmp_path / "scoring"
    write(folder, "a.toml", GOOD)
    yaml_text = "name: other\nversion: 2\nsales_ready_threshold: 5\ngrades: [{grade: X}]\n"
    write(folder, "b.yaml", yaml_text + "rules: [{id: r, points: 1, when: {type: 'email.*'}}]\n")
    assert [m.name for m in load_models(folder)] == ["good", "other"]
    duplicate = write(folder, "c.toml", GOOD)
    with pytest.raises(ScoringModelError, match=rf"(?s){duplicate}.*also defined in .*a\.toml"):
        load_models(folder)


def test_the_shipped_models_are_valid_and_recorded_with_the_view() -> None:
    settings = Settings()
    models = load_models(models_folder(settings))
    assert {"marketing-engagement", "sales-signals"} <= {m.name for m in models}
    definition = LeadScores.default_definition(settings)
    view = LeadScores.from_definition("lead_scores_v9", definition, settings)
    assert (list(view.models.values()), view.instance) == (models, "lead_scores_v9")
    texts = dict(definition["models"])
    texts["sales-signals.toml"] = texts["sales-signals.toml"].replace("version = 1", "version = 2")
    changed = LeadScores.from_definition("lead_scores_v10", {"models": texts}, settings)
    assert changed.models["sales-signals"].version == 2


# --------------------------------------------------------------------------- order


def crowded_world(rng: random.Random) -> list[InteractionEvent]:
    """Leads of contacts and accounts whose scores cross thresholds, drop and cross again, with
    memberships that change, visitors identified (one twice), a merge and lead status changes."""
    contacts = [uuid.uuid4() for _ in range(12)]
    accounts = [uuid.uuid4() for _ in range(3)]

    def moment() -> int:
        return rng.randrange(60 * DAY)

    events = []
    for c in contacts[:9]:
        account = rng.choice(accounts)
        events.append(membership(c, account, moment()))
        if rng.random() < 0.3:
            events.append(membership(c, account, moment(), joined=False))
    leads = [lead(uuid.uuid4(), moment(), contact=c) for c in contacts[:6]]
    leads += [lead(uuid.uuid4(), moment(), account=a) for a in accounts]
    leads.append(lead(uuid.uuid4(), moment()))
    events += leads
    for created in leads:
        lead_id = uuid.UUID(str(created.subject.lead_id))
        for status in rng.sample(
            ["lead.qualified", "lead.returned_to_marketing"], rng.randint(0, 2)
        ):
            events.append(lead(lead_id, moment(), type=status))
    messages = [f"m{i}" for i in range(25)]
    for _ in range(350):
        c, at, kind = rng.choice(contacts), moment(), rng.randrange(5)
        if kind == 0:
            events.append(opened(c, at, rng.choice(messages)))
        elif kind == 1:
            events.append(pricing(c, at, seconds=rng.choice([10, 40, 90])))
        elif kind == 2:
            events.append(download(at, contact_id=str(c)))
        elif kind == 3:
            events.append(download(at, anonymous_id=f"visitor-{rng.randrange(3)}"))
        else:
            events.append(unsubscribed(c, at))
    for i, c in enumerate(contacts[:4]):
        link = {"anonymous_id": f"visitor-{i % 3}", "contact_id": str(c)}
        events.append(event(type="identity.linked", contact=c, at=moment(), payload=link))
    merge = {"merged_contact_id": str(contacts[10])}
    events.append(event(type="contact.merged", contact=contacts[0], at=moment(), payload=merge))
    return events


def test_same_rows_in_any_order_and_batching_with_duplicates(
    log: EventLog, store: ViewStore
) -> None:
    rng = random.Random(11)
    low_bar = model(name="low-bar", sales_ready_threshold=30, decay={"half_life_days": 10})
    models = [*load_models(models_folder(Settings())), model(), low_bar]
    demo_end = datetime(2026, 1, 1, tzinfo=UTC)
    events = list(demo.generate(40, seed=3, end=demo_end, days=120)) + crowded_world(rng)
    live = LeadScores(models)
    log.publish(events)
    ProjectionRunner(log, store, [live], batch_size=300).run(follow=False)
    expected = view_checksum(store, live)
    with store.reading() as c:
        c.execute(f"SELECT count(*) FROM {live.table('outbox')}")
        assert c.fetchone()[0] >= 5  # enough crossings for their order to matter
    for i in range(3):
        shuffled = events + rng.sample(events, len(events) // 10)  # duplicates too
        rng.shuffle(shuffled)
        cuts = sorted(rng.sample(range(1, len(shuffled)), 15))
        batches = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(shuffled)], strict=True)]
        shadow = LeadScores(models, instance=f"lead_scores_s{i}")
        apply(store, shadow, *batches, batches[0])  # and a batch redelivered at the end
        assert view_checksum(store, shadow) == expected, f"shuffle {i}"
