"""The timeline routes: a contact's, a lead's and an account's timeline, newest first, filtered
by the caller's read categories; one route per subject kind, made by :func:`_route`."""

# No `from __future__ import annotations`: a route made by :func:`_route` takes its path
# parameter's name from the closure's ``kind``, which FastAPI sees only in evaluated annotations.
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.responses import Response

from interaction_store.api import lookup
from interaction_store.api.access import Principal
from interaction_store.api.auth import TimelineReader
from interaction_store.api.parameters import Svc, id_path, utc
from interaction_store.api.problems import READ_ERRORS, answering, invalid, unknown
from interaction_store.api.services import Services
from interaction_store.api.waits import ReadAfter, ReadAfterDep
from interaction_store.projection.timeline import MAX_LIMIT, Timeline, decode_cursor

router = APIRouter(tags=["read"])


class Subject(BaseModel):
    kind: str = Field(description="contact, lead or account")
    id: str


class TimelineEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    event_id: str
    type: str
    channel: str
    occurred_at: datetime
    subject_kind: str = Field(
        description="The timeline it is on: contact, lead, anonymous, or account (an event "
        "about the account alone)"
    )
    subject_id: str
    permission: str = Field(description="The read category it needs")
    preview: dict[str, Any]
    status: str | None = Field(description="A message's delivery status; null for the rest")
    status_at: datetime | None
    status_detail: dict[str, Any] | None
    message_id: str | None
    campaign_id: str | None
    journey_id: str | None
    source: str | None = Field(
        description="The envelope's source: the upstream system that published the event"
    )
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
    merged_into: str | None = Field(
        default=None,
        description="The contact this one was merged into: the entries are that contact's "
        "(its merged group's); read it by that id from now on (null: not merged away)",
    )


@dataclass(frozen=True)
class TimelineQuery:
    channels: list[str] | None
    types: list[str] | None
    statuses: list[str] | None
    journeys: list[str] | None
    campaigns: list[str] | None
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
    status: Annotated[
        list[str] | None,
        Query(
            description="Only messages (and stand-in delivery reports) whose delivery status is "
            "one of these (repeatable): sent, delivered, bounced, failed (the statuses "
            "`projections/timeline.toml` computes); other entries have none"
        ),
    ] = None,
    journey: Annotated[
        list[str] | None,
        Query(
            description="Only entries of these journeys (repeatable; correlation.journey_id)",
        ),
    ] = None,
    campaign: Annotated[
        list[str] | None,
        Query(
            description="Only entries of these campaigns (repeatable; correlation.campaign_id)",
        ),
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
    start, end = utc("from", since), utc("to", until)
    if start is not None and end is not None and start >= end:
        raise invalid("query", "from", start.isoformat(), f"must be before to ({end.isoformat()})")
    for name, values in (("journey", journey), ("campaign", campaign)):
        for value in values or ():
            if not 1 <= len(value) <= 1000:
                raise invalid("query", name, value, "must be 1 to 1000 characters (an id)")
    if cursor is not None:
        try:
            decode_cursor(cursor)
        except ValueError as exc:
            raise invalid("query", "cursor", cursor, str(exc)) from None
    return TimelineQuery(channel, type_, status, journey, campaign, start, end, cursor, limit)


TimelineQueryDep = Annotated[TimelineQuery, Depends(timeline_query)]


def _timeline(
    svc: Services,
    reader: Principal,
    kind: lookup.Subject,
    subject_id: UUID,
    q: TimelineQuery,
    after: ReadAfter,
) -> Response:
    sid = str(subject_id)
    with answering():
        view = svc.read.view("timeline")
        assert isinstance(view, Timeline)
        s = view.settings
        for name, values, known in (
            ("channel", q.channels, s.channels),
            ("type", q.types, sorted(s.entry_types | s.corrections.keys())),
            ("status", q.statuses, sorted(s.statuses)),
        ):
            strange = [v for v in values or () if v not in known]
            if strange:
                raise invalid("query", name, strange[0], f"unknown; use one of {', '.join(known)}")
        # Categories the timeline settings do not know are not shown on any entry.
        granted = sorted(reader.role.read & set(s.permissions.values()))
        page = svc.read.timeline(
            contact_id=sid if kind == "contact" else None,
            lead_id=sid if kind == "lead" else None,
            account_id=sid if kind == "account" else None,
            channels=q.channels,
            types=q.types,
            statuses=q.statuses,
            journeys=q.journeys,
            campaigns=q.campaigns,
            since=q.since,
            until=q.until,
            limit=q.limit,
            cursor=q.cursor,
            permissions=granted,
        )
        if page.total == 0 and not lookup.known(svc.read, kind, sid):
            raise unknown(kind, sid)
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
        "merged_into": page.merged_into,
    }
    return Response(orjson.dumps(body, option=orjson.OPT_UTC_Z), media_type="application/json")


def _route(kind: lookup.Subject, summary: str, description: str | None = None) -> None:
    """Add the GET route of a ``kind``'s timeline, ``/v1/<kind>s/{<kind>_id}/timeline``, named
    ``<kind>_timeline`` (which makes its operation id) like the function it once was."""
    name = f"{kind}_id"

    # No docstring: FastAPI would make it the route's description.
    def timeline(
        subject_id: Annotated[UUID, id_path(kind)],
        reader: TimelineReader,
        svc: Svc,
        query: TimelineQueryDep,
        after: ReadAfterDep,
    ) -> Response:
        return _timeline(svc, reader, kind, subject_id, query, after)

    router.get(
        f"/v1/{kind}s/{{{name}}}/timeline",
        name=f"{kind}_timeline",
        summary=summary,
        description=description,
        response_model=TimelinePageOut,
        responses=READ_ERRORS,
    )(timeline)


_route(
    "contact",
    "A contact's timeline, newest first",
    "With the contacts merged into it and the visitors linked to it. Entries of categories "
    "the caller's role may not read are neither returned nor counted.",
)
_route("lead", "A lead's timeline (events about the lead itself), newest first")
_route("account", "An account's timeline: its current members' timelines rolled up, newest first")
