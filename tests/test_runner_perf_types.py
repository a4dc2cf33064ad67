"""Records of types no view of a runner wants are passed over without decoding: the views
are the same as without the filter, positions still advance over them, and a record whose
log type disagrees with its value is decoded as usual. SQLite and PostgreSQL views."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest

from interaction_store import demo
from interaction_store.codec import encode
from interaction_store.events import EVENT_TYPES, InteractionEvent
from interaction_store.log import EventLog, open_log
from interaction_store.log.base import TYPE_HEADER
from interaction_store.projection import Projection, ProjectionRunner, view_checksum
from interaction_store.projection.registry import KINDS, ViewInfo, build, default_definition
from interaction_store.projection.timeline import Timeline
from interaction_store.settings import Settings
from interaction_store.views import ViewStore, open_store
from tests.test_log_behaviour import read_all

EVENTS: list[InteractionEvent] = list(
    demo.generate(25, seed=5, end=datetime(2026, 10, 1, tzinfo=UTC), days=150)
)


@pytest.fixture
def log(view_settings: Settings) -> Iterator[EventLog]:
    with open_log(view_settings) as log:
        yield log


@pytest.fixture
def store(view_settings: Settings) -> Iterator[ViewStore]:
    with open_store(view_settings) as store:
        yield store


def view(kind: str, instance: str, settings: Settings) -> Projection:
    info = ViewInfo(instance, kind, "shadow", default_definition(kind, settings), None, "", None)
    return build(info, settings)


# The subjects index takes every type (it locates every event about a person): no filter.
@pytest.mark.parametrize("kind", sorted(set(KINDS) - {"subjects"}))
def test_a_view_with_a_type_filter_equals_one_without(
    kind: str, log: EventLog, store: ViewStore, view_settings: Settings
) -> None:
    log.publish(EVENTS)
    filtered = view(kind, f"{kind}_filtered", view_settings)
    assert filtered.event_types is not None and filtered.event_types < set(EVENT_TYPES)
    unfiltered = view(kind, f"{kind}_all", view_settings)
    unfiltered.event_types = None  # decode everything, as before the filter existed

    skipping = ProjectionRunner(log, store, [filtered], batch_size=97)
    stats = skipping.run(follow=False)
    decoding = ProjectionRunner(log, store, [unfiltered], batch_size=97)
    assert decoding.run(follow=False).skipped == 0

    assert stats.skipped > 0
    assert view_checksum(store, filtered) == view_checksum(store, unfiltered)
    # Skipped records count as done: nothing is left to read, and a restart reads nothing.
    assert set(skipping.lag().values()) == {0}
    again = ProjectionRunner(log, store, [view(kind, f"{kind}_filtered", view_settings)])
    assert again.run(follow=False).batches == 0


def test_every_view_together_skips_nothing(log: EventLog, store: ViewStore) -> None:
    settings = log.settings
    views = [view(kind, kind, settings) for kind in sorted(KINDS)]
    log.publish(EVENTS)
    stats = ProjectionRunner(log, store, views).run(follow=False)
    assert stats.skipped == 0 and stats.rejected == 0


def test_a_filtered_runner_still_dead_letters_what_it_wants(
    log: EventLog, store: ViewStore, view_settings: Settings
) -> None:
    from interaction_store.log.embedded import EmbeddedLog

    assert isinstance(log, EmbeddedLog)
    bad = orjson.dumps({"event_id": str(uuid.uuid4()), "type": "email.opened"})
    topic = log.catalog.by_name("interactions").name
    with log.datastore.transaction(commit=True) as c:
        log.recorders[topic].append(c, [(uuid.uuid4().bytes, "email.opened", bad)])
    timeline = view("timeline", "timeline", view_settings)
    stats = ProjectionRunner(log, store, [timeline]).run(follow=False)
    assert stats.rejected == 1
    [dead] = read_all(log, log.catalog.dead_letter.name)
    assert dead.value == bad


def test_a_kafka_record_whose_header_disagrees_is_decoded(kafka_settings: Settings) -> None:
    """The type header is only a hint: a value of another type is decoded and applied, and
    one that breaks the contract is dead-lettered."""
    [opened] = [e for e in EVENTS if e.type == "email.opened"][:1]
    with open_log(kafka_settings) as log, open_store(kafka_settings) as store:
        from interaction_store.log.kafka import KafkaLog

        assert isinstance(log, KafkaLog)
        topic = log.catalog.by_name("interactions").name
        bad = orjson.dumps({"event_id": str(uuid.uuid4()), "type": "email.opened"})
        liar = (TYPE_HEADER, b"consent.level_changed")
        from interaction_store.log.kafka_producer import Send

        # Straight to the topic (one transaction), past the store's validation.
        log.publisher.send(
            [
                Send(topic, encode(opened), b"k", None, [liar]),
                Send(topic, bad, b"k", None, [(TYPE_HEADER, b"email.opened")]),
            ],
            "two raw records",
        )
        timeline = Timeline()
        stats = ProjectionRunner(log, store, [timeline]).run(follow=False)
        assert stats.skipped == 0 and stats.rejected == 1
        with store.reading() as c:
            c.execute(f"SELECT event_id FROM {timeline.table('entries')}")
            assert c.fetchall() == [(str(opened.event_id),)]
        [dead] = read_all(log, log.catalog.dead_letter.name)
        assert dead.value == bad
