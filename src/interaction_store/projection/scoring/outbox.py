"""Publishing the ``lead.sales_ready`` outbox to the log, and the table that records what was
published."""

from __future__ import annotations

from datetime import UTC, datetime

from interaction_store.codec import decode
from interaction_store.log.base import EventLog
from interaction_store.projection.scoring.leads import KIND, TableNames
from interaction_store.views.base import ViewStore


def published_ddl(n: TableNames) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {n.own('published')} (event_id TEXT PRIMARY KEY, "
        "model TEXT NOT NULL, lead_id TEXT NOT NULL, published_at TEXT NOT NULL)"
    )


def publish_outbox(
    store: ViewStore, log: EventLog, *, instance: str = KIND, batch_size: int = 500
) -> int:
    """Publish the ``lead.sales_ready`` events not yet published; return how many.

    Each batch is published, then marked. A crash between the two publishes the batch again
    next time, and the log skips the event ids it holds. One window remains: on Kafka, a crash
    between the broker's acknowledgement and the event-id index's write leaves a second,
    identical copy (same deterministic event id), so consumers should key on ``event_id``.
    """
    n = TableNames(instance)
    store.ensure([published_ddl(n)])
    done = 0
    while True:
        with store.transaction() as c:
            # One publisher at a time: each worker of a group publishes after its batches,
            # and two that read the same pending rows would both send them (the log knows an
            # event id only once the broker has acknowledged it).
            store.exclusive(c, f"istore-outbox:{instance}")
            c.execute(
                f"SELECT o.event_id, o.model, o.lead_id, o.event FROM {n.own('outbox')} o "
                f"WHERE NOT EXISTS (SELECT 1 FROM {n.own('published')} p "
                "WHERE p.event_id = o.event_id) ORDER BY o.occurred_at, o.event_id LIMIT %s",
                (batch_size,),
            )
            part = c.fetchall()
            if not part:
                return done
            log.publish([decode(doc) for _, _, _, doc in part])
            now = datetime.now(UTC).isoformat()
            c.executemany(
                f"INSERT INTO {n.own('published')} VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (event_id) DO NOTHING",
                [(event_id, model, lead, now) for event_id, model, lead, _ in part],
            )
        done += len(part)
