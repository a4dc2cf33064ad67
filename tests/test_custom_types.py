"""Extension event types: a JSON Schema in streams/schemas/custom/ registers ``custom.<name>``;
its events are validated against it (every violation named), stored, shown on timelines with
the channel, category and preview timeline.toml gives them, and scored by rules that match
them; their personal fields are sealed like the built-ins'. A bad or clashing schema stops
``istore schemas --check`` and the store's start, naming the file."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from interaction_store import custom_types
from interaction_store.api import create_app
from interaction_store.api.access import DEFAULT_ROLES, AccessConfig, hash_key, known_categories
from interaction_store.api.services import Services
from interaction_store.catalog import CatalogError, StreamCatalog
from interaction_store.cli import main
from interaction_store.codec import EventRejected, decode
from interaction_store.custom_types import CustomEvent
from interaction_store.ingest import Ingest
from interaction_store.log import open_log
from interaction_store.privacy.dropping import DROPPED_TEXT
from interaction_store.projection.scoring.files import read_model
from interaction_store.projection.timeline.settings import TimelineConfigError, TimelineSettings
from interaction_store.read import ReadAPI
from interaction_store.settings import Settings
from tests.api_support import project
from tests.factories import doc
from tests.test_log_behaviour import read_all

REPO = Path(__file__).resolve().parent.parent
TYPE = "custom.insights_activity"
SECRET = "Zephyrine bought the blue tandem"

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "A Customer Insights activity",
    "description": "An activity that Customer Insights unified from another system",
    "type": "object",
    "required": ["activity_type", "title"],
    "additionalProperties": False,
    "properties": {
        "activity_type": {"type": "string", "enum": ["purchase", "loyalty", "survey"]},
        "title": {
            "type": "string",
            "minLength": 1,
            "maxLength": 200,
            "x-personal-data": True,
            "x-encrypted": "sealed by the store at ingest: send it in clear",
        },
        "amount": {"type": "number", "minimum": 0},
        "details": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

TIMELINE = f"""
[custom."{TYPE}"]
channel = "insights"
category = "customer_insights"
preview = ["activity_type", "title", "amount"]
"""

MODEL = f"""
name = "insights"
version = 1
sales_ready_threshold = 100
decay = "none"
grades = [{{ grade = "A", min_score = 50 }}, {{ grade = "B" }}]

[[rules]]
id = "purchase"
points = 30
when = {{ type = "{TYPE}", where = {{ "payload.activity_type" = "purchase" }} }}

[[rules]]
id = "big-spender"
points = 5
when = {{ type = "custom.*", where = {{ "payload.amount" = {{ at_least = 100 }} }} }}
"""

KEYS = {"admin": "key-admin", "marketing": "key-marketing", "insights": "key-insights"}
ACCESS = (
    DEFAULT_ROLES
    + '\n[roles.insights]\nread = ["customer_insights", "website"]\n'
    + "".join(
        f'\n[keys.{role}]\nrole = "{role}"\nsha256 = "{hash_key(key)}"\n'
        for role, key in KEYS.items()
    )
)
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _default_types() -> Iterator[None]:
    """Custom types are installed per process: give the next test the shipped folder's."""
    yield
    custom_types.install_from(Settings().streams_dir)


def folders(root: Path, schema: Any = SCHEMA, name: str = TYPE) -> tuple[Path, Path]:
    """Copies of streams/ and projections/ with one custom schema, its timeline table and a
    scoring model that matches it."""
    streams, projections = root / "streams", root / "projections"
    shutil.copytree(REPO / "streams", streams)
    shutil.copytree(REPO / "projections", projections)
    (streams / "schemas" / "custom").mkdir()
    text = schema if isinstance(schema, str) else orjson.dumps(schema).decode()
    (streams / "schemas" / "custom" / f"{name}.json").write_text(text)
    if name == TYPE:
        with (projections / "timeline.toml").open("a") as f:
            f.write(TIMELINE)
        (projections / "scoring" / "insights.toml").write_text(MODEL)
    return streams, projections


def with_custom(settings: Settings, root: Path) -> Settings:
    streams, projections = folders(root)
    out = settings.model_copy(update={"streams_dir": streams, "projections_dir": projections})
    StreamCatalog.load(out)  # installs the type, as opening the log does
    return out


@pytest.fixture
def custom_settings(embedded_settings: Settings, tmp_path: Path) -> Settings:
    return with_custom(embedded_settings, tmp_path)


def activity(contact: str, payload: dict[str, Any], days_ago: float = 1, **kw: Any) -> Any:
    return doc(TYPE, contact, NOW - timedelta(days=days_ago), payload, **kw)


def publish(settings: Settings, docs: list[dict[str, Any]]) -> list[Any]:
    with open_log(settings) as log:
        return Ingest(log, parallel=False).publish_documents(
            [orjson.dumps(d) for d in docs], "test_custom_types"
        )


def app(settings: Settings) -> tuple[TestClient, Services]:
    services = Services(
        settings, AccessConfig.from_toml(ACCESS, "(test)", known_categories(settings))
    )
    return TestClient(create_app(settings, services, role="all")), services


def as_(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}"}


# ---------------------------------------------------------------------------- end to end


def test_custom_events_are_checked_stored_shown_by_category_and_scored(
    view_settings: Settings, tmp_path: Path
) -> None:
    settings = with_custom(view_settings, tmp_path)
    contact, lead = str(uuid.uuid4()), str(uuid.uuid4())
    good = [
        activity(contact, {"activity_type": "purchase", "title": "Tandem", "amount": 120}, 3),
        activity(contact, {"activity_type": "survey", "title": "NPS 9"}, 2),
        activity(contact, {"activity_type": "purchase", "title": "Helmet", "amount": 40}, 1),
    ]
    bad = activity(contact, {"activity_type": "refund", "amount": -5, "colour": "red"})
    client, services = app(settings)
    try:
        with client:
            lead_doc = doc(
                "lead.created", None, NOW - timedelta(days=5), {"parent_contact_id": contact}
            )
            lead_doc["subject"] = {"lead_id": lead}
            web = doc("web.page_viewed", contact, NOW - timedelta(hours=1))
            r = client.post("/v1/events", json=[*good, bad, lead_doc, web], headers=as_("admin"))
            assert r.status_code == 200, r.text
            answer = r.json()["events"]
            assert [e["status"] for e in answer] == ["accepted"] * 3 + ["rejected"] + [
                "accepted"
            ] * 2
            assert answer[3]["type"] == TYPE
            named = {(v["field"], v["value"], v["rule"]) for v in answer[3]["violations"]}
            assert named == {
                ("payload.activity_type", "refund", "schema.enum"),
                ("payload.amount", -5, "schema.minimum"),
                ("payload.title", None, "schema.required"),
                ("payload", None, "schema.additionalProperties"),
            }
            project(settings)

            def timeline(role: str, **params: Any) -> Any:
                r = client.get(f"/v1/contacts/{contact}/timeline", params=params, headers=as_(role))
                assert r.status_code == 200, r.text
                return r.json()

            admin = timeline("admin")
            custom = [e for e in admin["entries"] if e["type"] == TYPE]
            assert [e["preview"] for e in custom] == [
                {"activity_type": "purchase", "title": "Helmet", "amount": 40},
                {"activity_type": "survey", "title": "NPS 9"},
                {"activity_type": "purchase", "title": "Tandem", "amount": 120},
            ]
            assert {(e["channel"], e["permission"]) for e in custom} == {
                ("insights", "customer_insights")
            }
            assert admin["total"] == 4
            # A role without the category neither sees nor counts them; one with it does.
            marketing = timeline("marketing")
            assert [e["type"] for e in marketing["entries"]] == ["web.page_viewed"]
            assert marketing["total"] == 1
            assert timeline("insights")["total"] == 4
            only = timeline("admin", channel="insights")
            assert only["total"] == 3 and {e["type"] for e in only["entries"]} == {TYPE}

            r = client.get(f"/v1/leads/{lead}/scores/insights?explain=true", headers=as_("admin"))
            assert r.status_code == 200, r.text
            score = r.json()
            # Two purchases (30 each) and one amount of at least 100 (5).
            assert (score["score"], score["grade"]) == (65, "A")
    finally:
        services.close()


def test_an_unknown_custom_type_is_still_rejected(custom_settings: Settings) -> None:
    contact = str(uuid.uuid4())
    unknown = doc("custom.nothing_registered", contact, payload={"a": 1})
    (outcome,) = publish(custom_settings, [unknown])
    assert outcome.status == "rejected"
    (violation,) = outcome.error.violations
    assert (violation.field, violation.value, violation.rule) == (
        "type",
        "custom.nothing_registered",
        "known_type",
    )
    assert "streams/schemas/custom/custom.nothing_registered.json" in violation.message
    with open_log(custom_settings) as log:
        [letter] = read_all(log, log.catalog.dead_letter.name)
    assert "known_type" in letter.headers["istore.reason"]


def test_a_rejected_custom_event_goes_to_the_dead_letter_topic_naming_the_field(
    custom_settings: Settings, tmp_path: Path
) -> None:
    lines = tmp_path / "in.jsonl"
    bad = activity(str(uuid.uuid4()), {"activity_type": "purchase", "title": "x" * 201})
    good = activity(str(uuid.uuid4()), {"activity_type": "loyalty", "title": "Gold"})
    lines.write_bytes(orjson.dumps(bad) + b"\n" + orjson.dumps(good) + b"\n")
    result = CliRunner().invoke(main, [*cli_dirs(custom_settings), "publish", str(lines)])
    assert result.exit_code == 0, result.output
    assert "accepted 1, duplicate 0, rejected 1" in result.output
    assert "payload.title" in result.output and "schema.maxLength" in result.output
    with open_log(custom_settings) as log:
        [letter] = read_all(log, log.catalog.dead_letter.name)
        [stored] = read_all(log, log.catalog.topic_for(TYPE).name)
    # The letter names its subject, so it is sealed; its headers keep the field and the rule.
    assert "payload.title" in letter.headers["istore.reason"]
    assert "schema.maxLength" in letter.headers["istore.reason"]
    assert isinstance(stored.event(), CustomEvent)


def cli_dirs(settings: Settings) -> list[str]:
    return [
        "--data-dir",
        str(settings.data_dir),
        "--streams-dir",
        str(settings.streams_dir),
        "--projections-dir",
        str(settings.projections_dir),
    ]


# ---------------------------------------------------------------------------- privacy


def test_a_personal_field_of_a_custom_type_is_sealed_in_the_log(custom_settings: Settings) -> None:
    contact = str(uuid.uuid4())
    outcomes = publish(
        custom_settings, [activity(contact, {"activity_type": "purchase", "title": SECRET})]
    )
    assert [o.status for o in outcomes] == ["accepted"]
    raw = b"".join(p.read_bytes() for p in custom_settings.data_dir.glob("log.sqlite*"))
    assert SECRET.encode() not in raw
    assert b'"title":"enc:v1:' in raw and contact.encode() in raw
    project(custom_settings)
    with ReadAPI(custom_settings) as read:
        [entry] = read.timeline(contact_id=contact).entries
        assert entry.preview["title"] == SECRET  # opened by the worker for the view

    # Sealed text from a publisher is refused, as for built-in types.
    forged = activity(contact, {"activity_type": "purchase", "title": "enc:v1:AAAA"})
    (outcome,) = publish(custom_settings, [forged])
    assert outcome.status == "rejected"
    assert outcome.error.violations[0].rule == "sealed_by_store"

    # After an erasure the timeline forgets it, and a later event is stored without it.
    result = CliRunner().invoke(main, [*cli_dirs(custom_settings), "erase", "contact", contact])
    assert result.exit_code == 0, result.output
    later = activity(contact, {"activity_type": "loyalty", "title": SECRET}, 0.5)
    (outcome,) = publish(custom_settings, [later])
    assert (outcome.status, outcome.personal_data_dropped) == ("accepted", True)
    project(custom_settings)
    with ReadAPI(custom_settings) as read:
        entries = read.timeline(contact_id=contact).entries
    assert [e.preview for e in entries] == [{"erased": True}] * 2
    with open_log(custom_settings) as log:
        stored = [r.event() for r in read_all(log, log.catalog.topic_for(TYPE).name)]
    assert stored[-1].payload.title == DROPPED_TEXT  # required: stands in, still valid


# ---------------------------------------------------------------------------- bad schemas


@pytest.mark.parametrize(
    ("name", "schema", "problem"),
    [
        (
            TYPE,
            {"type": "object", "properties": {"a": {"type": "strnig"}}},
            "not a valid JSON Schema",
        ),
        ("email.sent", {"type": "object"}, "clashes with the built-in type 'email.sent'"),
        ("insights_activity", {"type": "object"}, "must start with 'custom.'"),
        (TYPE, "{not json", "not valid JSON"),
        (TYPE, {"type": "array"}, '"type": "object"'),
        (
            TYPE,
            {
                "type": "object",
                "properties": {
                    "a": {
                        "type": "object",
                        "properties": {"b": {"type": "string", "x-personal-data": True}},
                    }
                },
            },
            "only top-level payload properties can be personal",
        ),
        (
            TYPE,
            {"type": "object", "properties": {"a": {"type": "integer", "x-personal-data": True}}},
            "a personal field is sealed as text",
        ),
        (TYPE, {"type": "object", "$ref": "https://example.com/x.json"}, "only local references"),
    ],
)
def test_a_bad_custom_schema_stops_the_check_and_the_start_naming_the_file(
    tmp_path: Path, name: str, schema: Any, problem: str
) -> None:
    streams, _ = folders(tmp_path, schema, name)
    path = streams / "schemas" / "custom" / f"{name}.json"
    dirs = ["--data-dir", str(tmp_path / "data"), "--streams-dir", str(streams)]
    check = CliRunner().invoke(main, [*dirs, "schemas", "--check"])
    assert check.exit_code == 1, check.output
    assert str(path) in check.output and problem in check.output
    events = tmp_path / "none.jsonl"
    events.write_text("")
    start = CliRunner().invoke(main, [*dirs, "publish", str(events)])
    assert start.exit_code != 0
    assert str(path) in start.output and problem in start.output
    with pytest.raises(CatalogError, match=re.escape(problem)):
        StreamCatalog.load(Settings(streams_dir=streams, data_dir=tmp_path / "data"))


def test_schemas_check_names_the_custom_types_it_validated(tmp_path: Path) -> None:
    streams, _ = folders(tmp_path)
    result = CliRunner().invoke(main, ["--streams-dir", str(streams), "schemas", "--check"])
    assert result.exit_code == 0, result.output
    assert TYPE in result.output


def test_the_timeline_and_scoring_files_are_checked_against_the_schema(
    custom_settings: Settings,
) -> None:
    base = (custom_settings.projections_dir / "timeline.toml").read_text()
    cases = {
        'preview = ["activity_type", "title", "amount"]': ('preview = ["colour"]', "colour"),
        'category = "customer_insights"': ('category = ""', "category"),
        f'[custom."{TYPE}"]': ('[custom."custom.nope"]', "no such custom type"),
    }
    for old, (new, problem) in cases.items():
        with pytest.raises(TimelineConfigError, match=problem):
            TimelineSettings.parse(base.replace(old, new))
    with pytest.raises(ValueError, match="colour"):
        read_model(MODEL.replace("payload.activity_type", "payload.colour"), "insights.toml")
    with pytest.raises(ValueError, match=r"custom\.nope"):
        read_model(MODEL.replace(f'type = "{TYPE}"', 'type = "custom.nope"'), "insights.toml")


@pytest.mark.kafka
def test_a_custom_event_goes_through_kafka(kafka_settings: Settings, tmp_path: Path) -> None:
    settings = with_custom(kafka_settings, tmp_path)
    contact = str(uuid.uuid4())
    sent = activity(contact, {"activity_type": "loyalty", "title": SECRET, "details": {"a": "b"}})
    (outcome,) = publish(settings, [sent])
    assert outcome.status == "accepted"
    with open_log(settings) as log:
        [record] = read_all(log, log.catalog.topic_for(TYPE).name)
    assert SECRET.encode() not in (record.value or b"")
    event = record.event()
    assert isinstance(event, CustomEvent) and event.payload.details == {"a": "b"}


# ---------------------------------------------------------------------------- properties

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
_payloads = st.one_of(
    st.dictionaries(
        st.sampled_from(["activity_type", "title", "amount", "details", "other"]), _json
    ),
    from_schema({k: v for k, v in SCHEMA.items() if k != "$schema"}),
    _json,
)


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=_payloads)
def test_any_payload_is_accepted_or_rejected_with_a_violation(
    custom_settings: Settings, payload: Any
) -> None:
    sent = doc(TYPE, payload=payload)
    try:
        event = decode(orjson.dumps(sent))
    except EventRejected as exc:
        assert exc.violations and exc.event_type == TYPE
        assert all(v.field == "payload" or v.field.startswith("payload.") for v in exc.violations)
        return
    assert isinstance(event, CustomEvent)
    assert event.payload.model_dump() == payload
    assert not custom_types.find(TYPE).violations(payload)  # type: ignore[union-attr]


@hypothesis_settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=from_schema({k: v for k, v in SCHEMA.items() if k != "$schema"}))
def test_a_payload_the_schema_allows_is_accepted(custom_settings: Settings, payload: Any) -> None:
    sent = orjson.dumps(doc(TYPE, payload=payload))
    if b"\\u0000" in sent:
        return  # the store refuses NUL in any text (PostgreSQL cannot store it)
    event = decode(sent)
    assert isinstance(event, CustomEvent) and event.payload.model_dump() == payload
