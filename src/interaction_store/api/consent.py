"""The consent routes: a contact's consent (now or as of an instant, each value with the event
that set it) and the send decision for one message, with the rules' reasons."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from interaction_store.api import lookup
from interaction_store.api.access import Principal
from interaction_store.api.auth import ConsentReader
from interaction_store.api.parameters import AsOf, Svc, id_path, utc
from interaction_store.api.problems import READ_ERRORS, answering, unknown
from interaction_store.api.services import Services
from interaction_store.api.waits import ReadAfter, ReadAfterDep
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
from interaction_store.projection.merges import root_of

router = APIRouter(tags=["read"])


class SourceOut(BaseModel):
    """The event that set a value. Of a category the caller may not read, only its instant:
    ``event_id``, ``event_type`` and ``contact_id`` null, ``note`` empty."""

    model_config = ConfigDict(from_attributes=True)

    since: datetime
    event_id: str | None
    event_type: str | None
    note: str
    contact_id: str | None = Field(
        default=None,
        description="The contact of the merged group whose event it was; null: this contact",
    )


class MergeOut(BaseModel):
    """A contact merged into another, by a contact.merged event."""

    model_config = ConfigDict(from_attributes=True)

    contact_id: str
    into: str
    event_id: str
    at: datetime


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
        description="Consent-relevant events of the contact (and of its merged group), of the "
        "categories the caller may read (0: none of those)"
    )
    merged: list[MergeOut] = Field(
        description="The contact's merged group: each contact merged into another, by which "
        "event (empty: none); the values above are the group's"
    )
    merged_into: str | None = Field(
        default=None,
        description="The contact this one was merged into (by then, with as_of): the group "
        "lives on that id; read it there from now on (null: not merged away)",
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
            merged=[MergeOut.model_validate(link) for link in state.merged],
            merged_into=_survivor(state),
        )


def _survivor(state: ConsentState) -> str | None:
    root = root_of(state.contact_id, {link.contact_id: link for link in state.merged})
    return None if root == state.contact_id else root


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
            raise unknown("contact", contact_id) from None
    # Known elsewhere but no consent event yet: the rules' defaults, nothing recorded.
    return Ledger().state(contact_id, _consent(svc).rules, as_of)


@router.get(
    "/v1/contacts/{contact_id}/consent",
    summary="A contact's consent, now or as of an instant, each value with the event that set it",
    response_model=ConsentOut,
    responses=READ_ERRORS,
)
def contact_consent(
    contact_id: Annotated[UUID, id_path("contact")],
    reader: ConsentReader,
    svc: Svc,
    after: ReadAfterDep,
    as_of: AsOf = None,
) -> ConsentOut:
    with answering():
        state = _consent_state(svc, str(contact_id), utc("as_of", as_of), after, reader)
    return ConsentOut.of(state)


@router.get(
    "/v1/contacts/{contact_id}/consent/decision",
    summary="May a message go to this contact (now or as of an instant)? With the reasons",
    response_model=DecisionOut,
    responses=READ_ERRORS,
)
def consent_decision(
    contact_id: Annotated[UUID, id_path("contact")],
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
    cid, at = str(contact_id), utc("as_of", as_of)
    with answering():
        state = _consent_state(svc, cid, at, after)
        rules, shown = _consent(svc).rules, svc.read.shown(reader.role.read)
        decision = decide(state, rules, channel, purpose, list_id, topic, contact_point, shown)
        decision = svc.read.suppressed(decision, state, channel, contact_point)
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
