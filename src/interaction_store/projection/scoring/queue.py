"""A seller's queue: one scoring model's sales-ready leads, newest hand-over first, a page at a
time (the cursor is the last row's (sales_ready_at, lead_id))."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import orjson

from interaction_store.projection.scoring.leads import KIND, TableNames
from interaction_store.projection.scoring.read import UnknownModel, stored_models
from interaction_store.views.base import ViewStore

MAX_LIMIT = 500
LEAD_STATUSES = ("open", "qualified", "disqualified")


@dataclass(frozen=True)
class QueuedLead:
    """A lead sales-ready under a model in its current scoring episode."""

    lead_id: str
    model: str
    score: float
    grade: str | None
    sales_ready_at: datetime
    episode: int
    lead_status: str
    topic: str | None
    source: str | None
    parent_contact_id: str | None
    parent_account_id: str | None


@dataclass(frozen=True)
class SalesReadyPage:
    model: str
    leads: tuple[QueuedLead, ...]
    next_cursor: str | None
    """Pass it back for the next page; None on the last one."""


def _encode(at: str, lead_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([at, lead_id])).decode().rstrip("=")


def _decode(cursor: str) -> tuple[str, str]:
    problem = f"cursor {cursor!r}: not a cursor this queue returned; start again without one"
    if not cursor or len(cursor) > 200:
        raise ValueError(problem)
    try:
        at, lead_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        datetime.fromisoformat(at)
        UUID(lead_id)
    except (binascii.Error, orjson.JSONDecodeError, TypeError, ValueError):
        raise ValueError(problem) from None
    return str(at), str(lead_id)


def sales_ready_leads(
    store: ViewStore,
    model: str,
    *,
    instance: str = KIND,
    limit: int = 50,
    cursor: str | None = None,
    lead_status: str | None = None,
) -> SalesReadyPage:
    """One page of the leads sales-ready under ``model`` in their current scoring episode,
    the most recently sales-ready first (ties by lead id). ``lead_status`` keeps only leads
    of that status (``open``: not yet qualified or disqualified by a seller).

    Raises :class:`UnknownModel` for a model the view does not score with, ValueError for a
    bad limit, status or cursor (the message names it)."""
    if isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit {limit!r}: must be 1 to {MAX_LIMIT}")
    if lead_status is not None and lead_status not in LEAD_STATUSES:
        raise ValueError(f"lead_status {lead_status!r}: must be one of {', '.join(LEAD_STATUSES)}")
    after = None if cursor is None else _decode(cursor)
    n = TableNames(instance)
    where = ["s.model = %s", "s.sales_ready = %s"]
    params: list[object] = [model, True]
    if lead_status is not None:
        where.append("s.lead_status = %s")
        params.append(lead_status)
    if after is not None:
        where.append("(s.sales_ready_at < %s OR (s.sales_ready_at = %s AND s.lead_id < %s))")
        params.extend((after[0], after[0], after[1]))
    with store.reading() as c:
        models = stored_models(c, n)
        if model not in models:
            raise UnknownModel(model, models)
        c.execute(
            "SELECT s.lead_id, s.score, s.grade, s.sales_ready_at, s.episode, s.lead_status, "
            "l.topic, l.source, l.parent_contact_id, l.parent_account_id "
            f"FROM {n.own('scores')} s LEFT JOIN {n.prof('leads')} l ON l.lead_id = s.lead_id "
            f"WHERE {' AND '.join(where)} "
            "ORDER BY s.sales_ready_at DESC, s.lead_id DESC LIMIT %s",
            (*params, limit + 1),
        )
        rows = c.fetchall()
    leads = tuple(
        QueuedLead(
            lead_id,
            model,
            float(score),
            grade,
            datetime.fromisoformat(at),
            int(episode),
            status,
            topic or None,
            source,
            contact,
            account,
        )
        for lead_id, score, grade, at, episode, status, topic, source, contact, account in rows[
            :limit
        ]
    )
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    return SalesReadyPage(model, leads, None if last is None else _encode(last[3], last[0]))
