"""The profile routes: a contact, account or lead as the profiles view holds it (now or as of an
instant), each value with the event that set it; a merged-away contact answers with a pointer
to the contact it was merged into."""

# No `from __future__ import annotations`: the route factory's parameter annotations name its
# argument (the kind), which FastAPI could not evaluate later from the module's globals.
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from interaction_store.api import lookup
from interaction_store.api.access import Principal
from interaction_store.api.auth import ProfileReader
from interaction_store.api.lookup import Subject
from interaction_store.api.parameters import AsOf, Svc, id_path, utc
from interaction_store.api.problems import READ_ERRORS, answering, unknown
from interaction_store.api.services import Services
from interaction_store.api.waits import ReadAfterDep
from interaction_store.projection.profile_values import Profile

router = APIRouter(tags=["read"])


class EventRefOut(BaseModel):
    """The event that set a value."""

    model_config = ConfigDict(from_attributes=True)

    event_id: str
    event_type: str
    occurred_at: datetime


class RecordedOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    value: Any = Field(description="The value (null: never set)")
    source: EventRefOut | None = Field(description="The event that set it; null: never set")


class OriginOut(BaseModel):
    """The marketing source: the envelope of the event that created the entity."""

    model_config = ConfigDict(from_attributes=True)

    source: str = Field(description="The upstream system that created it")
    campaign_id: str | None
    journey_id: str | None
    event: EventRefOut


class MembershipOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    account_id: str
    contact_id: str
    since: EventRefOut = Field(description="The contact.joined_account that began the period")
    until: EventRefOut | None = Field(description="The contact.left_account that ended it")


class LeadRefOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    lead_id: str
    topic: str | None
    status: str = Field(description="open, qualified or disqualified")
    source: EventRefOut


class RegistrationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    event_ref: str
    event_name: str
    registered: bool = Field(description="Still registered (false: cancelled)")
    attended: bool = Field(description="Checked in, or attended a session")
    source: EventRefOut = Field(description="The registration or cancellation that decided it")


class OpenCaseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    case_id: str
    priority: str
    origin: str
    source: EventRefOut


class EngagementOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    channel: str
    count: int = Field(description="Entries of the channel on the timeline, in its window")
    latest: EventRefOut


class ProfileOut(BaseModel):
    """A contact's, account's or lead's profile. Personal fields and categories the caller's
    role may not read are left out and named in ``withheld``."""

    model_config = ConfigDict(from_attributes=True)

    kind: str
    id: str
    as_of: datetime | None
    fields: dict[str, RecordedOut]
    origin: OriginOut | None
    merged_from: list[str] = Field(description="Contacts merged into this one")
    memberships: list[MembershipOut]
    leads: list[LeadRefOut]
    registrations: list[RegistrationOut]
    open_cases: list[OpenCaseOut]
    engagement: list[EngagementOut]
    window_start: datetime | None = Field(description="Where the engagement window begins")
    withheld: list[str]
    events: int = Field(description="Profile events of the entity up to as_of")


class MergedOut(BaseModel):
    """A contact merged into another: the surviving contact to read instead."""

    kind: str = "contact"
    id: str
    merged_into: str = Field(description="The surviving contact (after merges of merges)")
    location: str = Field(description="Its profile's path")
    source: EventRefOut = Field(description="The contact.merged event")


def _answer(
    svc: Services, kind: Subject, subject_id: str, as_of: datetime | None, reader: Principal
) -> ProfileOut | MergedOut:
    with answering():
        if not lookup.known(svc.read, kind, subject_id):
            raise unknown(kind, subject_id)
        role = reader.role
        profile: Profile = svc.read.profile(
            kind, subject_id, utc("as_of", as_of), role.read, role.profile
        )
    if profile.merged_into is not None and profile.merged_into.source is not None:
        into = str(profile.merged_into.value)
        return MergedOut(
            id=subject_id,
            merged_into=into,
            location=f"/v1/contacts/{into}",
            source=EventRefOut.model_validate(profile.merged_into.source),
        )
    return ProfileOut.model_validate(profile)


def _route(kind: Subject, summary: str) -> None:
    response = ProfileOut | MergedOut if kind == "contact" else ProfileOut

    @router.get(
        f"/v1/{kind}s/{{{kind}_id}}",
        summary=summary,
        response_model=response,
        responses=READ_ERRORS,
        name=f"{kind}_profile",
    )
    def read_profile(
        subject_id: Annotated[UUID, id_path(kind)],  # evaluated now, with this kind
        reader: ProfileReader,
        svc: Svc,
        after: ReadAfterDep,
        as_of: AsOf = None,
    ) -> ProfileOut | MergedOut:
        return _answer(svc, kind, str(subject_id), as_of, reader)


_route(
    "contact",
    "A contact's profile (names, contact points, accounts, leads, registrations, open cases, "
    "engagement), each value with its event; a merged-away contact points at the survivor",
)
_route("account", "An account's profile: its name, members (with periods), leads, engagement")
_route("lead", "A lead's profile: parents, topic, status, source, engagement")
