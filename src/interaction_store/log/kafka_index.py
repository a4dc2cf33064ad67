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
            "partition INTEGER, offset INTEGER, digest BLOB) WITHOUT ROWID"
        )
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(event_ids)")}
        if "digest" not in columns:  # an index from before conflicts were told apart
            self.db.execute("ALTER TABLE event_ids ADD COLUMN digest BLOB")

    def find(self, event_ids: Sequence[bytes]) -> dict[bytes, tuple[Position, bytes]]:
        """The positions and content digests of the ids (16-byte UUIDs) in the index (the
        digest is empty for ids indexed before digests were kept)."""
        found: dict[bytes, tuple[Position, bytes]] = {}
        for i in range(0, len(event_ids), 500):
            chunk = event_ids[i : i + 500]
            rows = self.db.execute(
                "SELECT event_id, topic, partition, offset, digest FROM event_ids "
                f"WHERE event_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for eid, topic, partition, offset, digest in rows:
                found[eid] = (Position(topic, partition, offset), digest or b"")
        return found

    def record(self, entries: Sequence[tuple[bytes, Position, bytes]]) -> None:
        """Index stored events: (id, position, content digest)."""
        self.db.execute("BEGIN")
        try:
            self.db.executemany(
                "INSERT OR IGNORE INTO event_ids VALUES (?, ?, ?, ?, ?)",
                [(e, p.topic, p.partition, p.offset, d) for e, p, d in entries],
            )
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()
