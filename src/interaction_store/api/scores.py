"""The lead-score routes: a lead's score under each scoring model, or one model's score with
the events and rules behind it; and a seller's queue, the leads sales-ready under a model."""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from interaction_store.api import lookup
from interaction_store.api.access import Principal
from interaction_store.api.auth import ScoresReader
from interaction_store.api.errors import APIError
from interaction_store.api.parameters import AsOf, Svc, id_path, utc
from interaction_store.api.problems import READ_ERRORS, answering, invalid, unknown
from interaction_store.api.services import Services
from interaction_store.api.waits import ReadAfter, ReadAfterDep
from interaction_store.projection.scoring import (
    NOT_CREATED,
    Explanation,
    LeadScores,
    UnknownLead,
    UnknownModel,
)
from interaction_store.projection.scoring.queue import LEAD_STATUSES, MAX_LIMIT

router = APIRouter(tags=["read"])


class ExplainedEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    event_id: str
    type: str
    occurred_at: datetime
    subject: str
    rule_id: str
    rule: str
    points: float
    decayed_points: float


class SetAsideEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    event_id: str
    type: str
    occurred_at: datetime
    subject: str
    rule_id: str
    reason: str


class WithheldOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    description: str
    points: float


class RuleSummaryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    rule_id: str
    description: str
    points: float
    counted: int
    set_aside: int
    total: float


class ExplanationOut(BaseModel):
    """The events and rules behind a score: the events' decayed points sum to it when the
    caller may read every category. Events of the others are neither listed nor counted (in
    the rules either); what they add is the one ``withheld`` line of points."""

    subjects: list[str] = Field(description="The contacts and visitors whose events count")
    events: list[ExplainedEventOut]
    set_aside: list[SetAsideEventOut]
    rules: list[RuleSummaryOut]
    withheld: WithheldOut | None = Field(
        default=None,
        description="Points of the categories the caller may not read, without events or "
        "counts; null when it may read every category",
    )

    @classmethod
    def of(cls, e: Explanation) -> ExplanationOut:
        return cls(
            subjects=list(e.subjects),
            events=[ExplainedEventOut.model_validate(x) for x in e.events],
            set_aside=[SetAsideEventOut.model_validate(x) for x in e.set_aside],
            rules=[RuleSummaryOut.model_validate(r) for r in e.rules],
            withheld=None if e.withheld is None else WithheldOut.model_validate(e.withheld),
        )


class ScoreStatus(StrEnum):
    scored = "scored"
    not_scored = "not_scored"


class LeadScoreOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    lead_id: str
    model: str
    model_version: int
    status: ScoreStatus
    reason: str | None = Field(description="Why the lead is not scored")
    lead_status: str | None = Field(description="open, qualified, disqualified; null: unknown")
    score: float | None = Field(
        description="The whole score, also of events of categories the caller may not read "
        "(what sales-readiness is decided on)"
    )
    grade: str | None
    counted: int = Field(
        description="How many events of the categories the caller may read count in the score"
    )
    as_of: datetime | None
    threshold: float
    sales_ready: bool = Field(description="Sales-ready in its current scoring episode")
    sales_ready_at: datetime | None
    episode: int = Field(
        default=0,
        description="The scoring episode: 0 until sales first returns the lead to marketing, "
        "then one more at each return (each can hand the lead over once)",
    )
    explanation: ExplanationOut | None = Field(default=None, description="With `explain=true` only")


class LeadScoresOut(BaseModel):
    lead_id: str
    scores: list[LeadScoreOut] = Field(description="One per scoring model of the live view")


def _lead_scores(
    svc: Services, lead_id: str, as_of: datetime | None, after: ReadAfter, reader: Principal
) -> tuple[LeadScores, list[LeadScoreOut], bool]:
    """The live view, the lead's score under each of its models (``counted`` over the
    reader's categories), and whether the view has rows for the lead (a lead known only
    elsewhere is "not scored" under every model)."""
    view = svc.read.view("lead_scores")
    assert isinstance(view, LeadScores)
    try:
        scores = svc.read.lead_scores(lead_id, as_of, reader.role.read)
        return view, [LeadScoreOut.model_validate(s) for s in scores], True
    except UnknownLead:
        if not lookup.known(svc.read, "lead", lead_id):
            raise unknown("lead", lead_id) from None
    return (
        view,
        [
            LeadScoreOut(
                lead_id=lead_id,
                model=m.name,
                model_version=m.version,
                status=ScoreStatus.not_scored,
                reason=NOT_CREATED,
                lead_status=None,
                score=None,
                grade=None,
                counted=0,
                as_of=None,
                threshold=m.sales_ready_threshold,
                sales_ready=False,
                sales_ready_at=None,
            )
            for m in sorted(view.models.values(), key=lambda m: m.name)
        ],
        False,
    )


@router.get(
    "/v1/leads/{lead_id}/scores",
    summary="A lead's score under each scoring model, or why it is not scored",
    response_model=LeadScoresOut,
    responses=READ_ERRORS,
)
def lead_scores(
    lead_id: Annotated[UUID, id_path("lead")],
    reader: ScoresReader,
    svc: Svc,
    after: ReadAfterDep,
    as_of: AsOf = None,
) -> LeadScoresOut:
    lid = str(lead_id)
    with answering():
        _, scores, _ = _lead_scores(svc, lid, utc("as_of", as_of), after, reader)
    return LeadScoresOut(lead_id=lid, scores=scores)


@router.get(
    "/v1/leads/{lead_id}/scores/{model}",
    summary="A lead's score under one scoring model, with its explanation when asked",
    response_model=LeadScoreOut,
    responses=READ_ERRORS,
)
def lead_score(
    lead_id: Annotated[UUID, id_path("lead")],
    model: Annotated[str, Path(description="The scoring model's name")],
    reader: ScoresReader,
    svc: Svc,
    after: ReadAfterDep,
    explain: Annotated[
        bool, Query(description="Add the events and rules behind the score")
    ] = False,
    as_of: AsOf = None,
) -> LeadScoreOut:
    lid, at = str(lead_id), utc("as_of", as_of)
    with answering():
        view, scores, stored = _lead_scores(svc, lid, at, after, reader)
        chosen = next((s for s in scores if s.model == model), None)
        if chosen is None:
            names = sorted(view.models)
            raise APIError(
                404,
                f"no scoring model {model!r} in the live lead-scores view {view.instance!r}; "
                f"it has {', '.join(names)}",
                model=model,
                models=names,
            )
        if explain:
            empty = ExplanationOut(subjects=[], events=[], set_aside=[], rules=[])
            explanation = empty
            if stored:
                # UnknownLead: the lead's rows went away between the two reads.
                with suppress(UnknownLead):
                    explained = svc.read.explain(lid, model, at, reader.role.read)
                    explanation = ExplanationOut.of(explained)
            chosen = chosen.model_copy(update={"explanation": explanation})
    return chosen


class QueuedLeadOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    lead_id: str
    score: float
    grade: str | None
    sales_ready_at: datetime = Field(description="When it became sales-ready in this episode")
    episode: int
    lead_status: str = Field(description="open, qualified or disqualified")
    topic: str | None
    source: str | None
    parent_contact_id: str | None
    parent_account_id: str | None


class SalesReadyLeadsOut(BaseModel):
    model: str
    leads: list[QueuedLeadOut] = Field(description="The most recently sales-ready first")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last")


@router.get(
    "/v1/leads",
    summary="A seller's queue: the leads sales-ready under a scoring model, newest first",
    response_model=SalesReadyLeadsOut,
    responses=READ_ERRORS,
)
def sales_ready_leads(
    reader: ScoresReader,
    svc: Svc,
    after: ReadAfterDep,
    model: Annotated[str, Query(description="The scoring model's name")],
    sales_ready: Annotated[
        bool, Query(description="Must be true: the leads listed are the sales-ready ones")
    ],
    lead_status: Annotated[
        str | None,
        Query(description=f"Only leads of this status: {', '.join(LEAD_STATUSES)}"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(description="From the previous page")] = None,
) -> SalesReadyLeadsOut:
    if not sales_ready:
        raise invalid(
            "query", "sales_ready", sales_ready, "only true is served: no listing of every lead"
        )
    if lead_status is not None and lead_status not in LEAD_STATUSES:
        raise invalid("query", "lead_status", lead_status, f"one of {', '.join(LEAD_STATUSES)}")
    with answering():
        view = svc.read.view("lead_scores")
        try:
            page = svc.read.sales_ready_leads(
                model, limit=limit, cursor=cursor, lead_status=lead_status
            )
        except UnknownModel:
            names = sorted(view.models) if isinstance(view, LeadScores) else []
            raise APIError(
                404,
                f"no scoring model {model!r} in the live lead-scores view {view.instance!r}; "
                f"it has {', '.join(names)}",
                model=model,
                models=names,
            ) from None
        except ValueError as exc:
            raise invalid("query", "cursor", cursor, str(exc)) from None
    return SalesReadyLeadsOut(
        model=page.model,
        leads=[QueuedLeadOut.model_validate(x) for x in page.leads],
        next_cursor=page.next_cursor,
    )
