"""Subject access export: everything about one person (the contact, the duplicates merged with
it, the visitors linked to it, its leads) and nothing about anyone else, read back from the
log at the positions the subjects index keeps; filtered by the caller's categories with counts
that match; streamed in pieces; the same document from the command line. SQLite and PostgreSQL
views on the embedded log, and Kafka."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interaction_store.api import create_app
from interaction_store.api.access import AccessConfig, hash_key
from interaction_store.api.export import export_document
from interaction_store.api.services import Services
from interaction_store.log import open_log
from interaction_store.log.base import Position
from interaction_store.privacy.sealing import Opener
from interaction_store.projection.subjects import SubjectIndex
from interaction_store.read import ReadAPI
from interaction_store.settings import Settings
from interaction_store.subject_access import find_person
from interaction_store.views.sqlite import SQLiteViewStore
from tests.api_support import access_toml, auth, project
from tests.factories import doc
from tests.test_api_read import CATEGORY, publish
from tests.test_cli_views import istore

NOW = datetime.now(UTC).replace(microsecond=0)
AUDITOR = "test-key-for-auditor"
AUDITOR_READS = {"chat", "activity"}


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def category(event_type: str) -> str | None:
    return CATEGORY.get(event_type.split(".", 1)[0])


@dataclass
class Person:
    """Contact A with events of several categories; D, a duplicate merged into A, with its own;
    visitor V linked to A, with visits from before the link; lead L of A; and B, someone else,
    whose events must never show."""

    a: str = field(default_factory=lambda: str(uuid.uuid4()))
    d: str = field(default_factory=lambda: str(uuid.uuid4()))
    b: str = field(default_factory=lambda: str(uuid.uuid4()))
    visitor: str = field(default_factory=lambda: f"anon-{uuid.uuid4().hex[:12]}")
    lead: str = field(default_factory=lambda: str(uuid.uuid4()))
    mine: list[dict[str, Any]] = field(default_factory=list)
    others: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        a, d, b, v = self.a, self.d, self.b, self.visitor
        anon = {"anonymous_id": v}
        self.mine = [
            doc("contact.created", a, ago(40), {"email": "ada@example.com", "first_name": "Ada"}),
            doc("contact.created", d, ago(39), {"email": "ada.l@example.com"}),
            doc("consent.level_changed", a, ago(35), {"level": "marketing"}),
            doc("consent.preferences_changed", d, ago(34), {"allow_bulk_email": False}),
            doc("web.page_viewed", at=ago(33), payload={"url": "https://x.example/"}, subject=anon),
            doc("identity.linked", a, ago(32), {"anonymous_id": v, "contact_id": a}),
            doc("contact.merged", a, ago(31), {"merged_contact_id": d}),
            doc(
                "lead.created",
                at=ago(30),
                payload={"parent_contact_id": a},
                subject={"lead_id": self.lead},
            ),
            doc("lead.qualified", at=ago(2), payload={}, subject={"lead_id": self.lead}),
            doc("email.sent", a, ago(20), correlation={"message_id": "m-a"}),
            doc("email.opened", d, ago(19)),
            doc("sms.sent", a, ago(18)),
            doc("chat.conversation_started", a, ago(10), {"conversation_id": "k-1"}),
            doc("chat.conversation_started", d, ago(9), {"conversation_id": "k-2"}),
            doc("activity.phone_call", a, ago(5), {"direction": "inbound"}),
            doc("form.submitted", a, ago(4), {"form_id": "f-1"}),
        ]
        self.others = [
            doc("contact.created", b, ago(40), {"email": "bob@example.com"}),
            doc("email.opened", b, ago(19)),
            doc("chat.conversation_started", b, ago(9), {"conversation_id": "k-b"}),
            doc(
                "web.page_viewed",
                at=ago(3),
                payload={"url": "https://x.example/b"},
                subject={"anonymous_id": "anon-someone-else"},
            ),
        ]

    def visible(self, reads: set[str] | None) -> list[dict[str, Any]]:
        return [
            x
            for x in self.mine
            if reads is None or (c := category(x["type"])) is None or c in reads
        ]


def access() -> AccessConfig:
    """The default roles and keys, and an auditor that may export two categories."""
    auditor = (
        '\n[roles.auditor]\nread = ["chat", "activity"]\nexport = true\n'
        f'\n[keys.auditor]\nrole = "auditor"\nsha256 = "{hash_key(AUDITOR)}"\n'
    )
    return AccessConfig.from_toml(access_toml() + auditor, "(test access)")


def served(settings: Settings) -> tuple[TestClient, Services, Person]:
    person = Person()
    publish(settings, person.mine + person.others)
    project(settings)
    services = Services(settings, access())
    return TestClient(create_app(settings, services)), services, person


def export(http: TestClient, contact: str, key_headers: dict[str, str]) -> dict[str, Any]:
    r = http.get(f"/v1/contacts/{contact}/export", headers=key_headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    out: dict[str, Any] = r.json()
    return out


def test_the_export_holds_exactly_the_persons_events(view_settings: Settings) -> None:
    http, services, p = served(view_settings)
    with http:
        got = export(http, p.a, auth("admin"))
        via_duplicate = export(http, p.d, auth("admin"))
        other = export(http, p.b, auth("admin"))
    services.close()
    ids = [e["event"]["event_id"] for e in got["events"]]
    assert sorted(ids) == sorted(x["event_id"] for x in p.mine)
    assert len(ids) == len(set(ids))
    # Oldest first, each with the position the log holds it at.
    keys = [(e["event"]["occurred_at"], e["event"]["event_id"]) for e in got["events"]]
    assert keys == sorted(keys)
    with open_log(view_settings) as log:
        for e in got["events"]:
            at = e["position"]
            [record] = log.read(at["topic"], at["partition"], at["offset"], 1)
            assert record.event().event_id == uuid.UUID(e["event"]["event_id"])
    text = orjson.dumps(got).decode()
    for x in p.others:
        assert x["event_id"] not in text
    assert "bob@example.com" not in text
    # Who the export is about, and each view's state for them.
    assert got["format"] == "istore.contact-export/v1" and got["role"] == "admin"
    assert got["person"]["contacts"] == [p.a, p.d]
    assert got["person"]["anonymous_ids"] == [p.visitor]
    assert got["person"]["leads"] == [p.lead]
    assert [m["contact_id"] for m in got["person"]["merged"]] == [p.d]
    assert {c["contact_id"] for c in got["profile"]["contacts"]} == {p.a, p.d}
    assert got["profile"]["leads"][0]["status"] == "qualified"
    assert got["consent"]["preferences"]["allow_bulk_email"]["value"] is False  # D's, merged
    assert got["consent"]["level"]["value"] == "marketing"
    assert {e["type"] for e in got["consent_audit"]} >= {"consent.level_changed"}
    [lead] = got["lead_scores"]
    assert lead["lead_id"] == p.lead and lead["scores"]
    timeline = {e["event_id"] for e in got["timeline"]}
    assert {x["event_id"] for x in p.mine if x["type"] == "chat.conversation_started"} <= timeline
    assert got["counts"]["timeline"] == len(got["timeline"])
    # The export of the duplicate is the same person's.
    assert sorted(e["event"]["event_id"] for e in via_duplicate["events"]) == sorted(ids)
    assert sorted(e["event"]["event_id"] for e in other["events"]) == sorted(
        x["event_id"] for x in p.others[:3]
    )


def test_a_role_exports_only_its_categories_with_counts_that_match(
    view_settings: Settings,
) -> None:
    http, services, p = served(view_settings)
    with http:
        full = export(http, p.a, auth("admin"))
        privacy = export(http, p.a, auth("privacy"))
        got = export(http, p.a, {"Authorization": f"Bearer {AUDITOR}"})
        refused = http.get(f"/v1/contacts/{p.a}/export", headers=auth("marketing"))
    services.close()
    assert refused.status_code == 403
    assert "may not export" in refused.json()["detail"]
    # The privacy role reads every category: admin's document.
    for doc_ in (full, privacy):
        doc_.pop("exported_at")
    assert privacy == full | {"role": "privacy"}

    assert got["categories"] == sorted(AUDITOR_READS)
    seen = p.visible(AUDITOR_READS)
    assert sorted(e["event"]["event_id"] for e in got["events"]) == sorted(
        x["event_id"] for x in seen
    )
    counts = got["counts"]
    assert counts["events"] == len(got["events"]) == len(seen)
    assert counts["by_category"] == dict(
        Counter(c for x in seen if (c := category(x["type"])) is not None)
    )
    assert counts["without_category"] == sum(1 for x in seen if category(x["type"]) is None)
    assert counts["by_type"] == dict(Counter(x["type"] for x in seen))
    assert {e["permission"] for e in got["timeline"]} <= AUDITOR_READS
    assert full["counts"]["events"] == len(p.mine)
    text = orjson.dumps(got).decode()
    for x in p.mine:
        if x not in seen:
            assert x["event_id"] not in text, x["type"]


def test_an_unknown_or_malformed_id_is_refused_naming_it(embedded_settings: Settings) -> None:
    http, services, _ = served(embedded_settings)
    nobody = str(uuid.uuid4())
    with http:
        missing = http.get(f"/v1/contacts/{nobody}/export", headers=auth("admin"))
        bad = http.get("/v1/contacts/not-a-uuid/export", headers=auth("admin"))
    services.close()
    assert missing.status_code == 404
    assert nobody in missing.json()["detail"] and missing.json()["contact_id"] == nobody
    assert bad.status_code == 422 and "not-a-uuid" in bad.text
    result = istore(embedded_settings, "export", "contact", nobody, code=1)
    assert f"contact {nobody} is unknown" in result.output
    result = istore(embedded_settings, "export", "contact", "nope", code=1)
    assert "'nope': not a UUID" in result.output


def test_a_big_export_is_written_in_pieces(view_settings: Settings) -> None:
    contact = str(uuid.uuid4())
    visits = [
        doc("web.page_viewed", contact, ago(1 + i / 1000), {"url": f"https://x.example/{i}"})
        for i in range(2500)
    ]
    publish(view_settings, visits)
    project(view_settings)
    services = Services(view_settings, access())
    app = create_app(view_settings, services)
    pieces: list[bytes] = []

    async def call() -> None:
        # Straight through the ASGI app: the test client would join the body before handing
        # it over, and hide whether it was produced at once or piece by piece.
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": f"/v1/contacts/{contact}/export",
            "raw_path": f"/v1/contacts/{contact}/export".encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"authorization", auth("admin")["Authorization"].encode())],
            "client": ("127.0.0.1", 1),
            "server": ("testserver", 80),
        }

        asked: list[bool] = []

        async def receive() -> dict[str, Any]:
            if asked:  # the request was read: the client stays until the response ends
                await asyncio.Event().wait()
            asked.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                assert message["status"] == 200
            elif message["type"] == "http.response.body" and message.get("body"):
                pieces.append(message["body"])

        await app(scope, receive, send)

    try:
        asyncio.run(call())
    finally:
        services.close()
    body = b"".join(pieces)
    document = orjson.loads(body)
    assert document["counts"]["events"] == len(document["events"]) == 2500
    # Pieces of at most a page of entries or events each, never the document at once.
    assert len(pieces) >= 2 * 2500 // 100
    assert max(len(piece) for piece in pieces) < len(body) / 10


def test_the_command_line_writes_the_same_document(embedded_settings: Settings) -> None:
    http, services, p = served(embedded_settings)
    with http:
        api = export(http, p.a, auth("admin"))
    services.close()
    out = embedded_settings.data_dir / "export.json"
    istore(embedded_settings, "export", "contact", p.a, "--output", str(out))
    assert out.stat().st_mode & 0o777 == 0o600
    written = orjson.loads(out.read_bytes())
    printed = orjson.loads(istore(embedded_settings, "export", "contact", p.a).stdout_bytes)
    for doc_ in (api, written, printed):
        doc_.pop("exported_at")
    assert written == api | {"role": "cli"}
    assert printed == written
    (embedded_settings.data_dir / "access.toml").write_text(
        access_toml() + '\n[roles.auditor]\nread = ["chat"]\nexport = true\n'
    )
    chats = orjson.loads(
        istore(embedded_settings, "export", "contact", p.a, "--role", "auditor").stdout_bytes
    )
    assert {e["category"] for e in chats["events"]} == {"chat", None}
    refused = istore(embedded_settings, "export", "contact", p.a, "--role", "nobody", code=1)
    assert "--role 'nobody'" in refused.output and "auditor" in refused.output


@pytest.mark.kafka
def test_the_export_reads_the_persons_events_back_from_kafka(kafka_settings: Settings) -> None:
    p = Person()
    publish(kafka_settings, p.mine + p.others)
    project(kafka_settings)
    with ReadAPI(kafka_settings) as read, open_log(kafka_settings) as log:
        person = find_person(read, p.a)
        opener = Opener.lazy(kafka_settings)
        body = b"".join(export_document(read, log, person, "admin", None, opener))
    got = orjson.loads(body)
    assert b"enc:v1:" not in body  # the person's copy is in clear
    sent = {x["event_id"]: x["payload"] for x in p.mine}
    for e in got["events"]:
        for name, value in sent[e["event"]["event_id"]].items():
            assert e["event"]["payload"][name] == value
    assert sorted(e["event"]["event_id"] for e in got["events"]) == sorted(
        x["event_id"] for x in p.mine
    )
    assert {e["position"]["topic"] for e in got["events"]} == {
        t.name for t in log.catalog.event_topics
    }


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 30),  # the event (several subjects and positions may name one)
            st.sampled_from(["contact", "lead", "anonymous"]),
            st.integers(0, 3),  # the subject
            st.integers(0, 2),  # a second copy of the event in the log
        ),
        max_size=120,
    ),
    page=st.integers(1, 12),
    asked=st.sets(st.integers(0, 3), min_size=1),
)
def test_locate_gives_each_event_once_in_order_whatever_the_page(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[tuple[int, str, int, int]],
    page: int,
    asked: set[int],
) -> None:
    store = SQLiteViewStore(tmp_path_factory.mktemp("index") / "views.sqlite")
    index = SubjectIndex()
    store.ensure(index.schema(store.dialect))
    at = [f"2026-01-{1 + n % 28:02d}T00:00:00.000000Z" for n in range(31)]
    with store.transaction() as c:
        c.executemany(
            f"INSERT INTO {index.table('events')} VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            [
                (kind, f"s{s}", at[n], f"e{n:02d}", "email.opened", "t", 0, 100 * copy + n)
                for n, kind, s, copy in rows
            ],
        )
    subjects = {kind: [f"s{s}" for s in sorted(asked)] for kind in ("contact", "lead")}
    found = list(index.locate(store, subjects, page))
    store.close()
    wanted = {n for n, kind, s, _ in rows if kind != "anonymous" and s in asked}
    assert [x.event_id for x in found] == [
        f"e{n:02d}" for n in sorted(wanted, key=lambda n: (at[n], n))
    ]
    for x in found:  # each at its first position
        n = int(x.event_id[1:])
        first = min(
            100 * copy + n
            for m, kind, s, copy in rows
            if m == n and kind != "anonymous" and s in asked
        )
        assert x.position == Position("t", 0, first)
