"""The read API: timelines (filtered by the caller's read categories), consent and send decisions,
lead scores with their explanations, and each live view's position.

Every read takes an optional consistency token (``consistency`` or ``X-Consistency-Token``,
from the ingest API): the read first waits, at most ``wait`` seconds (capped by
``ISTORE_CONSISTENCY_TIMEOUT``), until the views it reads have applied those positions, and
answers 504 with how far behind they are when they have not. An id no live view knows is a 404
(see :mod:`interaction_store.api.lookup`); a bad parameter a 422 naming it and its value.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from interaction_store.api import lookup
from interaction_store.api.access import Principal
from interaction_store.api.auth import (
    Caller,
    ConsentReader,
    ScoresReader,
    TimelineReader,
    services_dependency,
)
from interaction_store.api.consistency import BadToken, Behind, Positions, behind, parse
from interaction_store.api.errors import PROBLEM, APIError
from interaction_store.api.services import Services
from interaction_store.events import ConsentLevel
from interaction_store.projection.consent import (
    Channel,
    Consent,
    ConsentState,
    Purpose,
    UnknownContact,
    decide,
)
from interaction_store.projection.consent.ledger import Ledger
from interaction_store.projection.registry import ViewError
from interaction_store.projection.scoring import (
    NOT_CREATED,
    Explanation,
    LeadScores,
    UnknownLead,
)
from interaction_store.projection.timeline import (
    MAX_LIMIT,
    Timeline,
    decode_cursor,
)

router = APIRouter(tags=["read"])

Svc = Annotated[Services, Depends(services_dependency)]

MAX_WAIT = 60.0
"""The largest ``wait`` a request may ask for (the settings cap it lower)."""


# ------------------------------------------------------------------ response documents


class Problem(BaseModel):
    """An RFC 9457 problem document; some carry more members (``errors`` of a 422, ``behind``
    of a 504, the unknown id of a 404)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str


_DESCRIPTIONS = {
    401: "No API key, or an unknown one",
    403: "The key's role may not read this",
    404: "No live view knows this id (or this scoring model)",
    422: "A parameter is invalid: the problem names it and its value",
    503: "The view this route reads is not live yet (no projection has run)",
    504: "The views did not apply the consistency token's positions in time",
}


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    # Inlined (not `model=`): errors are application/problem+json, never application/json.
    schema = Problem.model_json_schema()
    return {
        code: {"description": _DESCRIPTIONS[code], "content": {PROBLEM: {"schema": schema}}}
        for code in codes
    }


READ_ERRORS = _problems(401, 403, 404, 422, 503, 504)


class Subject(BaseModel):
    kind: str = Field(description="contact, lead or account")
    id: str


class TimelineEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    event_id: str
    type: str
    channel: str
    occurred_at: datetime
    subject_kind: str = Field(description="The timeline it is on: contact, lead or anonymous")
    subject_id: str
    permission: str = Field(description="The read category it needs")
    preview: dict[str, Any]
    status: str | None = Field(description="A message's delivery status; null for the rest")
    status_at: datetime | None
    status_detail: dict[str, Any] | None
    message_id: str | None
    campaign_id: str | None
    journey_id: str | None
    message: dict[str, Any] | None = Field(
        description="For an open, click or reply: the preview of the message it is about"
    )


class TimelinePageOut(BaseModel):
    subject: Subject
    entries: list[TimelineEntryOut] = Field(description="Newest first")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next, older page")
    total: int = Field(
        description="Entries matching the filters over all pages, of the caller's categories"
    )
    window_start: datetime | None = Field(
        description="Where the default window began for the windowed channels (null when "
        "`from` was given)"
    )
    categories: list[str] = Field(description="The read categories the caller's entries are of")


class SourceOut(BaseModel):
    """The event that set a value. Of a category the caller may not read, only its instant:
    ``event_id`` and ``event_type`` null, ``note`` empty."""

    model_config = ConfigDict(from_attributes=True)

    since: datetime
    event_id: str | None
    event_type: str | None
    note: str


class RecordedFlag(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    value: bool
    source: SourceOut | None = Field(description="The event that set it; null: the default")


class RecordedText(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    value: str | None
    source: SourceOut | None


class RecordedLevel(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    value: ConsentLevel
    source: SourceOut | None


class ListMembershipOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    list_id: str
    list_name: str
    member: bool
    source: SourceOut


class PointConsentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    channel: str
    contact_point: str = Field(description='An address, number or device; "*" for every one')
    purpose: str
    topic: str | None
    status: str = Field(description="opted_in or opted_out")
    source: SourceOut


class UndeliverableOut(BaseModel):
    address: str
    source: SourceOut


class ConsentOut(BaseModel):
    contact_id: str
    as_of: datetime | None
    preferences: dict[str, RecordedFlag]
    level: RecordedLevel
    is_child: RecordedFlag
    guardian_contact_id: RecordedText
    email: RecordedText
    phone: RecordedText
    lists: list[ListMembershipOut]
    subscribed: list[str]
    contact_points: list[PointConsentOut]
    undeliverable: list[UndeliverableOut] = Field(description="Addresses that hard-bounced")
    events: int = Field(
        description="Consent-relevant events of the contact, of the categories the caller may "
        "read (0: none of those)"
    )

    @classmethod
    def of(cls, state: ConsentState) -> ConsentOut:
        return cls(
            contact_id=state.contact_id,
            as_of=state.as_of,
            preferences={
                name: RecordedFlag.model_validate(value)
                for name, value in state.preferences.items()
            },
            level=RecordedLevel.model_validate(state.level),
            is_child=RecordedFlag.model_validate(state.is_child),
            guardian_contact_id=RecordedText.model_validate(state.guardian_contact_id),
            email=RecordedText.model_validate(state.email),
            phone=RecordedText.model_validate(state.phone),
            lists=[ListMembershipOut.model_validate(m) for m in state.lists.values()],
            subscribed=state.subscribed,
            contact_points=[PointConsentOut.model_validate(p) for p in state.contact_points],
            undeliverable=[
                UndeliverableOut(address=a, source=SourceOut.model_validate(s))
                for a, s in state.undeliverable.items()
            ],
            events=state.events,
        )


class CheckOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    rule: str
    passed: bool
    reason: str


class DecisionOut(BaseModel):
    contact_id: str
    channel: str
    purpose: str
    list_id: str | None
    topic: str | None
    as_of: datetime | None
    may_send: bool
    reasons: list[str] = Field(description="The failed rules; when it may send, every rule")
    checks: list[CheckOut]


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
    sales_ready: bool
    sales_ready_at: datetime | None
    explanation: ExplanationOut | None = Field(default=None, description="With `explain=true` only")


class LeadScoresOut(BaseModel):
    lead_id: str
    scores: list[LeadScoreOut] = Field(description="One per scoring model of the live view")


class PartitionPosition(BaseModel):
    topic: str
    partition: int
    position: int | None = Field(description="The last offset applied; null: none yet")
    lag: int = Field(description="Events in the log the view has not applied")


class ViewPosition(BaseModel):
    view: str
    kind: str
    lag: int = Field(description="Events not applied, over every partition")
    partitions: list[PartitionPosition]


class PositionsOut(BaseModel):
    views: list[ViewPosition]


# ------------------------------------------------------------------ parameters


def _invalid(where: str, name: str, value: object, message: str) -> APIError:
    """A 422 shaped like the app's validation errors: the parameter, its value, the problem."""
    return APIError(
        422,
        f"{where} parameter {name!r}: {message} (got {value!r})",
        errors=[{"in": where, "parameter": name, "value": value, "message": message}],
    )


def _utc(name: str, moment: datetime | None) -> datetime | None:
    """The instant in UTC; 422 when it falls outside the years 1 to 9999 there."""
    if moment is None:
        return None
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or utc.year < 1000:
        raise _invalid("query", name, moment.isoformat(), "out of range (years 1000 to 9999 UTC)")
    return utc


@dataclass(frozen=True)
class ReadAfter:
    """The positions a read must see first (None: no token) and how long it may wait."""

    required: Positions | None
    """Already waited for by the time a route runs (see :func:`read_after`)."""
    timeout: float


async def read_after(
    svc: Svc,
    consistency: Annotated[
        str | None,
        Query(
            description="A consistency token from the ingest API: answer only once the views "
            "read have applied what it wrote"
        ),
    ] = None,
    consistency_header: Annotated[
        str | None,
        Header(alias="X-Consistency-Token", description="The same, as a header"),
    ] = None,
    wait: Annotated[
        float | None,
        Query(
            ge=0,
            le=MAX_WAIT,
            description="Seconds to wait for the token's positions (default and cap: the "
            "server's consistency timeout)",
        ),
    ] = None,
) -> ReadAfter:
    cap = svc.settings.consistency_timeout
    timeout = cap if wait is None else min(wait, cap)
    required: Positions = {}
    given: list[tuple[str, str, str, Positions]] = []
    for where, name, token in (
        ("query", "consistency", consistency),
        ("header", "X-Consistency-Token", consistency_header),
    ):
        if token is None:
            continue
        try:
            positions = parse(token)
        except BadToken as exc:
            raise _invalid(where, name, token, str(exc)) from None
        given.append((where, name, token, positions))
        for key, offset in positions.items():
            required[key] = max(required.get(key, -1), offset)
    if required:
        await _wait(svc, given, required, timeout)
    return ReadAfter(required or None, timeout)


async def _wait(
    svc: Services,
    given: Sequence[tuple[str, str, str, Positions]],
    required: Positions,
    timeout: float,
) -> None:
    """Wait until every live view has applied ``required``; 504 when they have not within
    ``timeout``. The waiting is the event loop's (asyncio.sleep between looks), not a server
    thread's: many reads waiting on a lagging worker hold no threads. Every live view, not
    just those a route reads: one worker applies them all in one transaction per batch, and
    a route also looks in others to tell an unknown id."""
    for where, name, token, positions in given:
        await run_in_threadpool(_check_log, svc, where, name, token, positions)
    pending = await run_in_threadpool(_live_instances, svc)
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        found = await run_in_threadpool(_behind_views, svc, pending, required)
        if not found:
            return
        pending = [b.view for b in found]
        left = deadline - time.monotonic()
        if left <= 0:
            first = found[0]
            raise APIError(
                504,
                f"{first.describe()} after waiting {timeout:g} s; retry, or ask for a longer wait",
                {"Retry-After": "1"},
                view=first.view,
                events=first.events,
                behind={f"{t}/{p}": n for (t, p), n in sorted(first.missing.items())},
            )
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, 0.1)


def _live_instances(svc: Services) -> list[str]:
    # A fresh look: the route then reads the views this wait is for (a promotion moments ago).
    return [i.instance for i in svc.read_now().registry.all() if i.status == "live"]


def _behind_views(svc: Services, views: Sequence[str], required: Positions) -> list[Behind]:
    out = []
    for view in views:
        late = behind(svc.store, view, required)
        if late is not None:
            out.append(late)
    return out


def _check_log(svc: Services, where: str, name: str, token: str, positions: Positions) -> None:
    """A token must name partitions and offsets of this log: else it is from another one and
    no wait would ever end."""
    have = set(svc.event_partitions())
    strange = sorted(set(positions) - have)
    if strange:
        topics = ", ".join(sorted({t for t, _ in have}))
        t, p = strange[0]
        raise _invalid(
            where,
            name,
            token,
            f"names partition {t}/{p}, which this log does not have (its event topics: "
            f"{topics}): a token of another deployment?",
        )
    for topic in sorted({t for t, _ in positions}):
        ends = svc.log.end_offsets(topic)
        for (t, p), offset in sorted(positions.items()):
            if t == topic and offset >= ends.get(p, 0):
                raise _invalid(
                    where,
                    name,
                    token,
                    f"names offset {offset} of {t}/{p}, but that partition holds only "
                    f"{ends.get(p, 0)} record(s): a token of another deployment?",
                )


ReadAfterDep = Annotated[ReadAfter, Depends(read_after)]


@dataclass(frozen=True)
class TimelineQuery:
    channels: list[str] | None
    types: list[str] | None
    since: datetime | None
    until: datetime | None
    cursor: str | None
    limit: int


async def timeline_query(
    channel: Annotated[
        list[str] | None,
        Query(description="Only these channels (repeatable), e.g. email, sms, chat"),
    ] = None,
    type_: Annotated[
        list[str] | None,
        Query(alias="type", description="Only these event types (repeatable), e.g. email.opened"),
    ] = None,
    since: Annotated[
        AwareDatetime | None,
        Query(alias="from", description="From this instant on (inclusive; ISO 8601 with zone)"),
    ] = None,
    until: Annotated[
        AwareDatetime | None,
        Query(alias="to", description="Before this instant (exclusive; ISO 8601 with zone)"),
    ] = None,
    cursor: Annotated[
        str | None, Query(description="The `next_cursor` of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Entries per page")] = 50,
) -> TimelineQuery:
    start, end = _utc("from", since), _utc("to", until)
    if start is not None and end is not None and start >= end:
        raise _invalid("query", "from", start.isoformat(), f"must be before to ({end.isoformat()})")
    if cursor is not None:
        try:
            decode_cursor(cursor)
        except ValueError as exc:
            raise _invalid("query", "cursor", cursor, str(exc)) from None
    return TimelineQuery(channel, type_, start, end, cursor, limit)


TimelineQueryDep = Annotated[TimelineQuery, Depends(timeline_query)]

AsOf = Annotated[
    AwareDatetime | None,
    Query(description="Answer as things stood at this instant (ISO 8601 with zone)"),
]


def _id_path(kind: str) -> Any:
    return Path(description=f"The {kind}'s id (a UUID)")


# ------------------------------------------------------------------ reading


@contextmanager
def _answering() -> Iterator[None]:
    """A read with no live view to read is a 503 (the worker has not run yet)."""
    try:
        yield
    except ViewError as exc:
        raise APIError(503, str(exc), {"Retry-After": "5"}) from None


def _unknown(kind: str, subject_id: str) -> APIError:
    named: dict[str, Any] = {f"{kind}_id": subject_id}
    return APIError(
        404,
        f"{kind} {subject_id} is unknown: no live view holds anything about it (check the id; "
        "after a write, pass its consistency token to read it)",
        None,
        **named,
    )


def _timeline(
    svc: Services,
    reader: Principal,
    kind: lookup.Subject,
    subject_id: UUID,
    q: TimelineQuery,
    after: ReadAfter,
) -> Response:
    sid = str(subject_id)
    with _answering():
        view = svc.read.view("timeline")
        assert isinstance(view, Timeline)
        s = view.settings
        for name, values, known in (
            ("channel", q.channels, s.channels),
            ("type", q.types, sorted(s.entry_types | s.corrections.keys())),
        ):
            strange = [v for v in values or () if v not in known]
            if strange:
                raise _invalid("query", name, strange[0], f"unknown; use one of {', '.join(known)}")
        # Categories the timeline settings do not know are not shown on any entry.
        granted = sorted(reader.role.read & set(s.permissions.values()))
        page = svc.read.timeline(
            contact_id=sid if kind == "contact" else None,
            lead_id=sid if kind == "lead" else None,
            account_id=sid if kind == "account" else None,
            channels=q.channels,
            types=q.types,
            since=q.since,
            until=q.until,
            limit=q.limit,
            cursor=q.cursor,
            permissions=granted,
        )
        if page.total == 0 and not lookup.known(svc.read, kind, sid):
            raise _unknown(kind, sid)
    # The busiest route: the page's dataclasses go to JSON in one orjson call, in the shape
    # of TimelinePageOut (which documents it, and which the contract tests hold it to),
    # rather than through a model per entry and FastAPI's validation of the result.
    body = {
        "subject": {"kind": kind, "id": sid},
        "entries": page.entries,
        "next_cursor": page.next_cursor,
        "total": page.total,
        "window_start": page.window_start,
        "categories": granted,
    }
    return Response(orjson.dumps(body, option=orjson.OPT_UTC_Z), media_type="application/json")


@router.get(
    "/v1/contacts/{contact_id}/timeline",
    summary="A contact's timeline, newest first",
    description="With the contacts merged into it and the visitors linked to it. Entries of "
    "categories the caller's role may not read are neither returned nor counted.",
    response_model=TimelinePageOut,
    responses=READ_ERRORS,
)
def contact_timeline(
    contact_id: Annotated[UUID, _id_path("contact")],
    reader: TimelineReader,
    svc: Svc,
    query: TimelineQueryDep,
    after: ReadAfterDep,
) -> Response:
    return _timeline(svc, reader, "contact", contact_id, query, after)


@router.get(
    "/v1/leads/{lead_id}/timeline",
    summary="A lead's timeline (events about the lead itself), newest first",
    response_model=TimelinePageOut,
    responses=READ_ERRORS,
)
def lead_timeline(
    lead_id: Annotated[UUID, _id_path("lead")],
    reader: TimelineReader,
    svc: Svc,
    query: TimelineQueryDep,
    after: ReadAfterDep,
) -> Response:
    return _timeline(svc, reader, "lead", lead_id, query, after)


@router.get(
    "/v1/accounts/{account_id}/timeline",
    summary="An account's timeline: its current members' timelines rolled up, newest first",
    response_model=TimelinePageOut,
    responses=READ_ERRORS,
)
def account_timeline(
    account_id: Annotated[UUID, _id_path("account")],
    reader: TimelineReader,
    svc: Svc,
    query: TimelineQueryDep,
    after: ReadAfterDep,
) -> Response:
    return _timeline(svc, reader, "account", account_id, query, after)


def _consent(svc: Services) -> Consent:
    view = svc.read.view("consent")
    assert isinstance(view, Consent)
    return view


def _consent_state(
    svc: Services,
    contact_id: str,
    as_of: datetime | None,
    after: ReadAfter,
    reader: Principal | None = None,
) -> ConsentState:
    """The whole state, or as ``reader`` sees it (events of its categories only named)."""
    try:
        return svc.read.consent(contact_id, as_of, None if reader is None else reader.role.read)
    except UnknownContact:
        if not lookup.known(svc.read, "contact", contact_id):
            raise _unknown("contact", contact_id) from None
    # Known elsewhere but no consent event yet: the rules' defaults, nothing recorded.
    return Ledger().state(contact_id, _consent(svc).rules, as_of)


@router.get(
    "/v1/contacts/{contact_id}/consent",
    summary="A contact's consent, now or as of an instant, each value with the event that set it",
    response_model=ConsentOut,
    responses=READ_ERRORS,
)
def contact_consent(
    contact_id: Annotated[UUID, _id_path("contact")],
    reader: ConsentReader,
    svc: Svc,
    after: ReadAfterDep,
    as_of: AsOf = None,
) -> ConsentOut:
    with _answering():
        state = _consent_state(svc, str(contact_id), _utc("as_of", as_of), after, reader)
    return ConsentOut.of(state)


@router.get(
    "/v1/contacts/{contact_id}/consent/decision",
    summary="May a message go to this contact (now or as of an instant)? With the reasons",
    response_model=DecisionOut,
    responses=READ_ERRORS,
)
def consent_decision(
    contact_id: Annotated[UUID, _id_path("contact")],
    reader: ConsentReader,
    svc: Svc,
    after: ReadAfterDep,
    channel: Annotated[Channel, Query(description="The channel of the message")],
    purpose: Annotated[Purpose, Query(description="commercial or transactional")],
    list_id: Annotated[
        str | None, Query(alias="list", description="The subscription list it goes to")
    ] = None,
    topic: Annotated[str | None, Query(description="The consent topic it is about")] = None,
    contact_point: Annotated[
        str | None,
        Query(description="The address, number or device (default: the contact's current one)"),
    ] = None,
    as_of: AsOf = None,
) -> DecisionOut:
    cid, at = str(contact_id), _utc("as_of", as_of)
    with _answering():
        state = _consent_state(svc, cid, at, after)
        rules, shown = _consent(svc).rules, svc.read.shown(reader.role.read)
        decision = decide(state, rules, channel, purpose, list_id, topic, contact_point, shown)
    return DecisionOut(
        contact_id=cid,
        channel=channel,
        purpose=purpose,
        list_id=list_id,
        topic=topic,
        as_of=at,
        may_send=decision.allowed,
        reasons=decision.reasons,
        checks=[CheckOut.model_validate(c) for c in decision.checks],
    )


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
            raise _unknown("lead", lead_id) from None
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
    lead_id: Annotated[UUID, _id_path("lead")],
    reader: ScoresReader,
    svc: Svc,
    after: ReadAfterDep,
    as_of: AsOf = None,
) -> LeadScoresOut:
    lid = str(lead_id)
    with _answering():
        _, scores, _ = _lead_scores(svc, lid, _utc("as_of", as_of), after, reader)
    return LeadScoresOut(lead_id=lid, scores=scores)


@router.get(
    "/v1/leads/{lead_id}/scores/{model}",
    summary="A lead's score under one scoring model, with its explanation when asked",
    response_model=LeadScoreOut,
    responses=READ_ERRORS,
)
def lead_score(
    lead_id: Annotated[UUID, _id_path("lead")],
    model: Annotated[str, Path(description="The scoring model's name")],
    reader: ScoresReader,
    svc: Svc,
    after: ReadAfterDep,
    explain: Annotated[
        bool, Query(description="Add the events and rules behind the score")
    ] = False,
    as_of: AsOf = None,
) -> LeadScoreOut:
    lid, at = str(lead_id), _utc("as_of", as_of)
    with _answering():
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


@router.get(
    "/v1/positions",
    summary="Each live view's position per partition, and how far it lags the log",
    response_model=PositionsOut,
    responses=_problems(401),
)
def positions(caller: Caller, svc: Svc) -> PositionsOut:
    live = [info for info in svc.read.registry.all() if info.status == "live"]
    lags = svc.lag()
    parts = svc.event_partitions()
    views = []
    for info in live:
        lag = lags.get(info.instance)
        if lag is None:  # promoted or dropped since the registry was read
            continue
        tracked = svc.store.tracked(info.instance, parts)
        views.append(
            ViewPosition(
                view=info.instance,
                kind=info.kind,
                lag=sum(lag.values()),
                partitions=[
                    PartitionPosition(
                        topic=t, partition=p, position=tracked.get((t, p)), lag=lag.get((t, p), 0)
                    )
                    for t, p in parts
                ],
            )
        )
    return PositionsOut(views=views)
