"""A lead's rows in the scores and outbox tables: its score under one model, the instant it
became sales-ready in each scoring episode, the ``lead.sales_ready`` event that announces each;
and writing them."""

from __future__ import annotations

import uuid

import orjson

from interaction_store.codec import to_document
from interaction_store.events import CURRENT_VERSIONS, EVENT_TYPES
from interaction_store.projection.scoring.leads import Episode, LeadContext, TableNames
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
    "episode",
)
_SCORE_KEY = ("lead_id", "model")


def sales_ready_event_id(model: str, lead_id: str, returned_by: str | None = None) -> uuid.UUID:
    """The same id for a (model, lead, episode) in every rebuild, so the log keeps one event.
    An episode is named by the return to marketing that opened it (none for the first), so a
    late return placed before others renames no episode."""
    tail = f"|{returned_by}" if returned_by else ""
    return uuid.uuid5(SALES_READY_NAMESPACE, f"{model}|{lead_id}{tail}")


Crossings = dict[str, str | None]
"""Episode key (its opener's event id, "" for the first) -> the instant the lead became
sales-ready in it, or None."""


def score_row(
    ctx: LeadContext, lm: LeadMatches, start: str | None, stored: Crossings
) -> tuple[tuple[object, ...], Crossings]:
    """The lead's row under one model, and the crossings of the episodes recomputed (those
    left out are as ``stored``, the outbox's). ``start``: the earliest instant anything
    changed (None: anything may have)."""
    model = lm.model
    head: tuple[object, ...] = (ctx.lead_id, model.name, model.version)
    if ctx.reason is not None or ctx.created_at is None:
        row = (*head, "not_scored", ctx.reason, ctx.lead_status, None, None, 0, None, False, None)
        return (*row, 0), dict.fromkeys(stored)
    as_of = max(ctx.created_at, lm.latest or ctx.created_at)
    result = lm.evaluate(micros(as_of))
    episodes = ctx.episodes()
    changed: Crossings = {}
    for episode in episodes:
        if start is not None:
            if episode.end is not None and episode.end <= start:
                continue  # it ended before anything changed
            before = stored.get(episode.key)
            if before is not None and before < start:
                continue  # nothing before `start` changed, so neither did its crossing
        changed[episode.key] = first_sales_ready(ctx, lm, episode, start)
    current = episodes[-1].key
    crossing = changed[current] if current in changed else stored.get(current)
    row = (*head, "scored", None, ctx.lead_status, result.score, result.grade, len(result.terms))
    return (*row, as_of, crossing is not None, crossing, len(episodes) - 1), changed


def first_sales_ready(
    ctx: LeadContext, lm: LeadMatches, episode: Episode, start: str | None
) -> str | None:
    """The instant the open lead became sales-ready in ``episode``, if it did (from ``start``
    on: the instants before it were checked already and fell short).

    In the first episode: the first instant, from the lead's creation, at which its score
    reaches the threshold. In one opened by a return to marketing: the first matched event
    that takes the score from below the threshold to it, so a lead sales returned still
    scoring high must fall below and climb back (mature again) to be handed over again."""
    threshold = lm.model.sales_ready_threshold
    instants = {at: us for at, us in lm.instants().items() if at >= episode.start}
    if episode.end is not None:
        instants = {at: us for at, us in instants.items() if at < episode.end}
    if episode.returned_by is None:
        instants[episode.start] = micros(episode.start)
    for at in sorted(instants):
        if start is not None and at < start:
            continue
        if not ctx.open_at(at) or lm.score_at(instants[at]) < threshold:
            continue
        if episode.returned_by is None or lm.score_at(instants[at] - 1) < threshold:
            return at
    return None


def outbox_row(ctx: LeadContext, lm: LeadMatches, episode: Episode, at: str) -> tuple[object, ...]:
    model = lm.model
    score = lm.score_at(micros(at))
    event_id = sales_ready_event_id(model.name, ctx.lead_id, episode.returned_by)
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
                "returned_by": episode.returned_by,
            },
        }
    )
    document = orjson.dumps(to_document(event)).decode()
    return (model.name, ctx.lead_id, str(event_id), episode.key, at, score, document)


def write_rows(
    cursor: Cursor,
    n: TableNames,
    scores: list[tuple[object, ...]],
    outbox: list[tuple[object, ...]],
    withdrawn: list[tuple[str, str, str]],
) -> None:
    """Write score rows; upsert outbox rows (a late event can move a crossing: the row
    follows, same event id); delete the (model, lead, event id) of crossings undone."""
    insert_rows(cursor, n.own("scores"), _SCORE_COLUMNS, scores, _SCORE_KEY, _SCORE_COLUMNS[2:])
    if outbox:
        cursor.executemany(
            f"INSERT INTO {n.own('outbox')} VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (lead_id, model, event_id) DO UPDATE SET "
            "occurred_at = EXCLUDED.occurred_at, score = EXCLUDED.score, event = EXCLUDED.event",
            outbox,
        )
    if withdrawn:
        cursor.executemany(
            f"DELETE FROM {n.own('outbox')} WHERE model = %s AND lead_id = %s AND event_id = %s",
            withdrawn,
        )
