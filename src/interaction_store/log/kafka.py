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
from typing import Any
from uuid import UUID

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError

from interaction_store.catalog import StreamCatalog, TopicSpec, partition_of
from interaction_store.codec import EncodedEvent
from interaction_store.log.base import TYPE_HEADER as TYPE_HEADER  # where it was defined before
from interaction_store.log.base import (
    Appended,
    DeadLetter,
    EventLog,
    LogError,
    LogRecord,
    Position,
)
from interaction_store.settings import Settings


class EventIdIndex:
    """Event ids already on the broker, with their positions (one SQLite file per cluster)."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS event_ids (event_id BLOB PRIMARY KEY, topic TEXT, "
            "partition INTEGER, offset INTEGER) WITHOUT ROWID"
        )

    def find(self, event_ids: Sequence[bytes]) -> dict[bytes, Position]:
        """The positions of the ids (16-byte UUIDs) that are in the index."""
        found: dict[bytes, Position] = {}
        for i in range(0, len(event_ids), 500):
            chunk = event_ids[i : i + 500]
            rows = self.db.execute(
                "SELECT event_id, topic, partition, offset FROM event_ids "
                f"WHERE event_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for eid, topic, partition, offset in rows:
                found[eid] = Position(topic, partition, offset)
        return found

    def record(self, entries: Sequence[tuple[bytes, Position]]) -> None:
        self.db.execute("BEGIN")
        try:
            self.db.executemany(
                "INSERT OR IGNORE INTO event_ids VALUES (?, ?, ?, ?)",
                [(e, p.topic, p.partition, p.offset) for e, p in entries],
            )
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


class KafkaLog(EventLog):
    """The production log on Apache Kafka."""

    def __init__(self, settings: Settings, catalog: StreamCatalog | None = None) -> None:
        super().__init__(settings, catalog)
        self.config = settings.kafka_client_config()
        self._producer: KafkaProducer | None = None
        self._partitions: dict[tuple[str, bytes], int] = {}
        self._partition_counts: dict[str, int] = {}
        self._reader: KafkaConsumer | None = None
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        cluster = hashlib.sha256(
            f"{settings.kafka_bootstrap_servers}|{settings.topic_name_prefix}".encode()
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
                    max_block_ms=15_000,
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

    def _partition(self, topic: str, key: bytes) -> int:
        """The partition Kafka's default partitioner picks (murmur2 of the key, as the Java
        client does), computed once per contact: contacts recur, and kafka-python's
        pure-Python murmur2 is a fifth of the cost of a send."""
        cached = self._partitions.get((topic, key))
        if cached is None:
            count = self._partition_counts.get(topic)
            if count is None:
                try:
                    count = len(self.producer.partitions_for(topic))
                except KafkaError as exc:
                    raise LogError(
                        f"topic {topic!r} is not on {self.settings.kafka_bootstrap_servers} "
                        f"({exc}): run `istore topics ensure`"
                    ) from exc
                self._partition_counts[topic] = count
            cached = partition_of(key, count)
            if len(self._partitions) > 1_000_000:  # bound the memory: start again
                self._partitions.clear()
            self._partitions[(topic, key)] = cached
        return cached

    def append(self, records: Sequence[EncodedEvent]) -> list[Appended]:
        ids = [r.event_id for r in records]
        known = self.index.find(ids)
        producer = self.producer
        first_in_batch: dict[bytes, int] = {}
        sends: list[tuple[int, Any]] = []
        for i, record in enumerate(records):
            if ids[i] in known or ids[i] in first_in_batch:
                continue
            first_in_batch[ids[i]] = i
            topic = self.catalog.topic_for(record.type).name
            key = record.key.encode()
            sends.append(
                (
                    i,
                    producer.send(
                        topic,
                        value=record.value,
                        key=key,
                        partition=self._partition(topic, key),
                        headers=[(TYPE_HEADER, record.type.encode())],
                    ),
                )
            )
        producer.flush()
        out: list[Appended | None] = [None] * len(records)
        stored: list[tuple[bytes, Position]] = []
        failures = []
        for i, future in sends:
            try:
                meta = future.get(timeout=0)
            except KafkaError as exc:
                failures.append(f"{UUID(bytes=ids[i])}: {exc}")
                continue
            position = Position(meta.topic, meta.partition, meta.offset)
            out[i] = Appended(ids[i], position, False)
            stored.append((ids[i], position))
        self.index.record(stored)
        if failures:
            raise LogError(
                f"{len(failures)} of {len(sends)} events were not acknowledged by Kafka "
                f"(first: {failures[0]}); the others were stored. Publishing the batch again is "
                "safe: stored ones are reported as duplicates."
            )
        for i in range(len(records)):
            if out[i] is None:
                first = first_in_batch.get(ids[i], i)
                original = out[first] if first != i else None
                position = original.position if original is not None else known[ids[i]]
                out[i] = Appended(ids[i], position, True)
        return [a for a in out if a is not None]

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

        # kafka-python ships no type hints, so mypy sees its base class as Any.
        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # base class is Any
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
            # Know every topic's partitions before joining: on a broker with many topics the
            # first assignment can otherwise see no metadata for a new topic and assign nothing.
            deadline = time.monotonic() + 30
            while any(not consumer.partitions_for_topic(t) for t in names):
                if time.monotonic() > deadline:
                    missing = [t for t in names if not consumer.partitions_for_topic(t)]
                    raise LogError(f"no partitions known for {missing}: run `istore topics ensure`")
                consumer.topics()  # forces a metadata refresh
                time.sleep(0.2)
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
