"""The runner: views and positions in one transaction, redeliveries change nothing, poison
events are set aside, a rejected record goes to the dead-letter topic. SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence

import orjson
import pytest

from interaction_store.events import InteractionEvent
from interaction_store.log import EventLog, open_log
from interaction_store.projection import Projection, ProjectionRunner, view_checksum
from interaction_store.projection.profiles import Profiles
from interaction_store.projection.runner import dead_letters, retry_dead_letters
from interaction_store.settings import Settings
from interaction_store.views import Cursor, ViewStore, open_store
from tests.factories import event
from tests.test_log_behaviour import read_all


@pytest.fixture
def log(view_settings: Settings) -> Iterator[EventLog]:
    with open_log(view_settings) as log:
        yield log


@pytest.fixture
def store(view_settings: Settings) -> Iterator[ViewStore]:
    with open_store(view_settings) as store:
        yield store


class Counter(Projection):
    """Counts events per contact; fails on events whose source is 'poison'."""

    kind = "counter"
    fail_sources: tuple[str, ...] = ("poison",)

    @property
    def tables(self) -> dict[str, str]:
        return {"seen": "event_id TEXT PRIMARY KEY, contact_id TEXT NOT NULL"}

    def apply(self, cursor: Cursor, events: Sequence[InteractionEvent]) -> None:
        for e in events:
            if e.source in self.fail_sources:
                raise RuntimeError(f"cannot count {e.event_id}")
        cursor.executemany(
            f"INSERT INTO {self.table('seen')} VALUES (%s, %s) ON CONFLICT (event_id) DO NOTHING",
            [(str(e.event_id), str(e.subject.contact_id)) for e in events],
        )

    def count(self, store: ViewStore) -> int:
        with store.reading() as c:
            c.execute(f"SELECT COUNT(*) FROM {self.table('seen')}")
            return int(c.fetchone()[0])


def test_views_and_positions_advance_together(log: EventLog, store: ViewStore) -> None:
    counter = Counter()
    log.publish([event(at=i) for i in range(250)])
    runner = ProjectionRunner(log, store, [counter], batch_size=100)
    stats = runner.run(follow=False)
    assert counter.count(store) == 250
    assert stats.applied == 250 and stats.batches >= 3
    topic = log.catalog.by_name("interactions").name
    assert store.tracked("counter", [(topic, 0)]) == {(topic, 0): 249}
    assert runner.lag() == {(t, p): 0 for (t, p) in runner.partitions()}


def test_a_redelivered_batch_changes_nothing(log: EventLog, store: ViewStore) -> None:
    counter = Counter()
    log.publish([event(at=i) for i in range(40)])
    runner = ProjectionRunner(log, store, [counter])
    runner.run(follow=False)
    before = view_checksum(store, counter)
    topic = log.catalog.by_name("interactions").name
    records = log.read(topic, 0, 10, 20)
    # A fresh runner (a restarted worker) handed old records again, as Kafka may do.
    again = ProjectionRunner(log, store, [counter])
    again.load_positions()
    again.process(records)
    assert again.stats.redelivered == 20 and again.stats.applied == 0
    assert view_checksum(store, counter) == before
    # Even with its memory of positions wiped, the tracking recorder refuses to go back.
    blind = ProjectionRunner(log, store, [counter], max_attempts=1)
    with pytest.raises(Exception, match=r"(?i)tracking"):
        blind._apply(records, [(r, r.event()) for r in records], one_by_one=False)
    assert view_checksum(store, counter) == before


def test_a_poison_event_is_set_aside_and_can_be_retried(log: EventLog, store: ViewStore) -> None:
    counter = Counter()
    good = [event(at=i) for i in range(10)]
    poison = event(at=5, source="poison")
    log.publish([*good[:5], poison, *good[5:]])
    runner = ProjectionRunner(log, store, [counter], max_attempts=2)
    stats = runner.run(follow=False)
    assert counter.count(store) == 10
    assert stats.dead_lettered == 1
    [letter] = dead_letters(store)
    assert letter["event_id"] == str(poison.event_id)
    assert "cannot count" in str(letter["error"])
    # The projection is fixed; retry applies it and resolves the letter.
    counter.fail_sources = ()
    assert retry_dead_letters(store, [counter]) == (1, 0)
    assert counter.count(store) == 11
    assert dead_letters(store) == []


def test_a_record_breaking_the_contract_goes_to_the_dead_letter_topic(
    log: EventLog, store: ViewStore
) -> None:
    # Something published straight to the topic without validating against the schema.
    from interaction_store.log.embedded import EmbeddedLog

    assert isinstance(log, EmbeddedLog)
    bad = orjson.dumps({"event_id": str(uuid.uuid4()), "type": "email.opened"})
    topic = log.catalog.by_name("interactions").name
    with log.datastore.transaction(commit=True) as c:
        log.recorders[topic].append(c, [(uuid.uuid4().bytes, "email.opened", bad)])
    log.publish([event(at=1)])
    counter = Counter()
    stats = ProjectionRunner(log, store, [counter]).run(follow=False)
    assert stats.rejected == 1 and counter.count(store) == 1
    [dead] = read_all(log, log.catalog.dead_letter.name)
    assert dead.value == bad and "schema_version" in dead.headers["istore.reason"]


def test_profiles_are_the_same_in_any_order(log: EventLog, store: ViewStore) -> None:
    contact, account, lead = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    events = [
        event(
            type="contact.created",
            contact=contact,
            at=0,
            payload={"first_name": "Ada", "email": "ada@example.com"},
        ),
        event(type="contact.updated", contact=contact, at=5, payload={"email": "ada@new.example"}),
        event(
            type="account.created",
            contact=contact,
            at=1,
            subject={"contact_id": str(contact), "account_id": str(account)},
            payload={"name": "Contoso"},
        ),
        event(
            type="contact.joined_account",
            contact=contact,
            at=2,
            payload={"account_id": str(account)},
        ),
        event(
            type="lead.created",
            at=3,
            subject={"lead_id": str(lead)},
            payload={"parent_account_id": str(account), "topic": "CRM"},
        ),
        event(type="lead.qualified", at=9, subject={"lead_id": str(lead)}, payload={}),
    ]
    # Newest first: the fold must still end with the newest email and a qualified lead.
    log.publish(list(reversed(events)))
    profiles = Profiles()
    ProjectionRunner(log, store, [profiles], batch_size=2).run(follow=False)
    with store.reading() as c:
        c.execute(f"SELECT first_name, email FROM {profiles.table('contacts')}")
        assert c.fetchall() == [("Ada", "ada@new.example")]
        c.execute(f"SELECT status, parent_account_id FROM {profiles.table('leads')}")
        assert c.fetchall() == [("qualified", str(account))]
        c.execute(f"SELECT contact_id, member FROM {profiles.table('members')}")
        assert [(r[0], bool(r[1])) for r in c.fetchall()] == [(str(contact), True)]
    live = view_checksum(store, profiles)
    shadow = Profiles("profiles_check")
    ProjectionRunner(log, store, [shadow]).run(follow=False)
    assert view_checksum(store, shadow) == live
