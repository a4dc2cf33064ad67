"""One behaviour, two backends: every log passes the same cases (embedded and real Kafka)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from interaction_store.events import InteractionEvent
from interaction_store.log import DeadLetter, EventLog, LogRecord, Position, open_log
from interaction_store.settings import Settings
from tests.factories import event


def read_all(log: EventLog, topic: str) -> list[LogRecord]:
    out: list[LogRecord] = []
    for partition, end in sorted(log.end_offsets(topic).items()):
        offset = 0
        while offset < end:
            records = log.read(topic, partition, offset, 5000)
            if not records:
                break  # only offsets without a readable record left: transaction markers, aborts
            out.extend(records)
            offset = records[-1].position.offset + 1
    return out


class LogBehaviour:
    """The contract of :class:`EventLog`; subclasses provide ``settings``."""

    @pytest.fixture
    def settings(self) -> Settings:
        raise NotImplementedError

    @pytest.fixture
    def log(self, settings: Settings) -> Iterator[EventLog]:
        with open_log(settings) as log:
            yield log

    def interactions(self, log: EventLog) -> str:
        return log.catalog.by_name("interactions").name

    def test_publish_returns_positions_in_input_order(self, log: EventLog) -> None:
        events = [event(type="email.sent"), event(type="contact.created"), event()]
        appended = log.publish(events)
        assert [a.event_id for a in appended] == [e.event_id for e in events]
        assert not any(a.duplicate for a in appended)
        assert appended[0].position.topic == self.interactions(log)
        assert appended[1].position.topic == log.catalog.by_name("profiles").name
        by_position = {
            r.position: r.event() for t in log.catalog.event_topics for r in read_all(log, t.name)
        }
        for a, e in zip(appended, events, strict=True):
            assert by_position[a.position] == e

    def test_one_contacts_events_keep_their_order(self, log: EventLog) -> None:
        contacts = [uuid.uuid4() for _ in range(20)]
        events = [event(contact=contacts[i % 20], at=i) for i in range(400)]
        log.publish(events[:200])
        log.publish(events[200:])
        records = read_all(log, self.interactions(log))
        seen: dict[str, list[uuid.UUID]] = defaultdict(list)
        partitions_of: dict[str, set[int]] = defaultdict(set)
        for r in records:
            assert r.key is not None
            seen[r.key].append(r.event().event_id)
            partitions_of[r.key].add(r.position.partition)
        for contact in contacts:
            expected = [e.event_id for e in events if e.subject.contact_id == contact]
            assert seen[str(contact)] == expected
            assert len(partitions_of[str(contact)]) == 1

    def test_positions_increase_within_a_partition(self, log: EventLog) -> None:
        appended = log.publish([event(at=i) for i in range(300)])
        last: dict[int, int] = {}
        for a in appended:
            assert a.position.offset > last.get(a.position.partition, -1)
            last[a.position.partition] = a.position.offset
        # At least one offset per record (Kafka's transaction markers take offsets too).
        ends = log.end_offsets(self.interactions(log))
        assert sum(ends.values()) >= 300
        assert len(read_all(log, self.interactions(log))) == 300

    def test_resume_from_a_position(self, log: EventLog) -> None:
        contact = uuid.uuid4()
        appended = log.publish([event(contact=contact, at=i) for i in range(50)])
        partition = appended[0].position.partition
        middle = appended[20].position.offset
        records = log.read(self.interactions(log), partition, middle, limit=10)
        assert [r.position.offset for r in records] == list(range(middle, middle + 10))
        assert [r.event().event_id for r in records] == [a.event_id for a in appended[20:30]]

    def test_duplicate_event_ids_are_not_stored_twice(self, log: EventLog) -> None:
        first = [event(at=i) for i in range(10)]
        appended = log.publish(first)
        again = log.publish([first[3], event(), first[3], first[7]])
        assert [a.duplicate for a in again] == [True, False, True, True]
        assert again[0].position == appended[3].position
        assert again[3].position == appended[7].position
        within = event()
        twice = log.publish([within, within])
        assert [a.duplicate for a in twice] == [False, True]
        assert twice[0].position == twice[1].position
        ids = [r.event().event_id for r in read_all(log, self.interactions(log))]
        assert len(ids) == len(set(ids)) == 12

    def test_dead_letters_keep_reason_and_original_bytes(self, log: EventLog) -> None:
        bad = b'{"type": "email.opened", "event_id": "nope"}\xff'
        [pos] = log.dead_letter([DeadLetter(bad, "event_id='nope': not a UUID", "file.jsonl:3")])
        [record] = read_all(log, log.catalog.dead_letter.name)
        assert record.position == pos
        assert record.value == bad
        assert record.headers["istore.reason"] == "event_id='nope': not a UUID"
        assert record.headers["istore.source"] == "file.jsonl:3"

    def test_follow_sees_events_published_later(self, log: EventLog) -> None:
        log.publish([event(at=i) for i in range(5)])
        got: list[LogRecord] = []
        stop = threading.Event()
        later = [event(at=100 + i) for i in range(5)]

        def publisher() -> None:
            time.sleep(0.5)
            log.publish(later)

        threading.Thread(target=publisher).start()
        deadline = time.monotonic() + 30
        for batch in log.follow(topics=[self.interactions(log)], until=stop.is_set):
            got.extend(batch)
            if len(got) >= 10 or time.monotonic() > deadline:
                stop.set()
        assert {r.event().event_id for r in got} >= {e.event_id for e in later}
        assert len(got) == 10

    def test_follow_resumes_from_positions(self, log: EventLog) -> None:
        appended = log.publish([event(contact=uuid.uuid4(), at=i) for i in range(30)])
        topic = self.interactions(log)
        start = {(topic, p): 0 for p in log.partitions(topic)}
        for a in appended[:12]:
            start[(topic, a.position.partition)] = max(
                start[(topic, a.position.partition)], a.position.offset + 1
            )
        got: list[LogRecord] = []
        deadline = time.monotonic() + 30
        for batch in log.follow(
            start, [topic], until=lambda: len(got) >= 18 or time.monotonic() > deadline
        ):
            got.extend(batch)
        skipped = {a.event_id for a in appended[:12]}
        later = {a.event_id for a in appended[12:]}
        ids = {r.event().event_id for r in got}
        # Everything after each partition's resume point, nothing before it.
        assert later <= ids | skipped
        assert all(r.position.offset >= start[(topic, r.position.partition)] for r in got)

    def test_publishers_at_the_same_time_lose_nothing(self, settings: Settings) -> None:
        # An ingest API and a projection worker's outbox publish into the same log at once,
        # each with its own connection; the same ids come through both.
        shared = [event() for _ in range(50)]
        batches = [[*shared[i::4], *(event() for _ in range(100))] for i in range(4)]
        errors: list[BaseException] = []
        positions: list[Position] = []
        lock = threading.Lock()

        def publish(mine: list[list[InteractionEvent]]) -> None:
            try:
                with open_log(settings) as own:
                    for batch in mine:
                        for _ in range(3):  # the same batch again: all duplicates
                            appended = own.publish(batch)
                            with lock:
                                positions.extend(a.position for a in appended if not a.duplicate)
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=publish, args=([b, b[::-1]],)) for b in batches]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        expected = {e.event_id for b in batches for e in b}
        assert len(positions) == len(set(positions)) == len(expected)
        with open_log(settings) as log:
            stored = [
                r.event().event_id for t in log.catalog.event_topics for r in read_all(log, t.name)
            ]
        assert sorted(map(str, stored)) == sorted(map(str, expected))

    def test_a_batch_of_100000_events(self, log: EventLog) -> None:
        contacts = [uuid.uuid4() for _ in range(1000)]
        events = [event(contact=contacts[i % 1000], at=i) for i in range(100_000)]
        appended = log.publish(events)
        assert len({a.position for a in appended}) == 100_000
        assert sum(log.end_offsets(self.interactions(log)).values()) >= 100_000
        records = read_all(log, self.interactions(log))
        assert len(records) == 100_000
        assert {r.value for r in records[:1]} <= {records[0].value}

    def test_restart_in_the_middle(self, settings: Settings) -> None:
        events = [event(at=i) for i in range(200)]
        with open_log(settings) as first:
            before = first.publish(events[:120])
        with open_log(settings) as second:
            # The publisher died after 120 and sends the whole batch again on restart.
            after = second.publish(events)
            assert [a.duplicate for a in after] == [True] * 120 + [False] * 80
            assert [a.position for a in after[:120]] == [a.position for a in before]
            records = read_all(second, self.interactions(second))
        assert sorted(r.event().event_id.hex for r in records) == sorted(
            e.event_id.hex for e in events
        )

    def test_reading_an_unknown_topic_says_so(self, log: EventLog) -> None:
        with pytest.raises(Exception, match="no-such-topic"):
            log.end_offsets("no-such-topic")

    def test_positions_print_readably(self) -> None:
        assert str(Position("t", 2, 7)) == "t/2@7"


class TestEmbeddedLog(LogBehaviour):
    @pytest.fixture
    def settings(self, embedded_settings: Settings) -> Settings:
        return embedded_settings

    def test_everything_lives_in_one_file_of_the_data_folder(
        self, log: EventLog, settings: Settings
    ) -> None:
        log.publish([event()])
        assert [p.name for p in settings.data_dir.iterdir() if p.suffix == ".sqlite"] == [
            "log.sqlite"
        ]


@pytest.mark.kafka
class TestKafkaLog(LogBehaviour):
    @pytest.fixture
    def settings(self, kafka_settings: Settings) -> Settings:
        return kafka_settings

    def test_consumer_group_reads_every_event_once(self, log: EventLog) -> None:
        from interaction_store.log.kafka import KafkaLog

        assert isinstance(log, KafkaLog)
        appended = log.publish([event(contact=uuid.uuid4(), at=i) for i in range(60)])
        got: list[LogRecord] = []
        assigned: list[list[tuple[str, int]]] = []

        def on_assigned(parts: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
            assigned.append(parts)
            return {}

        deadline = time.monotonic() + 60
        for batch in log.follow_group(
            f"g-{uuid.uuid4().hex[:8]}",
            [self.interactions(log)],
            on_assigned=on_assigned,
            until=lambda: len(got) >= 60 or time.monotonic() > deadline,
        ):
            got.extend(batch)
        assert sorted(r.event().event_id.hex for r in got) == sorted(
            a.event_id.hex for a in appended
        )
        assert assigned and len(assigned[0]) == log.catalog.by_name("interactions").partitions

    def test_group_resumes_where_the_views_say(self, log: EventLog) -> None:
        from interaction_store.log.kafka import KafkaLog

        assert isinstance(log, KafkaLog)
        topic = self.interactions(log)
        appended = log.publish([event(contact=uuid.uuid4(), at=i) for i in range(40)])
        tracked = {(topic, p): end for p, end in log.end_offsets(topic).items()}
        later = log.publish([event(contact=uuid.uuid4(), at=100 + i) for i in range(10)])
        got: list[LogRecord] = []
        deadline = time.monotonic() + 60
        for batch in log.follow_group(
            f"g-{uuid.uuid4().hex[:8]}",
            [topic],
            on_assigned=lambda parts: {p: tracked[p] for p in parts},
            until=lambda: len(got) >= 10 or time.monotonic() > deadline,
        ):
            got.extend(batch)
        assert sorted(r.event().event_id.hex for r in got) == sorted(a.event_id.hex for a in later)
        assert not {a.event_id for a in appended} & {r.event().event_id for r in got}

    def test_existing_topic_with_other_partitions_fails_clearly(self, settings: Settings) -> None:
        from interaction_store.log import LogError

        other = settings.model_copy(update={"partitions": {"interactions": 2}})
        with (
            open_log(other) as log,
            pytest.raises(LogError, match="has 6 partitions on the broker, the catalog says 2"),
        ):
            log.ensure_topics()


def test_many_opening_a_fresh_embedded_store_at_once(tmp_path: Path) -> None:
    from interaction_store.views import open_store

    errors: list[BaseException] = []
    for n in range(5):
        settings = Settings(backend="embedded", data_dir=tmp_path / str(n))

        def open_both(settings: Settings = settings) -> None:
            try:
                with open_log(settings) as log, open_store(settings):
                    log.publish([event()])
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=open_both) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == []
