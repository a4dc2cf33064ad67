"""The event contract: an envelope plus a typed payload per interaction type.

Every event type is a pydantic model discriminated on ``type``; ``EVENT_TYPES`` maps each
type name to its model and ``AnyEvent`` is the union upstream systems publish against.
"""

from __future__ import annotations

import functools
import operator
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    WrapSerializer,
    WrapValidator,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

PERSONAL = "x-personal-data"
"""JSON Schema marker on fields that hold personal data (erased on request)."""

ENCRYPTED = "x-encrypted"
"""JSON Schema marker on personal fields the store seals at ingest (AES-256-GCM under the data
subject's key): publishers send them in clear; the log holds ``enc:v1:...`` in their place."""

SEALED_PREFIX = "enc:v1:"
"""How a sealed field's stored text starts (see docs/privacy.md)."""


def _let_sealed_through(value: Any, handler: Any) -> Any:
    # A stored event's personal field holds its sealed text, checked at ingest: the clear
    # field's type and limits apply to what it opens to, not to the ciphertext.
    if type(value) is str and value.startswith(SEALED_PREFIX):
        return value
    return handler(value)


def _write_sealed_as_is(value: Any, handler: Any) -> Any:
    return value if type(value) is str else handler(value)


SEALABLE = WrapValidator(_let_sealed_through)
"""On every sealed personal field: a stored event holds its sealed text (``enc:v1:...``)
there, which the field's own type and limits would refuse. The JSON Schema is the clear one:
what a publisher sends. Ingest refuses sealed text from outside (rule ``sealed_by_store``)."""


def personal(*, sealed: bool = True, **kwargs: Any) -> Any:
    """A field that holds personal data: marked in the schema so erasure can find it, and,
    unless ``sealed=False``, sealed by the store at ingest (its annotation needs
    :data:`SEALABLE`)."""
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    extra[PERSONAL] = True
    if sealed:
        extra[ENCRYPTED] = "sealed by the store at ingest: send it in clear"
    return Field(json_schema_extra=extra, **kwargs)


class _Strict(BaseModel):
    # allow_inf_nan=False: JSON has no infinity; one would be stored as null and not read back.
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False
    )


# RFC 3339 with an offset: the schema's way of saying "timezone-aware" without format checkers.
# ASCII digits only (a regex \d matches other scripts' digits too), fields in their ranges, and
# the years around the allowed range: what the pattern lets through, the model accepts, but for
# days a month lacks (format "date-time" says so) and the exact range below (x-utc-range).
AWARE_PATTERN = (
    r"^(1899|19[0-9]{2}|2[01][0-9]{2}|2200)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
"""Every instant is in [EARLIEST, LATEST) in UTC: the views convert to UTC, and near years 1
and 9999 an offset overflows Python's datetime (the event could never be projected)."""

UTC_RANGE = "x-utc-range"
"""JSON Schema keyword of our own on every instant: JSON Schema cannot compare dates."""
_RANGE_TEXT = {"minimum": "1900-01-01T00:00:00Z", "exclusiveMaximum": "2200-01-01T00:00:00Z"}


def _in_range(value: datetime) -> datetime:
    # The year first: comparing an instant near year 1 or 9999 with an offset overflows.
    if EARLIEST.year - 1 <= value.year <= LATEST.year and EARLIEST <= value < LATEST:
        return value
    raise PydanticCustomError(
        "datetime_range",
        "must be from {minimum} up to (not including) {exclusiveMaximum}, in UTC",
        _RANGE_TEXT,
    )


def _text_or_datetime(value: Any) -> Any:
    # pydantic reads a number as Unix time; the published schema says a string, so refuse it.
    if isinstance(value, int | float):
        raise PydanticCustomError(
            "datetime_string", "must be an RFC 3339 string with an offset, not a number"
        )
    return value


Instant = Annotated[
    AwareDatetime,
    BeforeValidator(_text_or_datetime),
    AfterValidator(_in_range),
    Field(
        json_schema_extra={
            "pattern": AWARE_PATTERN,
            UTC_RANGE: _RANGE_TEXT,
            "$comment": "In UTC from 1900-01-01T00:00:00Z up to (not including) "
            "2200-01-01T00:00:00Z (x-utc-range): JSON Schema cannot compare instants",
        }
    ),
]

NonEmpty = Annotated[str, Field(min_length=1, max_length=2000)]
Url = Annotated[str, Field(min_length=1, max_length=4000, pattern=r"^[a-zA-Z][a-zA-Z0-9+.-]*:")]


# --------------------------------------------------------------------------- envelope parts


SUBJECT_KEYS = ("contact_id", "lead_id", "anonymous_id", "account_id")
"""The subject ids, in the order the first one present keys the event (its partition key and
its data subject)."""


class Subject(_Strict):
    """Who the event is about: a contact and/or a lead, an anonymous visitor, or an account."""

    model_config = ConfigDict(
        json_schema_extra={
            # What the validator below enforces, said in the schema for other languages.
            "anyOf": [
                {"required": [k], "properties": {k: {"type": "string"}}} for k in SUBJECT_KEYS
            ]
        }
    )

    contact_id: UUID | None = None
    lead_id: UUID | None = None
    anonymous_id: Annotated[str, Field(min_length=1, max_length=200)] | None = personal(
        sealed=False,
        default=None,
        description="Cookie or device id of a visitor not yet known: pseudonymous, kept in "
        "clear (the key of an anonymous visitor's events, and of the views' rows about it)",
    )
    account_id: UUID | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> Subject:
        if all(getattr(self, k) is None for k in SUBJECT_KEYS):
            raise PydanticCustomError(
                "subject_required",
                "at least one of contact_id, lead_id, anonymous_id or account_id is required",
            )
        return self


class Correlation(_Strict):
    """What produced the event: the journey, campaign and message it belongs to."""

    journey_id: str | None = None
    campaign_id: str | None = None
    message_id: str | None = None


# --------------------------------------------------------------------------- payloads


class Empty(_Strict):
    """No payload fields."""


class EmailSent(_Strict):
    subject: Annotated[NonEmpty, SEALABLE] = personal()
    preview_text: Annotated[str, SEALABLE] = personal(default="", max_length=2000)
    to_address: Annotated[str | None, SEALABLE] = personal(default=None, max_length=320)
    legal_designation: Literal["commercial", "transactional"] = "commercial"
    list_id: str | None = None


class EmailClicked(_Strict):
    url: Url


class BounceType(StrEnum):
    hard = "hard"
    soft = "soft"


class EmailBounced(_Strict):
    """Version 2: ``bounce_type`` replaced version 1's boolean ``hard``."""

    bounce_type: BounceType
    reason: Annotated[str, SEALABLE] = personal(default="", max_length=2000)


class EmailBouncedV1(_Strict):
    """Version 1, still accepted: upcast on read to version 2 (``hard`` -> ``bounce_type``)."""

    hard: bool
    reason: Annotated[str, SEALABLE] = personal(default="", max_length=2000)


class EmailUnsubscribed(_Strict):
    list_id: str | None = Field(
        default=None, description="The list left; none means all bulk email"
    )
    via: Literal["link", "subscription_center", "reply"] = "link"


class EmailBlocked(_Strict):
    reason: Annotated[NonEmpty, SEALABLE] = personal()


class SmsSent(_Strict):
    text: Annotated[str, SEALABLE] = personal(min_length=1, max_length=1600)
    to_number: Annotated[str | None, SEALABLE] = personal(default=None, max_length=32)


class SmsFailed(_Strict):
    reason: Annotated[NonEmpty, SEALABLE] = personal()


class SmsReplied(_Strict):
    text: Annotated[str, SEALABLE] = personal(max_length=1600)
    keyword: str | None = Field(default=None, max_length=32)

    OPT_OUT_KEYWORDS: ClassVar[frozenset[str]] = frozenset(
        {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "ARRET", "ALTO"}
    )

    @property
    def is_opt_out(self) -> bool:
        word = (self.keyword or self.text).strip().split(maxsplit=1)
        return bool(word) and word[0].upper() in self.OPT_OUT_KEYWORDS


class PushSent(_Strict):
    title: Annotated[NonEmpty, SEALABLE] = personal()
    body: Annotated[str, SEALABLE] = personal(default="", max_length=4000)


class PageViewed(_Strict):
    url: Url
    referrer: str | None = Field(default=None, max_length=4000)
    seconds_on_page: float = Field(default=0, ge=0)


class LinkClicked(_Strict):
    url: Url
    page_url: str | None = Field(default=None, max_length=4000)


class FormViewed(_Strict):
    form_id: NonEmpty
    page_url: str | None = Field(default=None, max_length=4000)


class FormSubmitted(_Strict):
    form_id: NonEmpty
    fields: Annotated[
        dict[str, str], SEALABLE, WrapSerializer(_write_sealed_as_is, when_used="always")
    ] = personal(default_factory=dict)
    consent_checkboxes: dict[str, bool] = Field(default_factory=dict)
    prefilled: bool = False


class MarketingEventRef(_Strict):
    event_ref: NonEmpty = Field(description="Id of the marketing event")
    event_name: str = Field(default="", max_length=500)


class SessionAttended(MarketingEventRef):
    session_id: NonEmpty
    session_name: str = Field(default="", max_length=500)


class ChatInvitationShown(_Strict):
    rule_name: NonEmpty = Field(description="The proactive chat rule that fired")
    page_url: str | None = Field(default=None, max_length=4000)
    seconds_on_page: float = Field(default=0, ge=0)
    trigger_message: str = Field(default="", max_length=2000)


class ChatInvitationExpired(_Strict):
    seconds_shown: float = Field(
        ge=60, description="An unanswered proactive invitation closes after one minute"
    )


class ChatInvitationRef(_Strict):
    rule_name: str | None = Field(default=None, max_length=200)


class ChatConversationStarted(_Strict):
    conversation_id: NonEmpty
    agent_id: str | None = None
    proactive: bool = False


class ChatMessage(_Strict):
    conversation_id: NonEmpty
    sender: Literal["customer", "agent", "bot"]
    text: Annotated[str, SEALABLE] = personal(max_length=10000)


class ChatConversationEnded(_Strict):
    conversation_id: NonEmpty
    duration_seconds: float = Field(ge=0)


class PhoneCall(_Strict):
    direction: Literal["inbound", "outbound"]
    subject: Annotated[str, SEALABLE] = personal(default="", max_length=500)
    duration_seconds: float = Field(default=0, ge=0)


class Appointment(_Strict):
    # Said in the schema with a keyword of our own: JSON Schema cannot compare two fields.
    model_config = ConfigDict(json_schema_extra={"x-not-before": {"ends_at": "starts_at"}})

    subject: Annotated[str, SEALABLE] = personal(default="", max_length=500)
    starts_at: Instant
    ends_at: Instant

    @model_validator(mode="after")
    def _ordered(self) -> Appointment:
        if self.ends_at < self.starts_at:
            raise ValueError("ends_at must not be before starts_at")
        return self


class TaskActivity(_Strict):
    subject: Annotated[str, SEALABLE] = personal(default="", max_length=500)
    due_at: Instant | None = None


class CaseOpened(_Strict):
    case_id: NonEmpty
    title: Annotated[str, SEALABLE] = personal(default="", max_length=500)
    priority: Literal["low", "normal", "high"] = "normal"
    origin: Literal["phone", "email", "web", "chat", "social", "other"] = "web"


class CaseResolved(_Strict):
    case_id: NonEmpty
    resolution: Annotated[str, SEALABLE] = personal(default="", max_length=2000)


class ContactDetails(_Strict):
    first_name: Annotated[str | None, SEALABLE] = personal(default=None, max_length=200)
    last_name: Annotated[str | None, SEALABLE] = personal(default=None, max_length=200)
    email: Annotated[str | None, SEALABLE] = personal(default=None, max_length=320)
    phone: Annotated[str | None, SEALABLE] = personal(default=None, max_length=32)
    external_id: Annotated[str | None, SEALABLE] = personal(
        default=None,
        max_length=200,
        description="The person's id in another system (a CRM, a shop): it points at the "
        "person, so it is sealed like an address; contacts are found by it (blind index)",
    )
    is_child: bool | None = None
    guardian_contact_id: UUID | None = None


class AccountDetails(_Strict):
    """An account's company data (not personal): its address and primary contact."""

    street: str | None = Field(default=None, max_length=500)
    city: str | None = Field(default=None, max_length=200)
    postal_code: str | None = Field(default=None, max_length=40)
    country: str | None = Field(default=None, max_length=100)
    primary_contact_id: UUID | None = None


class AccountCreated(AccountDetails):
    name: str = Field(min_length=1, max_length=500)


class AccountUpdated(AccountDetails):
    """Only the fields present change; absent ones keep their value."""

    name: str | None = Field(default=None, min_length=1, max_length=500)


class AccountMembership(_Strict):
    account_id: UUID


LeadSource = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description="Where the lead came from, e.g. web, event, referral, advertisement",
    ),
]


class LeadCreated(_Strict):
    topic: str = Field(default="", max_length=500, description="What the lead is interested in")
    parent_contact_id: UUID | None = None
    parent_account_id: UUID | None = None
    source: LeadSource | None = None


class LeadUpdated(_Strict):
    """Only the fields given change. The parents move together: naming either parent sets
    both (one not named is cleared), so a lead moved to an account alone loses its contact."""

    model_config = ConfigDict(
        json_schema_extra={
            # What the validator below enforces, said in the schema for other languages.
            "anyOf": [
                {"required": [k], "properties": {k: {"type": "string"}}}
                for k in ("topic", "source", "parent_contact_id", "parent_account_id")
            ]
        }
    )

    topic: str | None = Field(default=None, max_length=500)
    source: LeadSource | None = None
    parent_contact_id: UUID | None = None
    parent_account_id: UUID | None = None

    @model_validator(mode="after")
    def _something(self) -> LeadUpdated:
        if all(v is None for v in self.model_dump().values()):
            raise PydanticCustomError(
                "lead_update_empty",
                "at least one of topic, source, parent_contact_id or parent_account_id is required",
            )
        return self


class LeadQualified(_Strict):
    opportunity_id: str | None = None


class LeadReason(_Strict):
    reason: str = Field(default="", max_length=2000)


class LeadSalesReady(_Strict):
    model: NonEmpty
    score: float
    threshold: float
    returned_by: UUID | None = Field(
        default=None,
        description="The lead.returned_to_marketing event that opened this scoring episode; "
        "none in the lead's first",
    )


Currency = Annotated[
    str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code in capitals, e.g. EUR")
]
Money = Annotated[float, Field(ge=0, le=1e15)]
OpportunityId = Annotated[str, Field(min_length=1, max_length=200)]


class OpportunityCreated(_Strict):
    """A deal to close; from a qualified lead when ``lead_id`` is given. The subject names
    the contact (and account) it is with."""

    model_config = ConfigDict(json_schema_extra={"dependentRequired": {"value": ["currency"]}})

    opportunity_id: OpportunityId
    lead_id: UUID | None = Field(default=None, description="The lead it was qualified from")
    name: str = Field(default="", max_length=500, description="What is being sold")
    value: Money | None = Field(default=None, description="Estimated value")
    currency: Currency | None = None

    @model_validator(mode="after")
    def _priced(self) -> OpportunityCreated:
        if self.value is not None and self.currency is None:
            raise PydanticCustomError("currency_required", "a value needs its currency")
        return self


class OpportunityStageChanged(_Strict):
    opportunity_id: OpportunityId
    stage: str = Field(min_length=1, max_length=100, description="e.g. qualify, develop, propose")


class OpportunityWon(_Strict):
    opportunity_id: OpportunityId
    value: Money = Field(description="The actual value")
    currency: Currency


class OpportunityLost(_Strict):
    opportunity_id: OpportunityId
    value: Money = Field(description="The value lost")
    currency: Currency
    reason: Annotated[str, SEALABLE] = personal(default="", max_length=2000)


class IdentityLinked(_Strict):
    anonymous_id: str = personal(sealed=False, min_length=1, max_length=200)
    contact_id: UUID


class ContactsMerged(_Strict):
    merged_contact_id: UUID = Field(description="The duplicate folded into the subject contact")


class ContactsUnmerged(_Strict):
    """A merge undone: the duplicate is a contact of its own again, with its own history."""

    merged_contact_id: UUID = Field(
        description="The contact split off again from the subject contact it was merged into"
    )


class IdentityUnlinked(_Strict):
    """An identity link undone: the visitor's history leaves the contact's timeline."""

    anonymous_id: str = personal(sealed=False, min_length=1, max_length=200)
    contact_id: UUID = Field(description="The contact the visitor was linked to")


class ContactErased(_Strict):
    """The subject contact was erased on request: its data keys destroyed, and every view
    forgets its personal fields. Names no personal data: ids only."""

    request_id: UUID = Field(description="The erasure's id: its receipt is /v1/erasures/{id}")
    merged_contact_ids: list[UUID] = Field(
        default_factory=list, description="Contacts merged with it, erased with it"
    )
    lead_ids: list[UUID] = Field(
        default_factory=list, description="Leads whose only parent it was, erased with it"
    )


class PreferencesChanged(_Strict):
    """Only the preferences present change; absent ones keep their value."""

    model_config = ConfigDict(
        json_schema_extra={
            # What the validator below enforces, said in the schema for other languages.
            "anyOf": [
                {"required": [k], "properties": {k: {"type": "boolean"}}}
                for k in ("allow_bulk_email", "allow_email", "allow_prefill", "track_email")
            ]
        }
    )

    allow_bulk_email: bool | None = None
    allow_email: bool | None = None
    allow_prefill: bool | None = None
    track_email: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> PreferencesChanged:
        if all(v is None for v in self.model_dump().values()):
            raise ValueError("at least one preference must be given")
        return self


class SubscriptionJoined(_Strict):
    list_id: NonEmpty
    list_name: str = Field(default="", max_length=500)


class SubscriptionLeft(_Strict):
    list_id: NonEmpty


class ContactPointConsent(_Strict):
    channel: Literal["email", "sms", "phone", "push"]
    contact_point: Annotated[str, SEALABLE] = personal(min_length=1, max_length=320)
    purpose: Literal["commercial", "transactional", "tracking"]
    topic: str | None = Field(default=None, max_length=200)
    status: Literal["opted_in", "opted_out"]


class ConsentLevel(StrEnum):
    """Data-protection consent levels, lowest to highest."""

    not_consented = "not_consented"
    consent = "consent"
    transactional = "transactional"
    subscriptions = "subscriptions"
    marketing = "marketing"
    profiling = "profiling"


class ConsentLevelChanged(_Strict):
    level: ConsentLevel


# --------------------------------------------------------------------------- the types

_TYPES: dict[str, tuple[type[BaseModel], int, str]] = {
    # type name: (payload model, current schema_version, one-line description)
    "email.sent": (EmailSent, 1, "A marketing or transactional email was sent"),
    "email.delivered": (Empty, 1, "The email reached the recipient's server"),
    "email.opened": (Empty, 1, "The email was opened"),
    "email.clicked": (EmailClicked, 1, "A link in the email was clicked"),
    "email.bounced": (EmailBounced, 2, "The email bounced (hard or soft)"),
    "email.unsubscribed": (EmailUnsubscribed, 1, "The contact unsubscribed via the email"),
    "email.spam_reported": (Empty, 1, "The recipient reported the email as spam"),
    "email.blocked": (EmailBlocked, 1, "The email was not sent because consent was missing"),
    "sms.sent": (SmsSent, 1, "A text message was sent"),
    "sms.delivered": (Empty, 1, "The text message was delivered"),
    "sms.failed": (SmsFailed, 1, "The text message could not be delivered"),
    "sms.clicked": (EmailClicked, 1, "A link in the text message was clicked"),
    "sms.replied": (SmsReplied, 1, "The contact replied; STOP and the like opt out"),
    "push.sent": (PushSent, 1, "A push notification was sent"),
    "push.delivered": (Empty, 1, "The push notification was delivered"),
    "push.opened": (Empty, 1, "The push notification was opened"),
    "web.page_viewed": (PageViewed, 1, "A web page was viewed"),
    "web.link_clicked": (LinkClicked, 1, "A tracked link on a web page was clicked"),
    "form.viewed": (FormViewed, 1, "A marketing form was viewed"),
    "form.submitted": (FormSubmitted, 1, "A marketing form was submitted"),
    "event.registered": (MarketingEventRef, 1, "Registered for a marketing event"),
    "event.registration_cancelled": (MarketingEventRef, 1, "Cancelled an event registration"),
    "event.checked_in": (MarketingEventRef, 1, "Checked in at a marketing event"),
    "event.session_attended": (SessionAttended, 1, "Attended a session of an event"),
    "chat.invitation_shown": (ChatInvitationShown, 1, "A proactive chat invitation was shown"),
    "chat.invitation_accepted": (ChatInvitationRef, 1, "The proactive invitation was accepted"),
    "chat.invitation_declined": (ChatInvitationRef, 1, "The proactive invitation was closed"),
    "chat.invitation_expired": (ChatInvitationExpired, 1, "Not accepted within one minute"),
    "chat.conversation_started": (ChatConversationStarted, 1, "A chat conversation started"),
    "chat.message": (ChatMessage, 1, "A message in a chat conversation"),
    "chat.conversation_ended": (ChatConversationEnded, 1, "A chat conversation ended"),
    "activity.phone_call": (PhoneCall, 1, "A phone call with the contact"),
    "activity.appointment": (Appointment, 1, "An appointment with the contact"),
    "activity.task": (TaskActivity, 1, "A task about the contact"),
    "activity.case_opened": (CaseOpened, 1, "A service case was opened"),
    "activity.case_resolved": (CaseResolved, 1, "A service case was resolved"),
    "contact.created": (ContactDetails, 1, "A contact was created"),
    "contact.updated": (ContactDetails, 1, "A contact's details changed (absent = unchanged)"),
    "contact.merged": (ContactsMerged, 1, "A duplicate contact was merged into the subject"),
    "contact.unmerged": (ContactsUnmerged, 1, "A merge undone: the duplicate split off again"),
    "contact.erased": (ContactErased, 1, "The contact was erased on request (GDPR Art. 17)"),
    "contact.joined_account": (AccountMembership, 1, "The contact joined an account"),
    "contact.left_account": (AccountMembership, 1, "The contact left an account"),
    "account.created": (AccountCreated, 1, "An account (company) was created"),
    "account.updated": (AccountUpdated, 1, "An account's details changed (absent = unchanged)"),
    "identity.linked": (IdentityLinked, 1, "An anonymous visitor was identified as a contact"),
    "identity.unlinked": (IdentityUnlinked, 1, "An identity link was undone"),
    "lead.created": (LeadCreated, 1, "A lead was created, with a parent contact or account"),
    "lead.updated": (LeadUpdated, 1, "A lead's topic, source or parents changed"),
    "lead.qualified": (LeadQualified, 1, "The lead was promoted to an opportunity"),
    "lead.returned_to_marketing": (LeadReason, 1, "Sales returned the lead to marketing"),
    "lead.disqualified": (LeadReason, 1, "The lead was disqualified"),
    "lead.sales_ready": (LeadSalesReady, 1, "The lead's score crossed a model's threshold"),
    "opportunity.created": (OpportunityCreated, 1, "An opportunity (a deal) was opened"),
    "opportunity.stage_changed": (OpportunityStageChanged, 1, "The opportunity moved on"),
    "opportunity.won": (OpportunityWon, 1, "The opportunity was won"),
    "opportunity.lost": (OpportunityLost, 1, "The opportunity was lost"),
    "consent.preferences_changed": (PreferencesChanged, 1, "Contact preferences changed"),
    "consent.subscription_joined": (SubscriptionJoined, 1, "Joined a subscription list"),
    "consent.subscription_left": (SubscriptionLeft, 1, "Left a subscription list"),
    "consent.contact_point_changed": (
        ContactPointConsent,
        1,
        "Consent for an email address or phone number, per purpose and topic",
    ),
    "consent.level_changed": (ConsentLevelChanged, 1, "Data-protection consent level changed"),
}


_PAST: dict[tuple[str, int], type[BaseModel]] = {
    # (type name, older schema_version): its payload model. Still accepted (the codec upcasts
    # it), so it keeps a published schema, <type>.v<N>.json.
    ("email.bounced", 1): EmailBouncedV1,
}


class InteractionEvent(_Strict):
    """The envelope every event shares; subclasses fix ``type`` and type the payload."""

    event_id: UUID = Field(description="Unique id; the idempotency key")
    type: str
    schema_version: int = Field(ge=1)
    occurred_at: Instant
    recorded_at: Instant | None = Field(default=None, description="Set at ingest")
    source: str = Field(min_length=1, max_length=200, description="The upstream system")
    subject: Subject
    correlation: Correlation = Field(default_factory=Correlation)
    payload: BaseModel

    @property
    def channel(self) -> str:
        """The prefix of the type: email, sms, push, web, form, event, chat, activity, ..."""
        return self.type.split(".", 1)[0]

    @property
    def key(self) -> str:
        """The partition key and data subject: the contact where there is one (so its events
        keep order), else the lead, else the anonymous visitor, else the account."""
        s = self.subject
        return str(s.contact_id or s.lead_id or s.anonymous_id or s.account_id)

    def with_recorded_at(self, when: datetime) -> InteractionEvent:
        return (
            self if self.recorded_at is not None else self.model_copy(update={"recorded_at": when})
        )


def _merge_of_two(event: Any) -> Any:
    """A merge (or unmerge) names two contacts: the subject survives, the payload's is the
    duplicate. One with itself is told from the event alone, so it is refused here; a cycle
    of merges only the views can see (projection/merges.py)."""
    p = event.payload
    survivor = event.subject.contact_id
    if survivor is None:
        raise PydanticCustomError(
            "merge_subject_required",
            "{type} needs subject.contact_id: the contact that survives the merge",
            {"type": event.type},
        )
    if survivor == p.merged_contact_id:
        raise PydanticCustomError(
            "merge_into_itself",
            "{type}: payload.merged_contact_id {id} is the subject contact itself; "
            "a contact cannot be merged into (or split from) itself",
            {"type": event.type, "id": str(survivor)},
        )
    return event


_CHECKS: dict[type[BaseModel], Any] = {
    # payload model -> a check of the whole event (only where the payload alone cannot tell)
    ContactsMerged: _merge_of_two,
    ContactsUnmerged: _merge_of_two,
}


def _class_name(type_name: str) -> str:
    return "".join(p.capitalize() for p in type_name.replace(".", "_").split("_")) + "Event"


def _make(
    type_name: str, payload: type[BaseModel], version: int, doc: str, current: bool = True
) -> type[InteractionEvent]:
    payload_optional = all(not f.is_required() for f in payload.model_fields.values())
    if payload_optional:
        try:
            payload()  # an empty payload that its own rules refuse (preferences) is required
        except ValueError:
            payload_optional = False
    what = "Current version of this type" if current else "An older version, upcast on read"
    fields: dict[str, Any] = {
        "type": (Literal[type_name], ...),
        "schema_version": (Literal[version], Field(description=what)),
        "payload": (payload, Field(default_factory=payload) if payload_optional else ...),
    }
    name = _class_name(type_name) + ("" if current else f"V{version}")
    check = _CHECKS.get(payload)
    validators: dict[str, Any] = {}
    if check is not None:
        validators["_check"] = model_validator(mode="after")(check)
    model: type[InteractionEvent] = create_model(
        name, __base__=InteractionEvent, __doc__=doc, __validators__=validators, **fields
    )
    return model


EVENT_TYPES: dict[str, type[InteractionEvent]] = {
    name: _make(name, payload, version, doc) for name, (payload, version, doc) in _TYPES.items()
}
"""Every known event type, by name."""

CURRENT_VERSIONS: dict[str, int] = {name: v for name, (_, v, _) in _TYPES.items()}

PAST_VERSIONS: dict[tuple[str, int], type[InteractionEvent]] = {
    (name, version): _make(name, payload, version, _TYPES[name][2], current=False)
    for (name, version), payload in _PAST.items()
}
"""Older versions the store still accepts, by (type, version): for their schemas only;
decoding upcasts them to the current model."""

# A | B | ... over the registry: built at run time, so typed as Any for the checker.
_UNION: Any = functools.reduce(operator.or_, EVENT_TYPES.values())
AnyEvent: Any = Annotated[_UNION, Field(discriminator="type")]
"""The discriminated union of every event type."""

EVENT_ADAPTER: TypeAdapter[InteractionEvent] = TypeAdapter(AnyEvent)
