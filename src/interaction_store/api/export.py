"""Subject access: ``GET /v1/contacts/{id}/export``, everything the store holds about a contact
as one JSON document, written piece by piece (a big one never sits whole in memory).
``istore export contact ID`` writes the same document with :func:`export_document`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.responses import StreamingResponse

from interaction_store.api.auth import Exporter
from interaction_store.api.consent import ConsentOut, MergeOut
from interaction_store.api.parameters import Svc, id_path
from interaction_store.api.problems import READ_ERRORS, answering, unknown
from interaction_store.api.scores import ExplanationOut, LeadScoreOut
from interaction_store.api.timelines import TimelineEntryOut
from interaction_store.api.waits import ReadAfterDep
from interaction_store.log.base import EventLog
from interaction_store.privacy.sealing import Opener
from interaction_store.projection.consent import UnknownContact
from interaction_store.projection.scoring import UnknownLead
from interaction_store.read import ReadAPI
from interaction_store.subject_access import Person, UnknownPerson, exported_events, find_person

router = APIRouter(tags=["privacy"])

FORMAT = "istore.contact-export/v1"
EVER = datetime(1900, 1, 1, tzinfo=UTC)
"""Where an export's timeline starts: every entry, not the default window's."""
CHUNK = 100
"""Timeline entries or events per piece of the document written out."""


class PositionOut(BaseModel):
    topic: str
    partition: int
    offset: int


class ExportedEventOut(BaseModel):
    position: PositionOut = Field(description="Where the log holds it (its first copy)")
    category: str | None = Field(description="Its read category; null: none (shown to all)")
    event: dict[str, Any] = Field(description="The event as the contract has it (envelope.json)")


class PersonOut(BaseModel):
    contact_id: str = Field(description="The contact asked for")
    contacts: list[str] = Field(
        description="Its merged group: the contact it lives on first, then the others"
    )
    anonymous_ids: list[str] = Field(description="Visitors linked to a contact of the group")
    leads: list[str] = Field(description="Leads whose parent contact is in the group")
    merged: list[MergeOut]


class AuditEntryOut(BaseModel):
    occurred_at: datetime
    event_id: str | None = Field(description="null for an event of a category you may not read")
    type: str | None
    source: str | None
    changes: dict[str, Any]


class LeadExportOut(BaseModel):
    lead_id: str
    scores: list[LeadScoreOut] = Field(description="Each model's score with its explanation")


class CountsOut(BaseModel):
    events: int = Field(description="Events in `events` (only the caller's categories)")
    by_category: dict[str, int] = Field(description="Of those, per read category")
    without_category: int = Field(description="Of those, profile, consent and lead events")
    by_type: dict[str, int]
    timeline: int = Field(description="Entries in `timeline`")


class ContactExportOut(BaseModel):
    """The document: small parts first, then the timeline and the events (the long parts,
    written as they are read), then the counts."""

    format: Literal["istore.contact-export/v1"]
    contact_id: str
    exported_at: datetime
    role: str = Field(description="The role it was exported as")
    categories: list[str] = Field(
        description="The read categories it holds events and timeline entries of"
    )
    person: PersonOut
    profile: dict[str, list[dict[str, Any]]] = Field(
        description="The profiles view's rows: contacts, identities, leads, memberships, "
        "opportunities"
    )
    consent: ConsentOut | None = Field(description="null: no consent event about the person")
    consent_audit: list[AuditEntryOut] = Field(description="Every consent change, oldest first")
    lead_scores: list[LeadExportOut]
    timeline: list[TimelineEntryOut] = Field(
        description="The contact's timeline (its group and linked visitors) then each lead's, "
        "newest first, every entry (no default window)"
    )
    events: list[ExportedEventOut] = Field(
        description="Every event about the person, oldest first by (occurred_at, event_id)"
    )
    counts: CountsOut


def _dump(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


def export_document(
    read: ReadAPI,
    log: EventLog,
    person: Person,
    role: str,
    permissions: Collection[str] | None,
    opener: Opener | None,
) -> Iterator[bytes]:
    """The export of ``person`` as ``role`` (reading ``permissions``; None: every category),
    in pieces of bytes that join into one :class:`ContactExportOut` document."""
    cid = person.contact_id
    categories = sorted(set(read.categories().values()))
    granted = categories if permissions is None else sorted(set(permissions) & set(categories))
    shown = read.shown(permissions)
    try:
        consent: dict[str, Any] | None = ConsentOut.of(
            read.consent(cid, permissions=permissions)
        ).model_dump(mode="json")
        audit = read.audit(cid, permissions)
    except UnknownContact:
        consent, audit = None, []
    head = {
        "format": FORMAT,
        "contact_id": cid,
        "exported_at": datetime.now(UTC),
        "role": role,
        "categories": granted,
        "person": {
            "contact_id": cid,
            "contacts": person.contacts,
            "anonymous_ids": person.anonymous_ids,
            "leads": person.leads,
            "merged": [MergeOut.model_validate(m).model_dump(mode="json") for m in person.merges],
        },
        "profile": person.profile,
        "consent": consent,
        "consent_audit": audit,
        "lead_scores": [_lead(read, lead, permissions) for lead in person.leads],
    }
    yield _dump(head)[:-1] + b',"timeline":['
    entries = 0
    for page in _timeline(read, person, permissions):
        for start in range(0, len(page), CHUNK):
            piece = page[start : start + CHUNK]
            yield (b"," if entries else b"") + _dump(piece)[1:-1]
            entries += len(piece)
    yield b'],"events":['
    counted: Counter[str] = Counter()
    by_category: Counter[str] = Counter()
    batch: list[dict[str, Any]] = []
    written = 0
    for exported in exported_events(read, log, person, shown, opener):
        counted[exported.document["type"]] += 1
        if exported.category is not None:
            by_category[exported.category] += 1
        p = exported.position
        batch.append(
            {
                "position": {"topic": p.topic, "partition": p.partition, "offset": p.offset},
                "category": exported.category,
                "event": exported.document,
            }
        )
        if len(batch) >= CHUNK:
            yield (b"," if written else b"") + _dump(batch)[1:-1]
            written += len(batch)
            batch = []
    if batch:
        yield (b"," if written else b"") + _dump(batch)[1:-1]
        written += len(batch)
    counts = {
        "events": written,
        "by_category": dict(sorted(by_category.items())),
        "without_category": written - sum(by_category.values()),
        "by_type": dict(sorted(counted.items())),
        "timeline": entries,
    }
    yield b'],"counts":' + _dump(counts) + b"}"


def _timeline(
    read: ReadAPI, person: Person, permissions: Collection[str] | None
) -> Iterator[list[Any]]:
    """Pages of the contact's timeline (read on the contact its group lives on, which takes in
    the others and the linked visitors), then of each lead's."""
    subjects = [(person.contacts[0], None)] + [(None, lead) for lead in person.leads]
    for contact, lead in subjects:
        cursor: str | None = None
        while True:
            page = read.timeline(
                contact_id=contact,
                lead_id=lead,
                since=EVER,
                limit=500,
                cursor=cursor,
                permissions=permissions,
            )
            if page.entries:
                yield page.entries
            cursor = page.next_cursor
            if cursor is None:
                break


def _lead(read: ReadAPI, lead_id: str, permissions: Collection[str] | None) -> dict[str, Any]:
    try:
        scores = read.lead_scores(lead_id, permissions=permissions)
    except UnknownLead:  # a lead the scores view has no row of yet: nothing scored
        return {"lead_id": lead_id, "scores": []}
    out = []
    for score in scores:
        explained = LeadScoreOut.model_validate(score)
        if score.status == "scored":
            explanation = read.explain(lead_id, score.model, permissions=permissions)
            explained = explained.model_copy(update={"explanation": ExplanationOut.of(explanation)})
        out.append(explained.model_dump(mode="json"))
    return {"lead_id": lead_id, "scores": out}


@router.get(
    "/v1/contacts/{contact_id}/export",
    summary="Everything the store holds about a contact (subject access), as one document",
    description="The contact with its merged group, linked visitors and leads: their profile "
    "rows, consent with its audit trail, lead scores with their explanations, timeline, and "
    "every event about them read back from the log, of the read categories of the caller's "
    "role (admin and privacy read all). Written piece by piece: a big export streams.",
    response_model=ContactExportOut,
    responses=READ_ERRORS,
)
def contact_export(
    contact_id: Annotated[UUID, id_path("contact")],
    reader: Exporter,
    svc: Svc,
    after: ReadAfterDep,
) -> StreamingResponse:
    cid = str(contact_id)
    with answering():
        read = svc.read
        try:
            person = find_person(read, cid)
        except UnknownPerson:
            raise unknown("contact", cid) from None
        # Whatever fails from here on fails after the status line: check what can fail first.
        read.view("subjects")
        log = svc.log
        opener = svc.opener
    pieces = export_document(read, log, person, reader.role.name, reader.role.read, opener)
    return StreamingResponse(pieces, media_type="application/json")
