"""Publishing the ``lead.sales_ready`` outbox to the log, and the table that records what was
published."""

from __future__ import annotations

from datetime import UTC, datetime

from interaction_store.codec import decode
from interaction_store.log.base import EventLog
from interaction_store.projection.base import chunks
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
    next time, and the log, which skips event ids it holds, keeps one copy.
    """
    n = TableNames(instance)
    store.ensure([published_ddl(n)])
    with store.reading() as c:
        c.execute(
            f"SELECT o.event_id, o.model, o.lead_id, o.event FROM {n.own('outbox')} o "
            f"WHERE NOT EXISTS (SELECT 1 FROM {n.own('published')} p "
            "WHERE p.event_id = o.event_id) ORDER BY o.occurred_at, o.event_id"
        )
        pending = c.fetchall()
    done = 0
    for part in chunks(pending, batch_size):
        log.publish([decode(doc) for _, _, _, doc in part])
        now = datetime.now(UTC).isoformat()
        with store.transaction() as c:
            c.executemany(
                f"INSERT INTO {n.own('published')} VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (event_id) DO NOTHING",
                [(event_id, model, lead, now) for event_id, model, lead, _ in part],
            )
        done += len(part)
    return done
