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
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore

from interaction_store.catalog import StreamCatalog
from interaction_store.codec import EncodedEvent, EventRejected, content_digest
from interaction_store.log.base import (
    Appended,
    DeadLetter,
    EventLog,
    LogError,
    LogRecord,
    Position,
)
from interaction_store.settings import Settings, private_file
from interaction_store.sqlite_schema import create_schema

LOG_FILE = "log.sqlite"
WRITE_LOCK = "write_lock"


def _write_lock(c: SQLiteCursor) -> None:
    """Take SQLite's write lock now, waiting for it (up to the lock timeout). A transaction
    that reads first cannot become the writer once another connection has committed: SQLite
    answers "database is locked" at once, without waiting. Appends read before they write
    (known ids, the last offset), and an ingest API publishes while a projection worker
    publishes its outbox; a write of no row, first, makes them wait their turn instead."""
    c.execute(f"UPDATE {WRITE_LOCK} SET id = id WHERE 0")


def _table(topic: str) -> str:
    return "log_" + re.sub(r"[^A-Za-z0-9]", "_", topic)


class _TopicRecorder(SQLiteApplicationRecorder):
    """The recorder of one topic. Event ids go in as their 16 bytes (SQLite keeps BLOBs as
    they are): a smaller primary key than hex text, which keeps appends fast as it grows."""

    def append(self, c: SQLiteCursor, rows: Sequence[tuple[bytes, str, bytes]]) -> int:
        """Insert (event id, type, state) rows; returns the offset of the first one.
        The transaction holds SQLite's write lock, so the rowids are consecutive."""
        raw = c.sqlite_cursor
        raw.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {self.events_table_name}")
        first = int(raw.fetchone()[0])
        raw.executemany(f"INSERT INTO {self.events_table_name} VALUES (?, 0, ?, ?)", rows)
        return first

    def offset_of(self, c: SQLiteCursor, event_id: UUID) -> int:
        c.execute(
            f"SELECT rowid FROM {self.events_table_name} "
            "WHERE originator_id=? AND originator_version=0",
            (event_id.bytes,),
        )
        row = c.fetchone()
        return int(row[0]) - 1


class EmbeddedLog(EventLog):
    """The zero-setup log: ``<data_dir>/log.sqlite``."""

    def __init__(self, settings: Settings, catalog: StreamCatalog | None = None) -> None:
        super().__init__(settings, catalog)
        self.path = private_file(settings.private_data_dir() / LOG_FILE)
        self.datastore = SQLiteDatastore(str(self.path), lock_timeout=30)
        self.recorders = {
            spec.name: _TopicRecorder(self.datastore, events_table_name=_table(spec.name))
            for spec in self.catalog.topics.values()
        }
        create_schema(self.path, self._create_tables)

    def _create_tables(self) -> None:
        for recorder in self.recorders.values():
            recorder.create_table()
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                "CREATE TABLE IF NOT EXISTS event_ids (event_id BLOB PRIMARY KEY, topic TEXT, "
                "digest BLOB) WITHOUT ROWID"
            )
            # The content digest is kept beside the id: the stored value's personal fields are
            # sealed (a fresh nonce each time), so its digest says nothing about the content.
            c.execute("SELECT name FROM pragma_table_info('event_ids')")
            if "digest" not in {row[0] for row in c.fetchall()}:  # a log from before
                c.execute("ALTER TABLE event_ids ADD COLUMN digest BLOB")
            c.execute(f"CREATE TABLE IF NOT EXISTS {WRITE_LOCK} (id INTEGER PRIMARY KEY)")

    def _recorder(self, topic: str) -> _TopicRecorder:
        try:
            return self.recorders[topic]
        except KeyError:
            raise LogError(
                f"unknown topic {topic!r}; the catalog has {', '.join(self.recorders)}"
            ) from None

    def append(self, records: Sequence[EncodedEvent]) -> list[Appended]:
        out: list[Appended | None] = [None] * len(records)
        with self.datastore.transaction(commit=True) as c:
            _write_lock(c)
            raw = c.sqlite_cursor
            # 1. Which ids are in the log already (one query per 500 ids, not one per event).
            known: dict[bytes, str] = {}
            digests: dict[bytes, bytes | None] = {}
            ids = [r.event_id for r in records]
            for i in range(0, len(ids), 500):
                part = ids[i : i + 500]
                raw.execute(
                    f"SELECT event_id, topic, digest FROM event_ids WHERE event_id IN "
                    f"({','.join('?' * len(part))})",
                    part,
                )
                for event_id, topic, digest in raw.fetchall():
                    known[event_id] = topic
                    digests[event_id] = digest
            # 2. The new ones, grouped by topic, in input order.
            by_topic: dict[str, list[int]] = {}
            first_in_batch: dict[bytes, int] = {}
            duplicates: list[int] = []
            for i, record in enumerate(records):
                if record.event_id in known or record.event_id in first_in_batch:
                    duplicates.append(i)
                    continue
                first_in_batch[record.event_id] = i
                by_topic.setdefault(self.catalog.topic_for(record.type).name, []).append(i)
            raw.executemany(
                "INSERT INTO event_ids (event_id, topic, digest) VALUES (?, ?, ?)",
                [
                    (ids[i], topic, records[i].digest or None)
                    for topic, idx in by_topic.items()
                    for i in idx
                ],
            )
            for topic, idx in by_topic.items():
                rows = [(ids[i], records[i].type, records[i].value) for i in idx]
                first = self.recorders[topic].append(c, rows)
                for n, i in enumerate(idx):
                    out[i] = Appended(ids[i], Position(topic, 0, first + n), False)
            # 3. Duplicates point at the first copy: in the log, or earlier in this batch. One
            #    whose content differs from that copy's is a conflict (the copy is kept).
            for i in duplicates:
                key = ids[i]
                if key in first_in_batch and first_in_batch[key] != i:
                    original = out[first_in_batch[key]]
                    assert original is not None
                    position = original.position
                    stored = records[first_in_batch[key]].digest
                else:
                    topic = known[key]
                    offset = self.recorders[topic].offset_of(c, UUID(bytes=key))
                    position = Position(topic, 0, offset)
                    kept = digests.get(key)
                    stored = kept if kept else self._stored_digest(c, topic, offset)
                conflict = bool(stored) and bool(records[i].digest) and stored != records[i].digest
                out[i] = Appended(key, position, True, conflict, stored if conflict else b"")
        return [a for a in out if a is not None]

    def _stored_digest(self, c: SQLiteCursor, topic: str, offset: int) -> bytes:
        c.execute(
            f"SELECT state FROM {self.recorders[topic].events_table_name} WHERE rowid=?",
            (offset + 1,),
        )
        row = c.fetchone()
        try:
            return content_digest(bytes(row[0])) if row is not None else b""
        except EventRejected:  # stored by an older contract it no longer meets: cannot tell
            return b""

    def dead_letter(self, letters: Sequence[DeadLetter]) -> list[Position]:
        topic = self.catalog.dead_letter.name
        rows = [
            (
                uuid4().bytes,
                "dead_letter",
                orjson.dumps(
                    {
                        "headers": letter.headers(),
                        "value": base64.b64encode(letter.original).decode(),
                    }
                ),
            )
            for letter in letters
        ]
        with self.datastore.transaction(commit=True) as c:
            _write_lock(c)
            first = self.recorders[topic].append(c, rows)
        return [Position(topic, 0, first + n) for n in range(len(rows))]

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
        # The recorder's select_notifications also parses ids we do not need; reading just
        # (rowid, topic, state) from its table is several times faster. Its topic column holds
        # the event type, which lets a runner skip records no view wants without decoding.
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT rowid, topic, state FROM {recorder.events_table_name} "
                "WHERE rowid>=? ORDER BY rowid LIMIT ?",
                (offset + 1, limit),
            )
            rows = c.fetchall()
        if topic == self.catalog.dead_letter.name:
            return [_dead_record(topic, rowid - 1, state) for rowid, _, state in rows]
        return [
            LogRecord(Position(topic, 0, rowid - 1), state, None, {}, event_type)
            for rowid, event_type, state in rows
        ]

    def close(self) -> None:
        self.datastore.close()


def _dead_record(topic: str, offset: int, state: bytes) -> LogRecord:
    doc: dict[str, Any] = orjson.loads(state)
    return LogRecord(
        Position(topic, 0, offset), base64.b64decode(doc["value"]), None, doc["headers"]
    )
