"""The embedded log: one SQLite file in the data folder, no server.

Each topic is an ``eventsourcing`` SQLite application recorder (its own table, one partition)
whose notification ids are the offsets (notification id - 1). An ``event_ids`` table in the
same file and the same transaction keeps an event id from being stored twice.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from typing import Any
from uuid import UUID, uuid4

import orjson
from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore

from interaction_store.catalog import StreamCatalog
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

LOG_FILE = "log.sqlite"


def _table(topic: str) -> str:
    return "log_" + re.sub(r"[^A-Za-z0-9]", "_", topic)


class _TopicRecorder(SQLiteApplicationRecorder):
    """The recorder of one topic; inserts report the new offset, or None for a duplicate."""

    def insert_new(self, c: SQLiteCursor, stored: StoredEvent) -> int:
        c.execute(
            self.insert_events_statement,
            (
                stored.originator_id.hex
                if isinstance(stored.originator_id, UUID)
                else stored.originator_id,
                0,
                stored.topic,
                stored.state,
            ),
        )
        return int(c.lastrowid) - 1

    def offset_of(self, c: SQLiteCursor, event_id: UUID) -> int:
        c.execute(
            f"SELECT rowid FROM {self.events_table_name} "
            "WHERE originator_id=? AND originator_version=0",
            (event_id.hex,),
        )
        row = c.fetchone()
        return int(row[0]) - 1


class EmbeddedLog(EventLog):
    """The zero-setup log: ``<data_dir>/log.sqlite``."""

    def __init__(self, settings: Settings, catalog: StreamCatalog | None = None) -> None:
        super().__init__(settings, catalog)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = settings.data_dir / LOG_FILE
        self.datastore = SQLiteDatastore(str(self.path), lock_timeout=30)
        self.recorders: dict[str, _TopicRecorder] = {}
        for spec in self.catalog.topics.values():
            recorder = _TopicRecorder(self.datastore, events_table_name=_table(spec.name))
            recorder.create_table()
            self.recorders[spec.name] = recorder
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                "CREATE TABLE IF NOT EXISTS event_ids (event_id TEXT PRIMARY KEY, topic TEXT) "
                "WITHOUT ROWID"
            )

    def _recorder(self, topic: str) -> _TopicRecorder:
        try:
            return self.recorders[topic]
        except KeyError:
            raise LogError(
                f"unknown topic {topic!r}; the catalog has {', '.join(self.recorders)}"
            ) from None

    def publish(self, events: Sequence[InteractionEvent]) -> list[Appended]:
        out: list[Appended] = []
        with self.datastore.transaction(commit=True) as c:
            raw = c.sqlite_cursor
            for event in events:
                topic = self.catalog.topic_for(event.type).name
                raw.execute(
                    "INSERT OR IGNORE INTO event_ids VALUES (?, ?)", (event.event_id.hex, topic)
                )
                if raw.rowcount == 1:
                    stored = StoredEvent(event.event_id, 0, event.type, encode(event))
                    offset = self.recorders[topic].insert_new(c, stored)
                    out.append(Appended(event.event_id, Position(topic, 0, offset), False))
                else:
                    raw.execute(
                        "SELECT topic FROM event_ids WHERE event_id=?", (event.event_id.hex,)
                    )
                    first_topic = raw.fetchone()[0]
                    offset = self.recorders[first_topic].offset_of(c, event.event_id)
                    out.append(Appended(event.event_id, Position(first_topic, 0, offset), True))
        return out

    def dead_letter(self, letters: Sequence[DeadLetter]) -> list[Position]:
        topic = self.catalog.dead_letter.name
        recorder = self.recorders[topic]
        out = []
        with self.datastore.transaction(commit=True) as c:
            for letter in letters:
                state = orjson.dumps(
                    {
                        "headers": letter.headers(),
                        "value": base64.b64encode(letter.original).decode(),
                    }
                )
                offset = recorder.insert_new(c, StoredEvent(uuid4(), 0, "dead_letter", state))
                out.append(Position(topic, 0, offset))
        return out

    def partitions(self, topic: str) -> list[int]:
        self._recorder(topic)
        return [0]

    def end_offsets(self, topic: str) -> dict[int, int]:
        return {0: int(self._recorder(topic).max_notification_id() or 0)}

    def read(self, topic: str, partition: int, offset: int, limit: int = 1000) -> list[LogRecord]:
        recorder = self._recorder(topic)
        if partition != 0:
            raise LogError(f"the embedded topic {topic} has one partition (0), not {partition}")
        if offset < 0:
            raise LogError(f"offset must be >= 0, got {offset}")
        # The recorder's select_notifications also parses ids and topics we do not need;
        # reading just (rowid, state) from its table is several times faster.
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT rowid, state FROM {recorder.events_table_name} "
                "WHERE rowid>=? ORDER BY rowid LIMIT ?",
                (offset + 1, limit),
            )
            rows = c.fetchall()
        if topic == self.catalog.dead_letter.name:
            return [_dead_record(topic, rowid - 1, state) for rowid, state in rows]
        return [LogRecord(Position(topic, 0, rowid - 1), state) for rowid, state in rows]

    def close(self) -> None:
        self.datastore.close()


def _dead_record(topic: str, offset: int, state: bytes) -> LogRecord:
    doc: dict[str, Any] = orjson.loads(state)
    return LogRecord(
        Position(topic, 0, offset), base64.b64decode(doc["value"]), None, doc["headers"]
    )
