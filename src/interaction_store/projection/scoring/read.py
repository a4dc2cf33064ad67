"""Reading lead scores back, as stored or recomputed as of another instant, and explaining one:
the events and rules behind it."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from interaction_store.projection.base import iso
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
    """How many events count in the score."""
    as_of: datetime | None
    threshold: float
    sales_ready: bool
    """The lead reached the threshold (it is marketing-qualified) at or before ``as_of``."""
    sales_ready_at: datetime | None


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
class Explanation:
    """The events and rules behind a lead's score; ``events`` sum to ``score``."""

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


def stored_models(cursor: Cursor, n: TableNames) -> dict[str, ScoringModel]:
    cursor.execute(f"SELECT name, definition FROM {n.own('models')} ORDER BY name")
    return {name: ScoringModel.model_validate_json(d) for name, d in cursor.fetchall()}


def lead_scores(
    store: ViewStore,
    lead_id: str | uuid.UUID,
    *,
    instance: str = KIND,
    as_of: datetime | None = None,
) -> list[LeadScore]:
    """A lead's score under each model, as stored, or recomputed as of another instant."""
    n, lead = TableNames(instance), str(lead_id)
    with store.reading() as c:
        c.execute(
            "SELECT model, model_version, status, reason, lead_status, score, grade, counted, "
            f"as_of, sales_ready_at FROM {n.own('scores')} WHERE lead_id = %s ORDER BY model",
            (lead,),
        )
        rows = c.fetchall()
        if not rows:
            raise UnknownLead(lead, instance)
        models = stored_models(c, n)
        out = []
        for name, version, status, reason, lead_status, score, grade, counted, at, ready in rows:
            if as_of is not None and status == "scored":
                at = _instant(as_of)
                result = _matches(c, n, lead, models[name], at)[1].evaluate(micros(at))
                score, grade, counted = result.score, result.grade, len(result.terms)
                ready = ready if ready is not None and ready <= at else None
            score = None if score is None else float(score)
            threshold = models[name].sales_ready_threshold
            head = (lead, name, version, status, reason, lead_status, score, grade, counted)
            out.append(LeadScore(*head, _when(at), threshold, ready is not None, _when(ready)))
        return out


def explain(
    store: ViewStore,
    lead_id: str | uuid.UUID,
    model: str,
    *,
    instance: str = KIND,
    as_of: datetime | None = None,
) -> Explanation:
    """The events and rules behind a lead's score under ``model`` (as of the stored instant,
    or ``as_of``); the events' decayed points sum to the score."""
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
    explained = Explanation(
        lead, model, m.version, status, reason, None, None, None, m.sales_ready_threshold, None
    )
    if status != "scored":
        return explained
    at = asked if asked is not None else at
    result = lm.evaluate(micros(at))
    described = {r.id: r.description for r in m.rules}
    events = tuple(
        ExplainedEvent(
            *_identity(t.match), described[t.match.rule_id], t.match.points, round(t.decayed, 6)
        )
        for t in result.terms
    )
    aside = tuple(SetAsideEvent(*_identity(a.match), a.reason) for a in result.set_aside)
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
    )


def _matches(
    cursor: Cursor, n: TableNames, lead_id: str, model: ScoringModel, as_of: str | None = None
) -> tuple[LeadContext, LeadMatches]:
    """The lead's context and matches; its account's members as of ``as_of`` when given."""
    ctx = lead_contexts(cursor, n, [lead_id], as_of)[lead_id]
    by_subject = load_matches(cursor, n, ctx.subjects)
    found = [m for s in ctx.subjects for m in by_subject.get((model.name, s), ())]
    return ctx, LeadMatches(model, found)


def _identity(m: Match) -> tuple[str, str, datetime, str, str]:
    return m.event_id, m.event_type, datetime.fromisoformat(m.occurred_at), m.subject_key, m.rule_id


def _instant(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"as_of must be timezone-aware, got {moment!r}")
    return iso(moment)


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
