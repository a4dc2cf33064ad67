"""The event-id index of the Kafka log: ids already on the broker, with their positions, so
publishing can answer a repeated id as a duplicate (Kafka cannot refuse one itself)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from interaction_store.log.base import Position


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
