"""The event contract: validation rules, rejections that name what is wrong, upcasting,
personal-data marks, and the published JSON Schemas."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from interaction_store import schemas
from interaction_store.codec import EventRejected, decode, decode_document, encode
from interaction_store.events import (
    CURRENT_VERSIONS,
    EVENT_TYPES,
    EmailBounced,
    EmailSent,
    SmsReplied,
)
from interaction_store.settings import Settings
from tests.factories import doc

STREAMS = Settings().streams_dir


def rejection(document: Any) -> EventRejected:
    with pytest.raises(EventRejected) as info:
        decode(orjson.dumps(document))
    return info.value


def test_a_valid_event_round_trips_through_orjson() -> None:
    d = doc(type="email.sent", correlation={"campaign_id": "spring", "message_id": "m1"})
    event = decode(orjson.dumps(d))
    assert type(event).__name__ == "EmailSentEvent"
    assert isinstance(event.payload, EmailSent)
    assert event.payload.subject == "Spring webinar"
    assert decode(encode(event)) == event
    assert event.channel == "email"
    assert event.key == d["subject"]["contact_id"]


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        ({"event_id": "not-a-uuid"}, "event_id", "uuid_parsing"),
        ({"occurred_at": "2026-03-01T09:00:00"}, "occurred_at", "timezone_aware"),
        ({"subject": {}}, "subject", "subject_required"),
        ({"type": "email.teleported"}, "type", "known_type"),
        ({"schema_version": 9}, "schema_version", "known_schema_version"),
        ({"schema_version": "1"}, "schema_version", "known_schema_version"),
        ({"payload": {"url": 42}}, "payload.url", "string_type"),
        ({"source": ""}, "source", "string_too_short"),
        ({"surprise": 1}, "surprise", "extra_forbidden"),
    ],
)
def test_rejections_name_the_event_field_value_and_rule(
    change: dict[str, Any], field: str, rule: str
) -> None:
    d = doc(type="email.clicked")
    d.update(change)
    exc = rejection(d)
    assert exc.event_id == d["event_id"]
    hit = [v for v in exc.violations if v.field == field]
    assert hit, exc.violations
    assert hit[0].rule == rule
    assert field in str(exc) and rule in str(exc) and str(d["event_id"]) in str(exc)
    if field in change:
        assert repr(change[field])[:40] in str(exc)


def test_payload_fields_are_typed_per_event_type() -> None:
    exc = rejection(
        doc(type="web.page_viewed", payload={"url": "https://x.test", "seconds_on_page": -3})
    )
    assert [(v.field, v.value, v.rule) for v in exc.violations] == [
        ("payload.seconds_on_page", -3, "greater_than_equal")
    ]
    exc = rejection(doc(type="chat.invitation_expired", payload={"seconds_shown": 12}))
    assert exc.violations[0].field == "payload.seconds_shown"


def test_not_json_and_not_an_object_are_rejected_clearly() -> None:
    with pytest.raises(EventRejected, match="not valid JSON"):
        decode(b"{nope")
    with pytest.raises(EventRejected, match="must be a JSON object"):
        decode(b"[1, 2]")


def test_version_1_bounces_are_upcast_to_version_2() -> None:
    d = doc(type="email.bounced", schema_version=1, payload={"hard": True, "reason": "no mailbox"})
    event = decode(orjson.dumps(d))
    assert event.schema_version == 2
    assert isinstance(event.payload, EmailBounced)
    assert event.payload.bounce_type.value == "hard"
    assert event.payload.reason == "no mailbox"
    soft = decode_document(doc(type="email.bounced", schema_version=1, payload={"hard": False}))
    assert isinstance(soft.payload, EmailBounced)
    assert soft.payload.bounce_type.value == "soft"
    exc = rejection(doc(type="email.bounced", schema_version=1, payload={"hard": "yes"}))
    assert exc.violations[0].field == "payload.hard"


def test_sms_stop_reply_is_an_opt_out() -> None:
    stop = decode_document(doc(type="sms.replied", payload={"text": "stop please"}))
    assert isinstance(stop.payload, SmsReplied)
    assert stop.payload.is_opt_out
    fine = decode_document(doc(type="sms.replied", payload={"text": "thanks"}))
    assert isinstance(fine.payload, SmsReplied)
    assert not fine.payload.is_opt_out


def test_personal_data_fields_are_marked_in_the_schema() -> None:
    docs = schemas.generate()
    assert schemas.personal_fields(docs["contact.created.json"]) == [
        "payload.email",
        "payload.external_id",
        "payload.first_name",
        "payload.last_name",
        "payload.phone",
        "subject.anonymous_id",
    ]
    assert "payload.text" in schemas.personal_fields(docs["chat.message.json"])
    # What is sent to the person is theirs too (personalised content carries their details).
    assert "payload.subject" in schemas.personal_fields(docs["email.sent.json"])
    assert "payload.url" not in schemas.personal_fields(docs["email.clicked.json"])
    # Sealed: every personal field but the anonymous visitor id, which keys the events.
    assert schemas.personal_fields(docs["contact.created.json"], marker="x-encrypted") == [
        "payload.email",
        "payload.external_id",
        "payload.first_name",
        "payload.last_name",
        "payload.phone",
    ]


def test_checked_in_schemas_match_the_models() -> None:
    problems = schemas.drift(STREAMS / "schemas")
    assert problems == [], "run `istore schemas`: " + "; ".join(problems)


def test_drift_is_detected(tmp_path: Path) -> None:
    schemas.write(tmp_path)
    assert schemas.drift(tmp_path) == []
    target = tmp_path / "email.sent.json"
    changed = json.loads(target.read_text())
    changed["properties"]["payload"]["title"] = "Edited by hand"
    target.write_text(json.dumps(changed))
    (tmp_path / "email.retired.json").write_text("{}")
    (tmp_path / "sms.sent.json").unlink()
    (tmp_path / "email.bounced.v1.json").unlink()
    assert sorted(p.split("/")[-1] for p in schemas.drift(tmp_path)) == [
        "email.bounced.v1.json: missing",
        "email.retired.json: no such event type or version any more",
        "email.sent.json: differs from the models",
        "sms.sent.json: missing",
    ]


def test_every_type_and_accepted_version_has_a_schema_file() -> None:
    files = {p.name for p in (STREAMS / "schemas").glob("*.json")}
    assert files == {f"{t}.json" for t in EVENT_TYPES} | {
        "envelope.json",
        "email.bounced.v1.json",
    }
    assert set(CURRENT_VERSIONS) == set(EVENT_TYPES)
    # The envelope says which file holds which version.
    versions = json.loads((STREAMS / "schemas" / "envelope.json").read_text())["x-versions"]
    assert versions["email.bounced"] == {"1": "email.bounced.v1.json", "2": "email.bounced.json"}
    assert versions["email.sent"] == {"1": "email.sent.json"}
    assert set(versions) == set(EVENT_TYPES)


# ------------------------------------------------------------------ another language's view


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((STREAMS / "schemas" / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


VALID = [
    doc(type="email.sent"),
    doc(type="email.bounced"),
    doc(type="web.page_viewed", subject={"anonymous_id": "cookie-77"}),
    doc(type="lead.created", subject={"lead_id": str(uuid.uuid4())}, payload={"topic": "CRM"}),
    doc(
        type="consent.contact_point_changed",
        payload={
            "channel": "email",
            "contact_point": "a@example.com",
            "purpose": "commercial",
            "status": "opted_out",
        },
    ),
    doc(
        type="form.submitted",
        payload={"form_id": "f1", "fields": {"email": "a@b.c"}, "prefilled": True},
    ),
]

INVALID = [
    doc(occurred_at="2026-03-01T09:00:00"),
    doc(subject={}),
    doc(event_id="42"),
    doc(type="email.teleported"),
    doc(schema_version=3),
    doc(type="email.clicked", payload={}),
    doc(type="email.sent", payload={"subject": "x", "unknown": 1}),
    doc(type="consent.level_changed", payload={"level": "everything"}),
]


@pytest.mark.parametrize("document", VALID, ids=lambda d: d["type"])
def test_documents_valid_against_the_schema_decode(document: dict[str, Any]) -> None:
    validator("envelope.json").validate(document)
    validator(f"{document['type']}.json").validate(document)
    assert decode(orjson.dumps(document)).event_id == uuid.UUID(document["event_id"])


@pytest.mark.parametrize("document", INVALID, ids=lambda d: d["type"])
def test_documents_invalid_against_the_schema_are_rejected(document: dict[str, Any]) -> None:
    assert not validator("envelope.json").is_valid(document)
    with pytest.raises(EventRejected):
        decode(orjson.dumps(document))


def test_a_version_1_bounce_validates_against_its_published_schema() -> None:
    v1 = doc(type="email.bounced", schema_version=1, payload={"hard": True, "reason": "gone"})
    validator("email.bounced.v1.json").validate(v1)
    validator("envelope.json").validate(v1)
    assert not validator("email.bounced.json").is_valid(v1)  # the current version is 2
    assert not validator("email.bounced.v1.json").is_valid(doc(type="email.bounced"))
    broken = doc(type="email.bounced", schema_version=1, payload={"hard": "yes"})
    assert not validator("envelope.json").is_valid(broken)
    decode(orjson.dumps(v1))
    with pytest.raises(EventRejected):
        decode(orjson.dumps(broken))


@pytest.mark.parametrize("payload", [" ", [], 3])
def test_a_version_1_bounce_whose_payload_is_not_an_object_is_rejected(payload: Any) -> None:
    exc = rejection(doc(type="email.bounced", schema_version=1, payload=payload))
    assert [(v.field, v.rule) for v in exc.violations] == [("payload", "dict_type")]


def test_preferences_changed_needs_one_preference_in_the_schema_too() -> None:
    missing = doc(type="consent.preferences_changed")
    del missing["payload"]
    assert not validator("consent.preferences_changed.json").is_valid(missing)
    assert [v.field for v in rejection(missing).violations] == ["payload"]
    empty = doc(type="consent.preferences_changed", payload={})
    nulls = doc(type="consent.preferences_changed", payload={"allow_email": None})
    for document in (empty, nulls):
        assert not validator("consent.preferences_changed.json").is_valid(document)
        assert not validator("envelope.json").is_valid(document)
        with pytest.raises(EventRejected):
            decode(orjson.dumps(document))


@pytest.mark.parametrize(
    "when",
    [
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
        "1899-12-31T23:59:59Z",
        "2200-01-01T00:00:00Z",
        "2199-12-31T23:00:00-01:00",
    ],
)
@pytest.mark.parametrize("field", ["occurred_at", "recorded_at", "payload.starts_at"])
def test_instants_outside_the_range_are_refused_naming_field_value_and_rule(
    when: str, field: str
) -> None:
    d = doc(
        type="activity.appointment",
        payload={"starts_at": "2026-03-01T09:00:00Z", "ends_at": "2026-03-01T10:00:00Z"},
    )
    if field == "payload.starts_at":
        d["payload"]["starts_at"] = when
    else:
        d[field] = when
    exc = rejection(d)
    hit = [v for v in exc.violations if v.field == field]
    assert hit and hit[0].rule == "datetime_range" and hit[0].value == when, exc.violations
    assert "1900-01-01T00:00:00Z" in str(exc) and "2200-01-01T00:00:00Z" in str(exc)
    assert when in str(exc)


@pytest.mark.parametrize("when", [0, 1_700_000_000, 1.5])
def test_a_number_is_not_an_instant(when: float) -> None:
    # The schema says a string; pydantic alone would read a number as Unix time.
    exc = rejection(doc(occurred_at=when))
    assert [(v.field, v.value, v.rule) for v in exc.violations] == [
        ("occurred_at", when, "datetime_string")
    ]


@pytest.mark.parametrize(
    "when", ["1900-01-01T00:00:00Z", "1899-12-31T23:00:00-01:00", "2199-12-31T23:59:59.999999Z"]
)
def test_instants_at_the_edges_of_the_range_are_accepted(when: str) -> None:
    event = decode(orjson.dumps(doc(occurred_at=when)))
    assert event.occurred_at == datetime.fromisoformat(when)
    # ...and projected: the views work in UTC.
    assert event.occurred_at.astimezone(UTC).year in (1900, 2199)


def test_the_schema_states_the_range_of_every_instant() -> None:
    for name in ("envelope.json", "activity.appointment.json", "activity.task.json"):
        text = (STREAMS / "schemas" / name).read_text()
        ranges = json.loads(text)
        assert '"x-utc-range"' in text, name
    occurred = ranges["properties"]["occurred_at"]
    assert occurred["x-utc-range"] == {
        "minimum": "1900-01-01T00:00:00Z",
        "exclusiveMaximum": "2200-01-01T00:00:00Z",
    }
    assert occurred["format"] == "date-time"
    assert not validator("email.opened.json").is_valid(doc(occurred_at="9999-12-31T23:59:59Z"))


def test_nul_characters_are_rejected_naming_the_field() -> None:
    exc = rejection(doc(type="email.sent", payload={"subject": "a\x00b"}))
    assert [(v.field, v.rule) for v in exc.violations] == [("payload.subject", "no_nul")]
    exc = rejection(doc(source="crm\x00"))
    assert exc.violations[0].field == "source"


def test_a_missing_version_is_reported_with_everything_else_that_is_wrong() -> None:
    exc = rejection({"event_id": "x", "type": "email.opened"})
    fields = [(v.field, v.value, v.rule) for v in exc.violations]
    assert fields[0] == ("schema_version", None, "known_schema_version")
    assert ("event_id", "x", "uuid_parsing") in fields
    assert ("occurred_at", None, "missing") in fields and ("subject", None, "missing") in fields
