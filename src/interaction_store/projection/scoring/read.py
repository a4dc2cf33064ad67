"""Reading lead scores back, as stored or recomputed as of another instant, and explaining one:
the events and rules behind it."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from interaction_store.projection.base import HIDDEN_EVENT, iso
from interaction_store.projection.scoring.leads import (
    KIND,
    LeadContext,
    TableNames,
    lead_contexts,
    load_matches,
)
from interaction_store.projection.scoring.model import ScoringModel
from interaction_store.projection.scoring.points import LeadMatches, Match, micros
from interaction_store.views.base import Cursor, ViewStore

Shown = Callable[[str], bool]
"""Whether the reader may see an event of a type (its read category); None: every type."""

WITHHELD = "other categories you may not read"


class UnknownLead(LookupError):
    def __init__(self, lead_id: str, instance: str) -> None:
        self.lead_id = lead_id
        super().__init__(f"no lead {lead_id} in the {instance} view (no event about it yet?)")


class UnknownModel(LookupError):
    def __init__(self, model: str, known: Iterable[str]) -> None:
        self.model = model
        super().__init__(f"no scoring model {model!r} in this view; it has {', '.join(known)}")


@dataclass(frozen=True)
class LeadScore:
    """A lead's score under one model."""

    lead_id: str
    model: str
    model_version: int
    status: str
    """``scored`` or ``not_scored`` (then ``reason`` says why)."""
    reason: str | None
    lead_status: str
    score: float | None
    grade: str | None
    counted: int
    """How many events count in the score; for a reader that may not see every category,
    only those of its categories (the score is the whole score all the same)."""
    as_of: datetime | None
    threshold: float
    sales_ready: bool
    """The lead reached the threshold (it is marketing-qualified) in its scoring episode of
    ``as_of``, at or before it."""
    sales_ready_at: datetime | None
    episode: int = 0
    """The scoring episode of ``as_of``: 0 until sales first returns the lead to marketing,
    then one more at each return."""


@dataclass(frozen=True)
class ExplainedEvent:
    """One event behind a score: the rule it matched and what it adds."""

    event_id: str
    type: str
    occurred_at: datetime
    subject: str
    rule_id: str
    rule: str
    points: float
    decayed_points: float


@dataclass(frozen=True)
class SetAsideEvent:
    """An event a rule matched that does not count at ``as_of``, and why."""

    event_id: str
    type: str
    occurred_at: datetime
    subject: str
    rule_id: str
    reason: str


@dataclass(frozen=True)
class RuleSummary:
    rule_id: str
    description: str
    points: float
    counted: int
    set_aside: int
    total: float


@dataclass(frozen=True)
class Withheld:
    """The points of the events a reader may not see, as one line: no events, no rules, no
    counts."""

    description: str
    points: float


@dataclass(frozen=True)
class Explanation:
    """The events and rules behind a lead's score; ``events`` sum to ``score``, with
    ``withheld`` when the reader may not see every category."""

    lead_id: str
    model: str
    model_version: int
    status: str
    reason: str | None
    as_of: datetime | None
    score: float | None
    grade: str | None
    threshold: float
    sales_ready_at: datetime | None
    subjects: tuple[str, ...] = ()
    """The contacts (and identified visitors) whose interactions count."""
    events: tuple[ExplainedEvent, ...] = ()
    set_aside: tuple[SetAsideEvent, ...] = ()
    rules: tuple[RuleSummary, ...] = ()
    withheld: Withheld | None = None
    """For a reader that may not see every category: what the others add, in one line."""


def stored_models(cursor: Cursor, n: TableNames) -> dict[str, ScoringModel]:
    cursor.execute(f"SELECT name, definition FROM {n.own('models')} ORDER BY name")
    return {name: ScoringModel.model_validate_json(d) for name, d in cursor.fetchall()}


def lead_scores(
    store: ViewStore,
    lead_id: str | uuid.UUID,
    *,
    instance: str = KIND,
    as_of: datetime | None = None,
    shown: Shown | None = None,
) -> list[LeadScore]:
    """A lead's score under each model, as stored, or recomputed as of another instant;
    ``counted`` only the events ``shown`` lets the reader see."""
    n, lead = TableNames(instance), str(lead_id)
    with store.reading() as c:
        c.execute(
            "SELECT model, model_version, status, reason, lead_status, score, grade, counted, "
            f"as_of, sales_ready_at, episode FROM {n.own('scores')} WHERE lead_id = %s "
            "ORDER BY model",
            (lead,),
        )
        rows = c.fetchall()
        if not rows:
            raise UnknownLead(lead, instance)
        models = stored_models(c, n)
        out = []
        for row in rows:
            name, version, status, reason, lead_status, score, grade, counted, at, ready = row[:10]
            episode = row[10]
            if status == "scored" and (as_of is not None or shown is not None):
                asked = None if as_of is None else _instant(as_of)
                at = asked or at
                ctx, lm = _matches(c, n, lead, models[name], asked)
                result = lm.evaluate(micros(at))
                if asked is not None:
                    score, grade, counted = result.score, result.grade, len(result.terms)
                    episode, ready = _ready_as_of(c, n, ctx, name, asked)
                if shown is not None:
                    # The stored count includes events the reader may not see.
                    counted = sum(1 for t in result.terms if shown(t.match.event_type))
            score = None if score is None else float(score)
            threshold = models[name].sales_ready_threshold
            head = (lead, name, version, status, reason, lead_status, score, grade, counted)
            ready_at = _when(ready)
            out.append(LeadScore(*head, _when(at), threshold, ready is not None, ready_at, episode))
        return out


def _ready_as_of(
    cursor: Cursor, n: TableNames, ctx: LeadContext, model: str, at: str
) -> tuple[int, str | None]:
    """The lead's scoring episode at ``at`` and when it became sales-ready in it (if it did
    by then), from the outbox rows."""
    current = [e for e in ctx.episodes() if e.start <= at]
    if not current:
        return 0, None
    episode = current[-1]
    cursor.execute(
        f"SELECT occurred_at FROM {n.own('outbox')} WHERE lead_id = %s AND model = %s "
        "AND episode_key = %s",
        (ctx.lead_id, model, episode.key),
    )
    row = cursor.fetchone()
    return episode.number, row[0] if row is not None and row[0] <= at else None


def explain(
    store: ViewStore,
    lead_id: str | uuid.UUID,
    model: str,
    *,
    instance: str = KIND,
    as_of: datetime | None = None,
    shown: Shown | None = None,
) -> Explanation:
    """The events and rules behind a lead's score under ``model`` (as of the stored instant,
    or ``as_of``); the events' decayed points sum to the score.

    With ``shown``, only the events it lets the reader see are listed and counted (rules
    included), a reason never names a hidden event, and what the hidden ones add is one
    :class:`Withheld` line of points (present even at 0, so that it tells nothing either)."""
    n, lead = TableNames(instance), str(lead_id)
    with store.reading() as c:
        models = stored_models(c, n)
        if model not in models:
            raise UnknownModel(model, models)
        c.execute(
            f"SELECT status, reason, as_of, sales_ready_at FROM {n.own('scores')} "
            "WHERE lead_id = %s AND model = %s",
            (lead, model),
        )
        row = c.fetchone()
        if row is None:
            raise UnknownLead(lead, instance)
        status, reason, at, ready = row
        m = models[model]
        asked = None if as_of is None else _instant(as_of)
        ctx, lm = _matches(c, n, lead, m, asked)
        if asked is not None:
            ready = _ready_as_of(c, n, ctx, model, asked)[1]
    explained = Explanation(
        lead, model, m.version, status, reason, None, None, None, m.sales_ready_threshold, None
    )
    if status != "scored":
        return explained
    at = asked if asked is not None else at
    result = lm.evaluate(micros(at))
    see = shown or (lambda _: True)
    hidden = {x.event_id for _, kept, _ in lm.rules for x in kept if not see(x.event_type)}
    hidden.update(x.event_id for x, _ in lm.repeats if not see(x.event_type))
    described = {r.id: r.description for r in m.rules}
    events = tuple(
        ExplainedEvent(
            *_identity(t.match), described[t.match.rule_id], t.match.points, round(t.decayed, 6)
        )
        for t in result.terms
        if see(t.match.event_type)
    )
    aside = tuple(
        SetAsideEvent(*_identity(a.match), _unnamed(a.reason, hidden))
        for a in result.set_aside
        if see(a.match.event_type)
    )
    withheld = None
    if shown is not None:
        rest = math.fsum(t.decayed for t in result.terms if not see(t.match.event_type))
        withheld = Withheld(WITHHELD, round(rest, 6) + 0.0)
    rules = tuple(
        RuleSummary(
            r.id,
            r.description,
            r.points,
            counted=sum(1 for e in events if e.rule_id == r.id),
            set_aside=sum(1 for a in aside if a.rule_id == r.id),
            total=round(math.fsum(e.decayed_points for e in events if e.rule_id == r.id), 6),
        )
        for r in m.rules
    )
    return replace(
        explained,
        as_of=_when(at),
        score=result.score,
        grade=result.grade,
        sales_ready_at=_when(ready if ready is not None and ready <= at else None),
        subjects=tuple(ctx.subjects),
        events=events,
        set_aside=aside,
        rules=rules,
        withheld=withheld,
    )


def _unnamed(reason: str, hidden: set[str]) -> str:
    """A reason that names no hidden event (a ``once_per`` repeat names the first one)."""
    for event_id in hidden:
        reason = reason.replace(f"event {event_id}", HIDDEN_EVENT)
    return reason


def _matches(
    cursor: Cursor, n: TableNames, lead_id: str, model: ScoringModel, as_of: str | None = None
) -> tuple[LeadContext, LeadMatches]:
    """The lead's context and matches; its account's members as of ``as_of`` when given."""
    ctx = lead_contexts(cursor, n, [lead_id], as_of)[lead_id]
    by_subject = load_matches(cursor, n, ctx.subjects)
    found = [m for s in ctx.subjects for m in by_subject.get((model.name, s), ())]
    return ctx, LeadMatches(model, found, ctx.attributes)


def _identity(m: Match) -> tuple[str, str, datetime, str, str]:
    return m.event_id, m.event_type, datetime.fromisoformat(m.occurred_at), m.subject_key, m.rule_id


def _instant(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"as_of must be timezone-aware, got {moment!r}")
    return iso(moment)


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
