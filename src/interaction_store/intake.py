"""The intake processor: forwards what publishers wrote straight to Kafka's intake topic to the
canonical topics, through the same path as ingest (validation, one transaction per batch,
de-duplication by event id, conflicts), and dead-letters what is bad with where it was
(``intake:<partition>@<offset>``). The canonical topics are then written by the store alone.

Exactly once from the intake topic's point of view, by at-least-once forwarding and the event
id: the processors share the intake topic as one consumer group (``ISTORE_INTAKE_GROUP``)
whose committed offsets are the intake positions, committed (and confirmed) only after a
batch's forward and dead letters are committed. A processor that dies between the two reads
the batch again: its events are then answered as duplicates by the event-id index, and an
event the index missed (a crash between the commit and the index write, or a partition moved
to another host) is stored a second time with the same id, which every view skips. A bad
record of such a batch may be dead-lettered twice, both letters naming the same
``intake:<partition>@<offset>``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kafka.errors import KafkaError

from interaction_store.codec import EventRejected, Violation
from interaction_store.ingest import Ingest, Validated
from interaction_store.log import open_log
from interaction_store.log.base import EventLog, LogError, LogRecord
from interaction_store.log.kafka import KafkaLog
from interaction_store.privacy.sealing import sealer_of
from interaction_store.settings import Settings

RETRY_SECONDS = 2.0
"""Pause before a processor whose broker failed joins the group again."""


class IntakeError(ValueError):
    """The intake processor cannot run here; the message says why and what to do."""


@dataclass
class IntakeStats:
    """What became of the intake records one processor read."""

    read: int = 0
    forwarded: int = 0
    duplicates: int = 0
    conflicts: int = 0
    dead_lettered: int = 0
    batches: int = 0

    def add(self, other: IntakeStats) -> None:
        for name in ("read", "forwarded", "duplicates", "conflicts", "dead_lettered", "batches"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self) -> str:
        return (
            f"intake: read {self.read}, forwarded {self.forwarded}, duplicate "
            f"{self.duplicates}, conflict {self.conflicts}, dead-lettered {self.dead_lettered}"
        )


def _tombstone() -> EventRejected:
    return EventRejected(
        None,
        None,
        [
            Violation(
                "(document)",
                None,
                "tombstone",
                "a record without a value (a tombstone): the intake topic takes one JSON event "
                "document per record",
            )
        ],
    )


class IntakeProcessor:
    """Reads the intake topic as a member of the intake consumer group and forwards each
    batch. :meth:`stop` may be called from a signal handler or another thread: the batch in
    hand is finished (and its offsets committed), then :meth:`run` returns."""

    def __init__(self, log: EventLog, batch_size: int = 500) -> None:
        intake = log.catalog.intake
        if intake is None:
            raise IntakeError(
                "the stream catalog has no intake_topic: add one (see streams/catalog.toml)"
            )
        if not isinstance(log, KafkaLog):
            raise IntakeError(
                f"backend={log.settings.backend!r}: the intake topic is for publishers writing "
                "straight to Kafka (ISTORE_BACKEND=kafka); on the embedded store publish with "
                "`istore publish` or POST /v1/events, which validate at the door"
            )
        self.log = log
        self.topic = intake.name
        self.group = log.settings.intake_group_id
        self.batch_size = batch_size
        # Publishers writing straight to Kafka cannot seal: the intake does, before the
        # events reach a canonical topic.
        self.ingest = Ingest(
            log, batch_size=batch_size, parallel=False, sealer=sealer_of(log.settings)
        )
        self.stats = IntakeStats()
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(
        self, *, once: bool = False, on_batch: Callable[[IntakeStats], object] | None = None
    ) -> IntakeStats:
        """Forward intake records until stopped (``once``: until the partitions assigned are
        read to their end). A broker that fails ends the run with ``once``; otherwise the
        processor says so on stderr, waits and joins the group again, resuming from the
        committed offsets."""
        while not self.stopping:
            try:
                self._follow(once, on_batch)
                return self.stats
            except (LogError, KafkaError) as exc:
                if once:
                    raise
                sys.stderr.write(f"intake: {exc}; trying again in {RETRY_SECONDS:g} s\n")
                self._stopping.wait(RETRY_SECONDS)
        return self.stats

    def _follow(self, once: bool, on_batch: Callable[[IntakeStats], object] | None) -> None:
        assert isinstance(self.log, KafkaLog)
        # The group's offsets are committed when the next batch is asked for: after this
        # batch's forward and dead letters are committed, never before.
        for records in self.log.follow_group(
            self.group,
            [self.topic],
            batch_size=self.batch_size,
            until=self._stopping.is_set,
            commit_sync=True,
            once=once,
        ):
            if records:
                self.stats.add(self.forward(records))
                if on_batch is not None:
                    on_batch(self.stats)

    def forward(self, records: Sequence[LogRecord]) -> IntakeStats:
        """Forward one batch of intake records; what became of them.

        1. validate each record's value with the codec (a tombstone is rejected);
        2. publish through :class:`Ingest`, which seals their personal fields: the valid
           events in one transaction to their canonical topics (an event id already stored
           answers duplicate, or conflict if the content differs), the rest to the dead-letter
           topic with their reason."""
        docs = [r.value if r.value is not None else b"" for r in records]
        checked = list(self.ingest.validate(docs))
        for i, record in enumerate(records):
            if record.value is None:
                checked[i] = _tombstone()
        origins = [f"intake:{r.position.partition}@{r.position.offset}" for r in records]
        batch = Validated(docs, checked, "intake", origins=origins)
        (outcomes,) = self.ingest.publish_many([batch])
        stats = IntakeStats(read=len(records), batches=1)
        for outcome in outcomes:
            if outcome.status == "accepted":
                stats.forwarded += 1
            elif outcome.status == "duplicate":
                stats.duplicates += 1
            elif outcome.status == "conflict":
                stats.conflicts += 1
            else:
                stats.dead_lettered += 1
        return stats


class IntakeThread:
    """The intake processor of a projection worker, in a thread with a log of its own (its
    own producer and transactional id)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.failure: BaseException | None = None
        self._processor: IntakeProcessor | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="intake", daemon=True)

    @classmethod
    def start_for(cls, settings: Settings) -> IntakeThread | None:
        """A started thread where the worker runs the intake processor: on Kafka, with an
        intake topic, unless ``ISTORE_WORKER_INTAKE=false``."""
        if settings.backend != "kafka" or not settings.worker_intake:
            return None
        thread = cls(settings)
        thread._thread.start()
        return thread

    def _run(self) -> None:
        try:
            with open_log(self.settings) as log:
                if log.catalog.intake is None:
                    return
                self._processor = IntakeProcessor(log)
                self._ready.set()
                self._processor.run()
        except BaseException as exc:  # the worker reports it: a thread's error is lost
            self.failure = exc
            sys.stderr.write(f"the intake processor failed: {type(exc).__name__}: {exc}\n")
        finally:
            self._ready.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in hand, then end."""
        deadline = time.monotonic() + timeout
        self._ready.wait(timeout)
        if self._processor is not None:
            self._processor.stop()
        self._thread.join(max(0.0, deadline - time.monotonic()))


def drain(settings: Settings) -> IntakeStats | None:
    """Forward what is on the intake topic now, then return (``istore run --once``); None
    where there is no intake processor (the embedded store, or no intake topic)."""
    if settings.backend != "kafka":
        return None
    with open_log(settings) as log:
        if log.catalog.intake is None:
            return None
        return IntakeProcessor(log).run(once=True)
