"""The log interface both backends implement: publish a batch, read from a position, follow."""

from __future__ import annotations

import importlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any
from uuid import UUID

import orjson

from interaction_store.catalog import StreamCatalog
from interaction_store.codec import EncodedEvent, decode
from interaction_store.events import SUBJECT_KEYS, InteractionEvent
from interaction_store.settings import Settings

TYPE_HEADER = "istore.type"
"""The record header holding the event type (Kafka), so a reader can route without decoding."""


class LogError(RuntimeError):
    """The log could not do what was asked; the message says why and what to do."""


@dataclass(frozen=True, order=True)
class Position:
    """Where a record is: topic, partition, offset (offsets start at 0 in each partition)."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}@{self.offset}"


@dataclass(frozen=True, slots=True)
class Appended:
    """The outcome of publishing one event: its position, and whether it was there already."""

    id_bytes: bytes
    """The event id's 16 bytes (the UUID is made only when asked for: publishing is hot)."""
    position: Position
    duplicate: bool
    conflict: bool = False
    """A duplicate id whose content differs from the stored copy's (which is kept)."""
    stored_digest: bytes = b""
    """With ``conflict``: the stored copy's content digest."""

    @property
    def event_id(self) -> UUID:
        return UUID(bytes=self.id_bytes)


@dataclass(frozen=True)
class DeadLetter:
    """Input that was rejected: the original bytes, the reason, and where it came from."""

    original: bytes
    reason: str
    source: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        return {
            "istore.reason": self.reason,
            "istore.source": self.source,
            "istore.details": orjson.dumps(self.details).decode(),
        }


@dataclass(frozen=True)
class LogRecord:
    """One record read back from the log."""

    position: Position
    value: bytes | None
    """The record's bytes; None for a Kafka tombstone (a record with a null value)."""
    stored_key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    stored_type: str | None = None
    """The event type as the log stored it beside the value (the embedded log does)."""

    @property
    def type(self) -> str | None:
        """The event type the log says the record holds (without decoding it), if it says."""
        if self.stored_type is not None:
            return self.stored_type
        return self.headers.get(TYPE_HEADER)

    @property
    def key(self) -> str | None:
        if self.stored_key is not None:
            return self.stored_key
        try:
            subject = orjson.loads(self.value or b"null").get("subject") or {}
            key = next((subject[k] for k in SUBJECT_KEYS if subject.get(k)), None)
        except (orjson.JSONDecodeError, AttributeError):  # not JSON, or not an object
            return None
        return None if key is None else str(key)

    def event(self) -> InteractionEvent:
        return decode(self.value)


PartitionOffsets = dict[tuple[str, int], int]
"""(topic, partition) -> the next offset to read."""


class EventLog(ABC):
    """An append-only log of events in the catalog's topics.

    Publishing routes each event to its topic, keys it by contact, skips event ids already in
    the log (reported as duplicates with their first position), and returns positions in the
    order of the input.
    """

    def __init__(self, settings: Settings, catalog: StreamCatalog | None = None) -> None:
        self.settings = settings
        self.catalog = catalog or StreamCatalog.load(settings)

    def publish(
        self, events: Sequence[InteractionEvent], recorded_at: datetime | None = None
    ) -> list[Appended]:
        """Append events; return each outcome in input order. ``recorded_at`` is written into
        events that do not carry one."""
        return self.append([EncodedEvent.of(e, recorded_at) for e in events])

    @abstractmethod
    def append(self, records: Sequence[EncodedEvent]) -> list[Appended]:
        """Append validated, encoded events (atomically per batch where the backend can):
        each to its type's topic, keyed by contact; ids already in the log are reported as
        duplicates with their first position. Outcomes come in input order."""

    @abstractmethod
    def dead_letter(self, letters: Sequence[DeadLetter]) -> list[Position]:
        """Append rejected input to the dead-letter topic."""

    @abstractmethod
    def partitions(self, topic: str) -> list[int]:
        """The partition numbers of a topic (full name)."""

    @abstractmethod
    def end_offsets(self, topic: str) -> dict[int, int]:
        """The next offset to be written, per partition."""

    @abstractmethod
    def read(self, topic: str, partition: int, offset: int, limit: int = 1000) -> list[LogRecord]:
        """Up to ``limit`` records of one partition from ``offset`` on (inclusive)."""

    def follow(
        self,
        start: Mapping[tuple[str, int], int] | None = None,
        topics: Sequence[str] | None = None,
        *,
        batch_size: int = 1000,
        idle_sleep: float = 0.2,
        until: Callable[[], bool] = lambda: False,
    ) -> Iterator[list[LogRecord]]:
        """Batches of new records from ``start`` on (default: the beginning), forever or
        until ``until()`` says stop; an empty batch means nothing new for now."""
        names = list(topics) if topics is not None else [t.name for t in self.catalog.event_topics]
        nxt: PartitionOffsets = {}
        for topic in names:
            for p in self.partitions(topic):
                nxt[(topic, p)] = (start or {}).get((topic, p), 0)
        while not until():
            batch: list[LogRecord] = []
            for (topic, p), offset in nxt.items():
                records = self.read(topic, p, offset, batch_size - len(batch))
                if records:
                    nxt[(topic, p)] = records[-1].position.offset + 1
                    batch.extend(records)
                if len(batch) >= batch_size:
                    break
            yield batch
            if not batch:
                time.sleep(idle_sleep)

    def reached(self) -> Mapping[tuple[str, int], int]:
        """Where the running :meth:`follow` last found nothing new: the next offset to read,
        per partition. Only a log whose offsets have gaps (Kafka's transaction markers) says;
        a reader that tracks positions moves past the gap with it."""
        return {}

    def check_ready(self, publishing: bool, seconds: float) -> None:
        """Raise :class:`LogError` unless the log answers within ``seconds`` (and, with
        ``publishing``, can take a batch)."""
        for topic in self.catalog.event_topics:
            self.partitions(topic.name)

    def ensure_topics(self) -> list[str]:
        """Create missing topics; return the names created."""
        return []

    def close(self) -> None:  # noqa: B027  # backends without resources need no close
        """Release connections and files."""

    def __enter__(self) -> EventLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_BACKENDS = {
    "embedded": "interaction_store.log.embedded:EmbeddedLog",
    "kafka": "interaction_store.log.kafka:KafkaLog",
}


def open_log(settings: Settings | None = None, catalog: StreamCatalog | None = None) -> EventLog:
    """The log the settings choose (``ISTORE_BACKEND``)."""
    settings = settings or Settings()
    module_name, _, cls_name = _BACKENDS[settings.backend].partition(":")
    cls: type[EventLog] = getattr(importlib.import_module(module_name), cls_name)
    return cls(settings, catalog)
