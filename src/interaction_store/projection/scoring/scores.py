"""A lead's rows in the scores and outbox tables: its score under one model, the first instant
it became sales-ready, the ``lead.sales_ready`` event that announces it; and writing them."""

from __future__ import annotations

import uuid

import orjson

from interaction_store.codec import to_document
from interaction_store.events import CURRENT_VERSIONS, EVENT_TYPES
from interaction_store.projection.scoring.leads import LeadContext, TableNames
from interaction_store.projection.scoring.points import LeadMatches, micros
from interaction_store.views.base import Cursor, insert_rows

SALES_READY_NAMESPACE = uuid.UUID("6f1d3c52-8a51-4c1e-9d0e-5b7c2a40e1a7")
SALES_READY_SOURCE = "istore.lead_scores"

_SCORE_COLUMNS = (
    "lead_id",
    "model",
    "model_version",
    "status",
    "reason",
    "lead_status",
    "score",
    "grade",
    "counted",
    "as_of",
    "sales_ready",
    "sales_ready_at",
)
_SCORE_KEY = ("lead_id", "model")


def sales_ready_event_id(model: str, lead_id: str) -> uuid.UUID:
    """The same id for a (model, lead) in every rebuild, so the log keeps one event."""
    return uuid.uuid5(SALES_READY_NAMESPACE, f"{model}|{lead_id}")


def score_row(
    ctx: LeadContext, lm: LeadMatches, start: str | None, previous: str | None
) -> tuple[tuple[object, ...], str | None, bool]:
    """The lead's row under one model, its sales-ready instant, and whether that instant was
    recomputed. ``start``: the earliest instant anything changed (None: anything may have)."""
    model = lm.model
    head: tuple[object, ...] = (ctx.lead_id, model.name, model.version)
    if ctx.reason is not None or ctx.created_at is None:
        row = (*head, "not_scored", ctx.reason, ctx.lead_status, None, None, 0, None, False, None)
        return row, None, True
    as_of = max(ctx.created_at, lm.latest or ctx.created_at)
    result = lm.evaluate(micros(as_of))
    crossing: str | None = previous
    recomputed = not (previous is not None and start is not None and previous < start)
    if recomputed:  # else nothing before `start` changed, so neither did the crossing
        crossing = first_sales_ready(ctx, lm, start)
    row = (*head, "scored", None, ctx.lead_status, result.score, result.grade, len(result.terms))
    return (*row, as_of, crossing is not None, crossing), crossing, recomputed


def first_sales_ready(ctx: LeadContext, lm: LeadMatches, start: str | None) -> str | None:
    """The first instant the open lead's score reaches the threshold (from ``start`` on: the
    instants before it were checked already and fell short)."""
    created = ctx.created_at
    assert created is not None
    instants = {created: micros(created)}
    instants.update((at, us) for at, us in lm.instants().items() if at > created)
    instants.update((at, micros(at)) for at in ctx.reopenings() if at > created)
    threshold = lm.model.sales_ready_threshold
    for at in sorted(instants):
        if start is not None and at < start:
            continue
        if ctx.open_at(at) and lm.score_at(instants[at]) >= threshold:
            return at
    return None


def outbox_row(ctx: LeadContext, lm: LeadMatches, at: str) -> tuple[object, ...]:
    model = lm.model
    score = lm.score_at(micros(at))
    event_id = sales_ready_event_id(model.name, ctx.lead_id)
    subject = {"lead_id": ctx.lead_id}
    if ctx.parent_contact_id is not None:
        subject["contact_id"] = ctx.parent_contact_id
    if ctx.parent_account_id is not None:
        subject["account_id"] = ctx.parent_account_id
    event = EVENT_TYPES["lead.sales_ready"].model_validate(
        {
            "event_id": event_id,
            "type": "lead.sales_ready",
            "schema_version": CURRENT_VERSIONS["lead.sales_ready"],
            "occurred_at": at,
            "source": SALES_READY_SOURCE,
            "subject": subject,
            "payload": {
                "model": model.name,
                "score": score,
                "threshold": model.sales_ready_threshold,
            },
        }
    )
    document = orjson.dumps(to_document(event)).decode()
    return (model.name, ctx.lead_id, str(event_id), at, score, document)


def write_rows(
    cursor: Cursor,
    n: TableNames,
    scores: list[tuple[object, ...]],
    outbox: list[tuple[object, ...]],
    withdrawn: list[tuple[str, str]],
) -> None:
    insert_rows(cursor, n.own("scores"), _SCORE_COLUMNS, scores, _SCORE_KEY, _SCORE_COLUMNS[2:])
    if outbox:
        # A late event can move the crossing earlier: the row follows (same event id).
        cursor.executemany(
            f"INSERT INTO {n.own('outbox')} VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (model, lead_id) DO UPDATE SET occurred_at = EXCLUDED.occurred_at, "
            "score = EXCLUDED.score, event = EXCLUDED.event",
            outbox,
        )
    if withdrawn:
        cursor.executemany(
            f"DELETE FROM {n.own('outbox')} WHERE model = %s AND lead_id = %s", withdrawn
        )
