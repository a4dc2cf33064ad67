"""The Kafka log: kafka-python clients, an idempotent acks=all producer keyed by contact.

Kafka itself cannot refuse a repeated event id, so publishing consults an event-id index (a
SQLite file in the data folder) and records each id with its position once the broker has
acknowledged it. The index is a convenience for publishers on one host; views stay correct
either way because projections skip event ids they have applied.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError

from interaction_store.catalog import StreamCatalog, TopicSpec
from interaction_store.codec import encode
from interaction_store.events import InteractionEvent
from interaction_store.log.base import (
    Appended,
    DeadLetter,
    EventLog,
    LogError,
    LogRecord,
    Position,
)
from interaction_store.settings import Settings

TYPE_HEADER = "istore.type"


class EventIdIndex:
    """Event ids already on the broker, with their positions (one SQLite file per cluster)."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS event_ids (event_id TEXT PRIMARY KEY, topic TEXT, "
            "partition INTEGER, offset INTEGER) WITHOUT ROWID"
        )

    def find(self, event_ids: Sequence[UUID]) -> dict[UUID, Position]:
        found: dict[UUID, Position] = {}
        for i in range(0, len(event_ids), 500):
            chunk = [e.hex for e in event_ids[i : i + 500]]
            rows = self.db.execute(
                "SELECT event_id, topic, partition, offset FROM event_ids "
                f"WHERE event_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for eid, topic, partition, offset in rows:
                found[UUID(eid)] = Position(topic, partition, offset)
        return found

    def record(self, entries: Sequence[tuple[UUID, Position]]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR IGNORE INTO event_ids VALUES (?, ?, ?, ?)",
                [(e.hex, p.topic, p.partition, p.offset) for e, p in entries],
            )

    def close(self) -> None:
        self.db.close()


class KafkaLog(EventLog):
    """The production log on Apache Kafka."""

    def __init__(self, settings: Settings, catalog: StreamCatalog | None = None) -> None:
        super().__init__(settings, catalog)
        self.config = settings.kafka_client_config()
        self._producer: KafkaProducer | None = None
        self._reader: KafkaConsumer | None = None
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        cluster = hashlib.sha256(
            f"{settings.kafka_bootstrap_servers}|{settings.topic_prefix}".encode()
        ).hexdigest()[:12]
        self.index = EventIdIndex(str(settings.data_dir / f"kafka-event-ids-{cluster}.sqlite"))

    # ----------------------------------------------------------------- clients

    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None:
            try:
                self._producer = KafkaProducer(
                    **self.config,
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=5,
                    batch_size=512 * 1024,
                    max_request_size=8 * 1024 * 1024,
                )
            except KafkaError as exc:
                raise self._unreachable(exc) from exc
        return self._producer

    @property
    def reader(self) -> KafkaConsumer:
        if self._reader is None:
            try:
                self._reader = KafkaConsumer(
                    **self.config,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    consumer_timeout_ms=1000,
                )
            except KafkaError as exc:
                raise self._unreachable(exc) from exc
        return self._reader

    def _unreachable(self, exc: Exception) -> LogError:
        return LogError(
            f"cannot reach Kafka at {self.settings.kafka_bootstrap_servers}: {exc}. "
            "Is the broker running? (`istore kafka status`)"
        )

    def admin(self) -> KafkaAdminClient:
        try:
            return KafkaAdminClient(**self.config)
        except KafkaError as exc:
            raise self._unreachable(exc) from exc

    # ----------------------------------------------------------------- topics

    def ensure_topics(self) -> list[str]:
        """Create the catalog's missing topics; fail if an existing one has other partitions."""
        admin = self.admin()
        try:
            existing = {t["name"]: t for t in admin.describe_topics()}
            wrong = []
            for spec in self.catalog.topics.values():
                if spec.name in existing:
                    have = len(existing[spec.name]["partitions"])
                    if have != spec.partitions:
                        wrong.append(
                            f"{spec.name} has {have} partitions on the broker, "
                            f"the catalog says {spec.partitions}"
                        )
            if wrong:
                raise LogError(
                    "topic partition counts differ: "
                    + "; ".join(wrong)
                    + ". Change the catalog (or ISTORE_PARTITIONS) to match, or recreate the "
                    "topic: repartitioning would break per-contact ordering."
                )
            missing = [s for s in self.catalog.topics.values() if s.name not in existing]
            if missing:
                admin.create_topics(
                    {s.name: _new_topic(s, self.settings) for s in missing},
                    wait_for_metadata=True,
                )
            return [s.name for s in missing]
        finally:
            admin.close()

    def partitions(self, topic: str) -> list[int]:
        # A topic created a moment ago may take a few metadata refreshes to show up.
        deadline = time.monotonic() + 5
        while True:
            parts = self.reader.partitions_for_topic(topic)
            if parts:
                return sorted(parts)
            if time.monotonic() > deadline:
                raise LogError(
                    f"topic {topic!r} does not exist on {self.settings.kafka_bootstrap_servers}: "
                    "run `istore topics ensure`"
                )
            time.sleep(0.2)

    def end_offsets(self, topic: str) -> dict[int, int]:
        tps = [TopicPartition(topic, p) for p in self.partitions(topic)]
        ends: dict[TopicPartition, int] = self.reader.end_offsets(tps)
        return {tp.partition: off for tp, off in ends.items()}

    # ----------------------------------------------------------------- writing

    def publish(
        self, events: Sequence[InteractionEvent], recorded_at: datetime | None = None
    ) -> list[Appended]:
        known = self.index.find([e.event_id for e in events])
        producer = self.producer
        sends: dict[UUID, Any] = {}
        for event in events:
            if event.event_id in known or event.event_id in sends:
                continue
            topic = self.catalog.topic_for(event.type).name
            sends[event.event_id] = producer.send(
                topic,
                value=encode(event, recorded_at),
                key=event.key.encode(),
                headers=[(TYPE_HEADER, event.type.encode())],
            )
        producer.flush()
        new: dict[UUID, Position] = {}
        failures = []
        for event_id, future in sends.items():
            try:
                meta = future.get(timeout=0)
            except KafkaError as exc:
                failures.append(f"{event_id}: {exc}")
                continue
            new[event_id] = Position(meta.topic, meta.partition, meta.offset)
        self.index.record(list(new.items()))
        if failures:
            raise LogError(
                f"{len(failures)} of {len(sends)} events were not acknowledged by Kafka "
                f"(first: {failures[0]}); the others were stored. Publishing the batch again is "
                "safe: stored ones are reported as duplicates."
            )
        out = []
        for event in events:
            if event.event_id in known:
                out.append(Appended(event.event_id, known[event.event_id], True))
            else:
                first = new.pop(event.event_id, None)
                if first is not None:
                    out.append(Appended(event.event_id, first, False))
                else:  # a repeat inside this batch
                    pos = next(a.position for a in out if a.event_id == event.event_id)
                    out.append(Appended(event.event_id, pos, True))
        return out

    def dead_letter(self, letters: Sequence[DeadLetter]) -> list[Position]:
        topic = self.catalog.dead_letter.name
        futures = [
            self.producer.send(
                topic,
                value=letter.original,
                headers=[(k, v.encode()) for k, v in letter.headers().items()],
            )
            for letter in letters
        ]
        self.producer.flush()
        out = []
        for future in futures:
            meta = future.get(timeout=0)
            out.append(Position(meta.topic, meta.partition, meta.offset))
        return out

    # ----------------------------------------------------------------- reading

    def read(self, topic: str, partition: int, offset: int, limit: int = 1000) -> list[LogRecord]:
        if offset < 0:
            raise LogError(f"offset must be >= 0, got {offset}")
        tp = TopicPartition(topic, partition)
        end = self.end_offsets(topic).get(partition)
        if end is None:
            raise LogError(f"topic {topic} has no partition {partition}")
        consumer = self.reader
        consumer.assign([tp])
        consumer.seek(tp, offset)
        out: list[LogRecord] = []
        stop = min(end, offset + limit)
        deadline = time.monotonic() + 30
        while consumer.position(tp) < stop and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500, max_records=stop - offset).values():
                out.extend(_record(r) for r in records if r.offset < stop)
        return out[:limit]

    def follow(
        self,
        start: Mapping[tuple[str, int], int] | None = None,
        topics: Sequence[str] | None = None,
        *,
        batch_size: int = 1000,
        idle_sleep: float = 0.2,
        until: Callable[[], bool] = lambda: False,
    ) -> Iterator[list[LogRecord]]:
        names = list(topics) if topics is not None else [t.name for t in self.catalog.event_topics]
        consumer = KafkaConsumer(
            **self.config, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        try:
            tps = [TopicPartition(t, p) for t in names for p in self.partitions(t)]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, (start or {}).get((tp.topic, tp.partition), 0))
            while not until():
                polled = consumer.poll(timeout_ms=int(idle_sleep * 1000), max_records=batch_size)
                yield [_record(r) for records in polled.values() for r in records]
        finally:
            consumer.close()

    def follow_group(
        self,
        group_id: str,
        topics: Sequence[str] | None = None,
        *,
        on_assigned: Callable[[list[tuple[str, int]]], Mapping[tuple[str, int], int]] | None = None,
        batch_size: int = 1000,
        poll_timeout: float = 0.2,
        until: Callable[[], bool] = lambda: False,
    ) -> Iterator[list[LogRecord]]:
        """Batches as a member of a consumer group. On each assignment ``on_assigned`` may
        return the positions to resume from (those tracked with the views); committed group
        offsets are only a convenience, written after each batch is handed over."""
        names = list(topics) if topics is not None else [t.name for t in self.catalog.event_topics]
        consumer = KafkaConsumer(
            **self.config,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped library
            def on_partitions_revoked(self, revoked: Any) -> None:
                pass

            def on_partitions_assigned(self, assigned: Any) -> None:
                if on_assigned is None:
                    return
                wanted = on_assigned([(tp.topic, tp.partition) for tp in assigned])
                for tp in assigned:
                    if (tp.topic, tp.partition) in wanted:
                        consumer.seek(tp, wanted[(tp.topic, tp.partition)])

        try:
            consumer.subscribe(names, listener=Listener())
            while not until():
                polled = consumer.poll(timeout_ms=int(poll_timeout * 1000), max_records=batch_size)
                batch = [_record(r) for records in polled.values() for r in records]
                yield batch
                if batch:
                    consumer.commit_async()
        finally:
            consumer.close()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self.index.close()


def _new_topic(spec: TopicSpec, settings: Settings) -> dict[str, object]:
    return {
        "num_partitions": spec.partitions,
        "replication_factor": settings.kafka_replication_factor,
        "configs": spec.kafka_config(),
    }


def _record(r: Any) -> LogRecord:
    headers = {k: v.decode("utf-8", "replace") for k, v in (r.headers or [])}
    key = r.key.decode("utf-8", "replace") if r.key is not None else None
    return LogRecord(Position(r.topic, r.partition, r.offset), r.value, key, headers)
