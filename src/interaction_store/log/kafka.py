"""The Kafka log: kafka-python clients; each batch published in one transaction (see
``kafka_producer``), keyed by contact; every reader reads committed records only.

Kafka itself cannot refuse a repeated event id, so publishing consults an event-id index (a
SQLite file in the data folder) and records each id with its position once the broker has
acknowledged it. The index is a convenience for publishers on one host; views stay correct
either way because projections skip event ids they have applied. A batch that failed is not
in the index and, being aborted, not visible either: publishing it again stores it once.
Transaction markers take offsets: committed records' offsets are not contiguous.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
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
from interaction_store.log.kafka_index import EventIdIndex
from interaction_store.log.kafka_producer import InDoubt, Publisher, Send
from interaction_store.settings import Settings, private_file


class KafkaLog(EventLog):
    """The production log on Apache Kafka."""

    def __init__(self, settings: Settings, catalog: StreamCatalog | None = None) -> None:
        super().__init__(settings, catalog)
        self.config = settings.kafka_client_config()
        self._publisher = Publisher(settings, self.config)
        self._in_doubt: list[tuple[list[tuple[bytes, bytes]], InDoubt]] = []
        """Batches whose commit went unconfirmed: (id, digest) of each event, and the error."""
        self._reached: dict[tuple[str, int], int] = {}
        self._partitions: dict[tuple[str, bytes], int] = {}
        self._partition_counts: dict[str, int] = {}
        self._reader: KafkaConsumer | None = None
        self._reading = threading.RLock()
        """A consumer is not for several threads at once, and the API's threads share this
        one (end offsets for tokens and lag, reads)."""
        cluster = hashlib.sha256(
            f"{settings.kafka_bootstrap_servers}|{settings.topic_name_prefix}".encode()
        ).hexdigest()[:12]
        index = settings.private_data_dir() / f"kafka-event-ids-{cluster}.sqlite"
        self.index = EventIdIndex(str(private_file(index)))

    # ----------------------------------------------------------------- clients

    @property
    def publisher(self) -> Publisher:
        return self._publisher

    @property
    def producer(self) -> Any:
        """The kafka-python producer (transactional: send within a transaction)."""
        return self._publisher.producer()

    @property
    def reader(self) -> KafkaConsumer:
        if self._reader is None:
            try:
                self._reader = KafkaConsumer(
                    **self.config,
                    isolation_level="read_committed",
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    consumer_timeout_ms=1000,
                    bootstrap_timeout_ms=int(self.settings.kafka_publish_timeout * 1000),
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
            intake = self.catalog.intake
            if intake is not None and intake.name in existing:
                _apply_retention(admin, intake)
            missing = [s for s in self.catalog.topics.values() if s.name not in existing]
            if missing:
                brokers = len(admin.describe_cluster().get("brokers") or [])
                replicas = _replication_factor(self.settings, brokers)
                admin.create_topics(
                    {s.name: _new_topic(s, replicas) for s in missing},
                    wait_for_metadata=True,
                )
            if self.settings.kafka_transactions:
                # The broker makes its transaction state topic for the first transactional
                # producer, with every replica it asks for: now, while the nodes are up, and not
                # at the first publish, which may come with a node down and then cannot start.
                self._publisher.producer()
            return [s.name for s in missing]
        finally:
            admin.close()

    def partitions(self, topic: str) -> list[int]:
        # A topic created a moment ago may take a few metadata refreshes to show up.
        deadline = time.monotonic() + 5
        while True:
            with self._reading:
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
        with self._reading:
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
                count = self._publisher.partitions_for(topic)
                self._partition_counts[topic] = count
            cached = partition_of(key, count)
            if len(self._partitions) > 1_000_000:  # bound the memory: start again
                self._partitions.clear()
            self._partitions[(topic, key)] = cached
        return cached

    def append(self, records: Sequence[EncodedEvent]) -> list[Appended]:
        self._settle_in_doubt()
        ids = [r.event_id for r in records]
        known = self.index.find(ids)
        first_in_batch: dict[bytes, int] = {}
        sends: list[Send] = []
        for i, record in enumerate(records):
            if ids[i] in known or ids[i] in first_in_batch:
                continue
            first_in_batch[ids[i]] = i
            topic = self.catalog.topic_for(record.type).name
            key = record.key.encode()
            sends.append(
                Send(
                    topic,
                    record.value,
                    key,
                    self._partition(topic, key),
                    [(TYPE_HEADER, record.type.encode())],
                )
            )
        new = [(eid, records[i].digest) for eid, i in first_in_batch.items()]
        try:
            positions = self._publisher.send(sends, f"a batch of {len(sends)} events")
        except InDoubt as exc:
            self._in_doubt.append((new, exc))
            raise LogError(
                f"{exc}: the batch of {len(sends)} events is either all stored or not at all. "
                "Publishing it again is safe: if it was stored, its events are reported as "
                "duplicates"
            ) from exc
        except LogError as exc:
            raise LogError(
                f"{exc}. Publishing the batch again is safe: events already stored are "
                "reported as duplicates"
            ) from exc
        self.index.record([(eid, p, d) for (eid, d), p in zip(new, positions, strict=True)])
        self._await_visible(positions)
        at = {eid: p for (eid, _), p in zip(new, positions, strict=True)}
        out: list[Appended] = []
        for i, eid in enumerate(ids):
            if eid in known:
                position, stored = known[eid]
            elif first_in_batch[eid] == i:
                out.append(Appended(eid, at[eid], False))
                continue
            else:
                position, stored = at[eid], records[first_in_batch[eid]].digest
            # A duplicate whose content differs from the stored copy's is a conflict; an index
            # entry from before digests were kept cannot tell, and says duplicate.
            conflict = bool(stored) and bool(records[i].digest) and stored != records[i].digest
            out.append(Appended(eid, position, True, conflict, stored if conflict else b""))
        return out

    def _await_visible(self, positions: Sequence[Position]) -> None:
        """Return once readers (read committed) can see the batch. A commit is confirmed when
        the transaction's coordinator has decided it; the markers that end it in each partition
        follow a few milliseconds later, and until then the partitions' readable ends stay
        before it: a consistency token read at once would name offsets that 'do not exist',
        and a reader would miss the batch. Bounded by the publish timeout; past it readers
        only see the batch later, which a token's wait covers."""
        highest: dict[tuple[str, int], int] = {}
        for p in positions:
            highest[(p.topic, p.partition)] = max(highest.get((p.topic, p.partition), -1), p.offset)
        if not highest or not self.settings.kafka_transactions:
            return
        tps = [TopicPartition(t, p) for t, p in highest]
        deadline = time.monotonic() + self.settings.kafka_publish_timeout
        delay = 0.002
        while True:
            try:
                with self._reading:
                    ends: dict[TopicPartition, int] = self.reader.end_offsets(tps)
            except KafkaError:
                return  # the batch is committed; only its visibility is unknown
            if all(ends.get(tp, 0) > highest[(tp.topic, tp.partition)] for tp in tps):
                return
            if time.monotonic() >= deadline:
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _settle_in_doubt(self) -> None:
        """Find out whether batches whose commit went unconfirmed were stored, and index
        their ids if so. The producer is made first: initialising it with the same
        transactional id makes the broker finish (commit or abort) the old transaction, and a
        transaction is atomic, so one of its records tells for all."""
        if not self._in_doubt:
            return
        self._publisher.producer()
        for entries, doubt in list(self._in_doubt):
            p = doubt.positions[0]
            try:
                found = self.read(p.topic, p.partition, p.offset, 1)
            except KafkaError as exc:
                raise LogError(f"cannot read back a batch in doubt at {p}: {exc}") from exc
            if found and found[0].position == p:
                self.index.record(
                    [(eid, q, d) for (eid, d), q in zip(entries, doubt.positions, strict=True)]
                )
            self._in_doubt.remove((entries, doubt))

    def dead_letter(self, letters: Sequence[DeadLetter]) -> list[Position]:
        topic = self.catalog.dead_letter.name
        sends = [
            Send(
                topic,
                letter.original,
                None,
                None,
                [(k, v.encode()) for k, v in letter.headers().items()],
            )
            for letter in letters
        ]
        return self._publisher.send(sends, f"{len(sends)} dead letters")

    def check_ready(self, publishing: bool, seconds: float) -> None:
        """Raise :class:`LogError` unless the broker answers within ``seconds`` (a round trip,
        not the cached metadata) and, with ``publishing``, a producer can publish."""
        if publishing:
            self._publisher.check(seconds)
        tps = [
            TopicPartition(t.name, p)
            for t in self.catalog.event_topics
            for p in self.partitions(t.name)
        ]
        try:
            with self._reading:
                self.reader.end_offsets(tps, timeout_ms=int(seconds * 1000))
        except KafkaError as exc:
            raise LogError(
                f"Kafka at {self.settings.kafka_bootstrap_servers} did not answer within "
                f"{seconds:g} s: {type(exc).__name__}: {exc}"
            ) from exc

    # ----------------------------------------------------------------- reading

    def read(self, topic: str, partition: int, offset: int, limit: int = 1000) -> list[LogRecord]:
        if offset < 0:
            raise LogError(f"offset must be >= 0, got {offset}")
        tp = TopicPartition(topic, partition)
        end = self.end_offsets(topic).get(partition)
        if end is None:
            raise LogError(f"topic {topic} has no partition {partition}")
        out: list[LogRecord] = []
        stop = min(end, offset + limit)
        deadline = time.monotonic() + 30
        with self._reading:
            consumer = self.reader
            consumer.assign([tp])
            consumer.seek(tp, offset)
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
            **self.config,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            tps = [TopicPartition(t, p) for t in names for p in self.partitions(t)]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, (start or {}).get((tp.topic, tp.partition), 0))
            while not until():
                polled = consumer.poll(timeout_ms=int(idle_sleep * 1000), max_records=batch_size)
                batch = [_record(r) for records in polled.values() for r in records]
                if not batch:
                    self._note_reached(consumer)
                yield batch
        finally:
            consumer.close()

    def reached(self) -> Mapping[tuple[str, int], int]:
        """Where the running follow found nothing new, per partition: the next offset to read,
        past transaction markers and aborted records (they take offsets but are never read)."""
        return self._reached

    def _note_reached(self, consumer: KafkaConsumer) -> None:
        reached: dict[tuple[str, int], int] = {}
        for tp in consumer.assignment():
            try:
                reached[(tp.topic, tp.partition)] = consumer.position(tp, timeout_ms=0)
            except KafkaError:
                continue  # not known without asking the broker: next time
        self._reached = reached

    def follow_group(
        self,
        group_id: str,
        topics: Sequence[str] | None = None,
        *,
        on_assigned: Callable[[list[tuple[str, int]]], Mapping[tuple[str, int], int]] | None = None,
        batch_size: int = 1000,
        poll_timeout: float = 0.2,
        until: Callable[[], bool] = lambda: False,
        commit_sync: bool = False,
        once: bool = False,
    ) -> Iterator[list[LogRecord]]:
        """Batches as a member of a consumer group. On each assignment ``on_assigned`` may
        return the positions to resume from (those tracked with the views); committed group
        offsets are only a convenience, written after each batch is handed over.

        ``commit_sync``: the committed offsets are the positions (the intake processor's):
        written, and confirmed, when the caller asks for the next batch, so a batch is
        committed only once the caller is done with it. ``once``: stop when the partitions
        assigned have nothing more to read."""
        names = list(topics) if topics is not None else [t.name for t in self.catalog.event_topics]
        consumer = KafkaConsumer(
            **self.config,
            group_id=group_id,
            isolation_level="read_committed",
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
            # With ``once``, a member that the group leaves without partitions (others hold
            # them all) has nothing to read: it stops after a while instead of waiting.
            give_up = time.monotonic() + 15
            while not until():
                polled = consumer.poll(timeout_ms=int(poll_timeout * 1000), max_records=batch_size)
                batch = [_record(r) for records in polled.values() for r in records]
                if not batch:
                    self._note_reached(consumer)
                    idle = not consumer.assignment() and time.monotonic() > give_up
                    if once and (idle or _caught_up(consumer)):
                        return
                yield batch
                if batch and commit_sync:
                    consumer.commit()
                elif batch:
                    consumer.commit_async()
        finally:
            consumer.close()

    def close(self) -> None:
        self._publisher.close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self.index.close()


def _caught_up(consumer: KafkaConsumer) -> bool:
    """Whether the consumer was assigned partitions and has read each to its end."""
    assigned = list(consumer.assignment())
    if not assigned:
        return False  # not yet joined, or nothing assigned (then the caller's bound ends it)
    ends: dict[TopicPartition, int] = consumer.end_offsets(assigned)
    return all(consumer.position(tp) >= ends.get(tp, 0) for tp in assigned)


def _replication_factor(settings: Settings, brokers: int) -> int:
    """The setting, else min(3, brokers): three copies survive the loss of one broker."""
    wanted = settings.kafka_replication_factor
    if wanted is None:
        return max(1, min(3, brokers))
    if wanted > brokers:
        raise LogError(
            f"kafka_replication_factor={wanted} (ISTORE_KAFKA_REPLICATION_FACTOR) but the cluster "
            f"at {settings.kafka_bootstrap_servers} has {brokers} broker(s): lower the setting, "
            "or unset it to use min(3, brokers)"
        )
    return wanted


def _apply_retention(admin: KafkaAdminClient, spec: TopicSpec) -> None:
    """Give an existing topic the catalog's retention (the intake topic's is a setting that
    may change), and return once the broker shows it (a config change reaches the brokers
    through the metadata log, a moment later). Incremental, so the topic's other configs stay
    as they are."""
    resource = ConfigResource(ConfigResourceType.TOPIC, spec.name)

    def current() -> object:
        described = admin.describe_configs([resource], config_filter="all")
        return (described.get("topic", {}).get(spec.name, {}).get("retention.ms") or {}).get(
            "value"
        )

    wanted = str(spec.retention_ms)
    if current() == wanted:
        return
    change = ConfigResource(ConfigResourceType.TOPIC, spec.name, {"retention.ms": wanted})
    answer = admin.alter_configs([change], incremental=True)
    result = answer.get("topic", {}).get(spec.name)
    if result != "OK":
        raise LogError(f"cannot set retention.ms={wanted} on topic {spec.name}: {result}")
    deadline = time.monotonic() + 10
    while current() != wanted and time.monotonic() < deadline:
        time.sleep(0.1)


def _new_topic(spec: TopicSpec, replicas: int) -> dict[str, object]:
    configs = spec.kafka_config()
    if replicas >= 3:
        # acks=all then waits for two copies: one broker may die without losing an
        # acknowledged event, and writes go on while it is down.
        configs["min.insync.replicas"] = "2"
    return {"num_partitions": spec.partitions, "replication_factor": replicas, "configs": configs}


def _record(r: Any) -> LogRecord:
    # Anything may be on a topic that others publish to: a header without a value, a key or
    # value that is not UTF-8. Read what is there; the codec judges the value.
    headers = {
        str(k): v.decode("utf-8", "replace") if isinstance(v, bytes) else ""
        for k, v in (r.headers or [])
    }
    key = r.key.decode("utf-8", "replace") if r.key is not None else None
    return LogRecord(Position(r.topic, r.partition, r.offset), r.value, key, headers)
