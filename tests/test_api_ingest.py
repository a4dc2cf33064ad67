"""The ingest API end to end: per-event outcomes of mixed batches in both formats, really in the
log (and the rejected ones in the dead-letter topic), consistency tokens, the limits, malformed
bodies, media types, validation without publishing, permissions per role, metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from interaction_store.api import consistency
from interaction_store.log import open_log
from interaction_store.log.base import LogRecord, Position
from interaction_store.privacy import open_key_store
from interaction_store.privacy.sealing import letter_original
from interaction_store.settings import Settings
from tests.api_support import ROLES, auth, client
from tests.factories import doc, raw
from tests.test_log_behaviour import read_all

JSON = {"Content-Type": "application/json"}
LINES = {"Content-Type": "application/x-ndjson"}


def post(
    c: TestClient,
    body: bytes | Iterator[bytes],
    headers: dict[str, str],
    role: str = "publisher",
    path: str = "/v1/events",
) -> Any:
    return c.post(path, content=body, headers={**auth(role), **headers})


def position(p: dict[str, Any]) -> Position:
    return Position(p["topic"], p["partition"], p["offset"])


def stored(settings: Settings) -> tuple[dict[str, Position], list[Any]]:
    """Event id -> position of every event in the log, and the dead letters."""
    with open_log(settings) as log:
        events = {
            str(r.event().event_id): r.position
            for t in log.catalog.event_topics
            for r in read_all(log, t.name)
        }
        return events, read_all(log, log.catalog.dead_letter.name)


def original(settings: Settings, letter: LogRecord) -> bytes | None:
    """A dead letter's document as sent (sealed under its subject's key when it names one)."""
    with open_key_store(settings) as keys:
        return letter_original(keys, letter)


def ingested(c: TestClient) -> dict[str, float]:
    text = c.get("/metrics").text
    return {
        s.labels["outcome"]: s.value
        for family in text_string_to_metric_families(text)
        if family.name == "istore_ingest_events"
        for s in family.samples
        if s.name == "istore_ingest_events_total"
    }


class IngestBehaviour:
    @pytest.fixture
    def settings(self) -> Settings:
        raise NotImplementedError

    def test_a_mixed_json_array_is_answered_per_event(self, settings: Settings) -> None:
        good = [doc(at=i) for i in range(3)]
        naive = doc(occurred_at="2026-03-01T09:00:00")
        batch = [good[0], naive, good[1], 5, good[0], good[2]]
        with client(settings) as c:
            r = post(c, orjson.dumps(batch), {**JSON, "X-Request-ID": "req-1"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert [e["status"] for e in body["events"]] == [
            "accepted",
            "rejected",
            "accepted",
            "rejected",
            "duplicate",
            "accepted",
        ]
        assert [e["index"] for e in body["events"]] == list(range(6))
        assert (body["accepted"], body["duplicates"], body["rejected"]) == (3, 1, 2)
        events = body["events"]
        # The duplicate in the same batch points at the copy just written.
        assert events[4]["position"] == events[0]["position"]
        assert [events[i]["event_id"] for i in (0, 2, 4, 5)] == [
            good[0]["event_id"],
            good[1]["event_id"],
            good[0]["event_id"],
            good[2]["event_id"],
        ]
        assert events[1]["event_id"] == naive["event_id"]
        assert events[1]["violations"] == [
            {
                "field": "occurred_at",
                "value": "2026-03-01T09:00:00",
                "rule": "timezone_aware",
                "message": events[1]["violations"][0]["message"],
            }
        ]
        assert events[3]["violations"][0]["rule"] == "object"

        log_events, dead = stored(settings)
        assert log_events == {
            g["event_id"]: position(events[i]["position"])
            for g, i in zip(good, (0, 2, 5), strict=True)
        }
        assert [d.position for d in dead] == [position(events[i]["dead_letter"]) for i in (1, 3)]
        assert orjson.loads(original(settings, dead[0])) == naive  # sealed: it names a contact
        assert dead[1].value == b"5"  # names nobody: kept as sent
        assert [d.headers["istore.source"] for d in dead] == [
            "http:publisher:req-1:2",
            "http:publisher:req-1:4",
        ]
        assert orjson.loads(dead[0].headers["istore.details"])["violations"][0]["rule"] == (
            "timezone_aware"
        )

        # The token stands for the highest accepted position per partition, never a dead letter.
        token = body["consistency_token"]
        assert r.headers["X-Consistency-Token"] == token
        highest: dict[tuple[str, int], int] = {}
        for p in log_events.values():
            highest[(p.topic, p.partition)] = max(highest.get((p.topic, p.partition), -1), p.offset)
        assert consistency.parse(token) == highest

    def test_mixed_json_lines_keep_line_numbers_and_original_bytes(
        self, settings: Settings
    ) -> None:
        good = [raw(at=i) for i in range(3)]
        broken = b'{"event_id": "broken'
        naive = orjson.dumps(doc(occurred_at="2026-03-01T09:00:00"))
        lines = [good[0], broken, good[1], b"", b"   ", naive, good[0], good[2]]
        with client(settings) as c:
            r = post(c, b"\r\n".join(lines) + b"\n", {**LINES, "X-Request-ID": "lines-7"})
        assert r.status_code == 200, r.text
        body = r.json()
        outcomes = [(e["index"], e["line"], e["status"]) for e in body["events"]]
        assert outcomes == [
            (0, 1, "accepted"),
            (1, 2, "rejected"),
            (2, 3, "accepted"),
            (3, 6, "rejected"),
            (4, 7, "duplicate"),
            (5, 8, "accepted"),
        ]
        assert (body["accepted"], body["duplicates"], body["rejected"]) == (3, 1, 2)
        assert body["events"][1]["violations"][0]["rule"] == "json"
        assert body["events"][3]["violations"][0]["field"] == "occurred_at"
        assert body["events"][4]["position"] == body["events"][0]["position"]

        log_events, dead = stored(settings)
        assert set(log_events) == {orjson.loads(g)["event_id"] for g in good}
        assert [original(settings, d) for d in dead] == [broken, naive]
        assert [d.headers["istore.source"] for d in dead] == [
            "http:publisher:lines-7:2",
            "http:publisher:lines-7:6",
        ]
        assert [d.position for d in dead] == [
            position(body["events"][i]["dead_letter"]) for i in (1, 3)
        ]

    def test_a_batch_sent_again_is_all_duplicates_at_the_first_positions(
        self, settings: Settings
    ) -> None:
        batch = orjson.dumps([doc(at=i) for i in range(4)])
        with client(settings) as c:
            first = post(c, batch, JSON).json()
            again = post(c, batch, JSON, role="admin").json()
            # The same events in the other format: duplicates too.
            lines = b"\n".join(orjson.dumps(e) for e in orjson.loads(batch))
            third = post(c, lines, LINES).json()
        assert first["accepted"] == 4
        for answer in (again, third):
            assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (0, 4, 0)
            assert [e["position"] for e in answer["events"]] == [
                e["position"] for e in first["events"]
            ]
            # Reading after a duplicate must wait for the stored copy: the same token.
            assert answer["consistency_token"] == first["consistency_token"]
        log_events, dead = stored(settings)
        assert len(log_events) == 4 and dead == []


class TestEmbeddedIngest(IngestBehaviour):
    @pytest.fixture
    def settings(self, embedded_settings: Settings) -> Settings:
        return embedded_settings


@pytest.mark.kafka
class TestKafkaIngest(IngestBehaviour):
    @pytest.fixture
    def settings(self, kafka_settings: Settings) -> Settings:
        return kafka_settings


# ------------------------------------------------------------------- embedded-only behaviour


def empty(settings: Settings) -> None:
    """Nothing was published: no event and no dead letter."""
    log_events, dead = stored(settings)
    assert log_events == {} and dead == []


def test_an_event_over_512_kib_is_rejected_alone(embedded_settings: Settings) -> None:
    big = doc(type="email.sent", payload={"subject": "x", "preview_text": "y" * 600_000})
    small = doc()
    with client(embedded_settings) as c:
        r = post(c, orjson.dumps([big, small]), JSON)
    assert r.status_code == 200, r.text
    events = r.json()["events"]
    assert [e["status"] for e in events] == ["rejected", "accepted"]
    assert events[0]["violations"][0]["rule"] == "max_size"
    log_events, dead = stored(embedded_settings)
    assert set(log_events) == {small["event_id"]} and len(dead) == 1


@pytest.mark.parametrize("headers", [JSON, LINES], ids=["json", "lines"])
def test_a_body_over_the_byte_limit_is_413_by_length_and_by_count(
    embedded_settings: Settings, headers: dict[str, str]
) -> None:
    settings = embedded_settings.model_copy(update={"api_max_body_bytes": 2048})
    events = [doc(at=i) for i in range(12)]  # about 2.8 kB
    body = orjson.dumps(events) if headers is JSON else b"\n".join(orjson.dumps(e) for e in events)
    assert len(body) > 2048
    with client(settings) as c:
        declared = post(c, body, headers)
        # A generator body goes out chunked, with no Content-Length to check up front.
        chunked = post(c, iter([body[i : i + 500] for i in range(0, len(body), 500)]), headers)
    for r in (declared, chunked):
        assert r.status_code == 413, r.text
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert (problem["limit"], problem["unit"]) == (2048, "bytes")
        assert "2048 bytes" in problem["detail"]
    assert declared.json()["count"] == len(body)
    assert chunked.json()["count"] is None
    empty(settings)


def test_a_chunked_body_within_the_limit_is_read_whole(embedded_settings: Settings) -> None:
    events = [doc(at=i) for i in range(5)]
    body = orjson.dumps(events)
    with client(embedded_settings) as c:
        r = post(c, iter([body[i : i + 100] for i in range(0, len(body), 100)]), JSON)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 5


@pytest.mark.parametrize("headers", [JSON, LINES], ids=["json", "lines"])
def test_more_events_than_the_batch_limit_is_413_naming_limit_and_count(
    embedded_settings: Settings, headers: dict[str, str]
) -> None:
    settings = embedded_settings.model_copy(update={"api_max_batch": 3})
    events = [doc(at=i) for i in range(4)]
    body = orjson.dumps(events) if headers is JSON else b"\n".join(orjson.dumps(e) for e in events)
    with client(settings) as c:
        r = post(c, body, headers)
        ok = post(c, orjson.dumps(events[:3]), JSON)
    assert r.status_code == 413, r.text
    problem = r.json()
    assert (problem["limit"], problem["unit"], problem["count"]) == (3, "events", 4)
    assert "4 events" in problem["detail"] and "limit is 3" in problem["detail"]
    assert ok.status_code == 200 and ok.json()["accepted"] == 3


def test_a_malformed_json_body_is_400_saying_where_it_broke(embedded_settings: Settings) -> None:
    body = b"[" + orjson.dumps(doc()) + b',\n  {"event_id": }]'
    with client(embedded_settings) as c:
        r = post(c, body, JSON)
    assert r.status_code == 400, r.text
    problem = r.json()
    # Where it broke: the "}" where the value of event_id should be.
    assert (problem["line"], problem["column"]) == (2, 16)
    assert problem["position"] == body.rindex(b"}")
    assert "line 2, column 16" in problem["detail"]
    empty(embedded_settings)


@pytest.mark.parametrize(
    ("body", "headers", "says"),
    [
        (orjson.dumps(doc()), JSON, "JSON array of events, not a JSON object"),
        (b"[]", JSON, "no events"),
        (b"", JSON, "no events"),
        (b"  \n", LINES, "no events"),
        (b'"event"', JSON, "not a JSON str"),
    ],
    ids=["object", "empty-array", "empty-json", "blank-lines", "string"],
)
def test_a_body_that_is_not_a_batch_is_422(
    embedded_settings: Settings, body: bytes, headers: dict[str, str], says: str
) -> None:
    with client(embedded_settings) as c:
        r = post(c, body, headers)
        checked = post(c, body, headers, path="/v1/events:validate")
    for answer in (r, checked):
        assert answer.status_code == 422, answer.text
        assert says in answer.json()["detail"]
    empty(embedded_settings)


@pytest.mark.parametrize(
    ("content_type", "named"),
    [
        ("text/plain", "'text/plain'"),
        ("application/xml", "'application/xml'"),
        ("application/json; charset=latin-1", "UTF-8 only"),
        (None, "Content-Type none"),
    ],
)
def test_other_media_types_are_415_naming_them(
    embedded_settings: Settings, content_type: str | None, named: str
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    with client(embedded_settings) as c:
        r = post(c, orjson.dumps([doc()]), headers)
        lines = post(c, raw(), {"Content-Type": "application/jsonl"})
        charset = post(
            c, orjson.dumps([doc()]), {"Content-Type": "application/json; charset=UTF-8"}
        )
    assert r.status_code == 415, r.text
    assert named in r.json()["detail"]
    assert r.json()["supported"][:2] == ["application/json", "application/x-ndjson"]
    assert lines.status_code == 200 and charset.status_code == 200


def test_validate_publishes_nothing(embedded_settings: Settings) -> None:
    good = doc()
    lines = [orjson.dumps(good), b"{nope", orjson.dumps(doc(type="email.nope"))]
    with client(embedded_settings) as c:
        as_json = post(c, orjson.dumps([good, 1]), JSON, path="/v1/events:validate")
        as_lines = post(c, b"\n".join(lines), LINES, path="/v1/events:validate")
        counts = ingested(c)
    assert as_json.status_code == 200, as_json.text
    assert as_json.json() == {
        "valid": 1,
        "rejected": 1,
        "events": [
            {"index": 0, "status": "valid", "event_id": good["event_id"], "type": good["type"]},
            {
                "index": 1,
                "status": "rejected",
                "event_id": None,
                "type": None,
                "violations": [
                    {
                        "field": "(document)",
                        "value": 1,
                        "rule": "object",
                        "message": "an event must be a JSON object",
                    }
                ],
            },
        ],
    }
    answer = as_lines.json()
    assert [(e["line"], e["status"]) for e in answer["events"]] == [
        (1, "valid"),
        (2, "rejected"),
        (3, "rejected"),
    ]
    assert answer["events"][2]["violations"][0]["rule"] == "known_type"
    assert "X-Consistency-Token" not in as_lines.headers
    assert counts == {"accepted": 0, "duplicate": 0, "conflict": 0, "rejected": 0}
    empty(embedded_settings)


@pytest.mark.parametrize("path", ["/v1/events", "/v1/events:validate"])
@pytest.mark.parametrize("role", ROLES)
def test_only_publishing_roles_may_post(embedded_settings: Settings, role: str, path: str) -> None:
    may = role in ("publisher", "admin")
    with client(embedded_settings) as c:
        r = post(c, orjson.dumps([doc()]), JSON, role=role, path=path)
    if may:
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 403, r.text
        assert f"role {role}" in r.json()["detail"] and "may not publish" in r.json()["detail"]
    if not may or path.endswith(":validate"):
        empty(embedded_settings)


@pytest.mark.parametrize("path", ["/v1/events", "/v1/events:validate"])
def test_a_missing_or_unknown_key_is_401(embedded_settings: Settings, path: str) -> None:
    body = orjson.dumps([doc()])
    with client(embedded_settings) as c:
        missing = c.post(path, content=body, headers=JSON)
        unknown = c.post(path, content=body, headers={**JSON, "X-API-Key": "istore_nobody"})
        # The key is checked before the size: a stranger learns nothing of the limits.
        big = c.post(path, content=b"[" + b" " * 20_000_000 + b"]", headers=JSON)
    for r in (missing, unknown, big):
        assert r.status_code == 401, r.text
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    empty(embedded_settings)


def test_metrics_count_each_outcome(embedded_settings: Settings) -> None:
    first = doc()
    batch = orjson.dumps([first, doc(), first, {"type": "email.opened"}])
    with client(embedded_settings) as c:
        before = ingested(c)
        post(c, batch, JSON)
        post(c, orjson.dumps([first, {**first, "source": "another"}]), JSON)
        after = ingested(c)
    assert before == {"accepted": 0, "duplicate": 0, "conflict": 0, "rejected": 0}
    assert after == {"accepted": 2, "duplicate": 2, "conflict": 1, "rejected": 1}


def test_made_up_methods_do_not_each_make_a_latency_series(embedded_settings: Settings) -> None:
    with client(embedded_settings) as c:
        for n in range(3):
            assert c.request(f"BREW{n}", "/v1/events").status_code == 405
            assert c.request(f"BREW{n}", "/nowhere").status_code == 404
        text = c.get("/metrics").text
    assert "BREW" not in text
    assert 'method="(other)"' in text


def test_an_all_rejected_batch_has_no_token(embedded_settings: Settings) -> None:
    with client(embedded_settings) as c:
        r = post(c, b"{bad\n[1]\n", LINES)
    assert r.status_code == 200, r.text
    assert r.json()["consistency_token"] is None and r.json()["rejected"] == 2
    assert "X-Consistency-Token" not in r.headers
    _, dead = stored(embedded_settings)
    assert [d.value for d in dead] == [b"{bad", b"[1]"]


def test_an_infinite_number_is_refused_not_stored_as_null(embedded_settings: Settings) -> None:
    # JSON has no infinity: once accepted, 1e400 was written as null and could not be read back.
    line = raw(type="web.page_viewed").replace(b'"seconds_on_page":42', b'"seconds_on_page":1e400')
    with client(embedded_settings) as c:
        as_line = post(c, line + b"\n" + raw(), LINES)
        in_array = post(c, b"[" + line + b"]", JSON)
    assert as_line.status_code == 200, as_line.text
    assert [e["status"] for e in as_line.json()["events"]] == ["rejected", "accepted"]
    assert "infinity" in as_line.json()["events"][0]["violations"][0]["message"]
    assert in_array.status_code == 400, in_array.text
    assert in_array.json()["position"] == line.index(b"1e400") + 1
    log_events, _ = stored(embedded_settings)
    assert len(log_events) == 1


@pytest.mark.parametrize("bad_type", [{}, [], 1, None])
def test_a_type_that_is_not_a_string_is_rejected_alone(
    embedded_settings: Settings, bad_type: Any
) -> None:
    bad = orjson.dumps(doc(type=bad_type, payload={}))
    body = b"\n".join([bad, raw()])
    with client(embedded_settings) as c:
        published = post(c, body, LINES)
        checked = post(c, body, LINES, path="/v1/events:validate")
    for r in (published, checked):
        assert r.status_code == 200, r.text
        first = r.json()["events"][0]
        assert first["status"] == "rejected"
        assert first["violations"][0]["field"] == "type"
        assert first["violations"][0]["rule"] == "known_type"
    assert [e["status"] for e in published.json()["events"]] == ["rejected", "accepted"]


def test_the_openapi_document_describes_both_formats_and_every_error(
    embedded_settings: Settings,
) -> None:
    with client(embedded_settings) as c:
        spec = c.get("/openapi.json").json()
    for path in ("/v1/events", "/v1/events:validate"):
        operation = spec["paths"][path]["post"]
        content = operation["requestBody"]["content"]
        assert content["application/json"]["schema"]["type"] == "array"
        # Any element is answered (a bad one as rejected): the envelope, or anything.
        envelope, anything = content["application/json"]["schema"]["items"]["anyOf"]
        assert "event_id" in envelope["required"] and anything == {}
        assert content["application/x-ndjson"]["schema"]["type"] == "string"
        responses = operation["responses"]
        assert {"200", "400", "401", "403", "413", "415", "422"} <= set(responses)
        for status in set(responses) - {"200"}:
            assert list(responses[status]["content"]) == ["application/problem+json"]
