"""Honest answers: an event id reused with other content is a conflict (the stored copy kept,
the new one dead-lettered with both digests), not a duplicate; ``recorded_at`` is the store's
(set at ingest), whatever the sender wrote. Over the Python ingest, HTTP and the CLI, on the
embedded log and a real Kafka broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from interaction_store.ingest import Ingest
from interaction_store.log import open_log
from interaction_store.privacy import open_key_store
from interaction_store.privacy.sealing import letter_original
from interaction_store.settings import Settings
from tests.api_support import auth, client
from tests.factories import doc
from tests.test_api_ingest import stored
from tests.test_log_behaviour import read_all
from tests.test_publish import invoke


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def settings(request: pytest.FixtureRequest) -> Settings:
    name = "embedded_settings" if request.param == "embedded" else "kafka_settings"
    value: Settings = request.getfixturevalue(name)
    return value


def _publish(settings: Settings, *docs: dict[str, Any]) -> list[Any]:
    with open_log(settings) as log:
        return Ingest(log, parallel=False).publish_documents(
            [orjson.dumps(d) for d in docs], "tests"
        )


def test_the_same_id_with_other_content_is_a_conflict(settings: Settings) -> None:
    first = doc(payload={"url": "https://example.com/a"}, type="email.clicked")
    (accepted,) = _publish(settings, first)
    changed = {**first, "payload": {"url": "https://example.com/b"}}
    (outcome,) = _publish(settings, changed)
    assert outcome.status == "conflict"
    assert outcome.position == accepted.position  # where the stored copy is
    events, letters = stored(settings)
    assert list(events) == [first["event_id"]]
    with open_log(settings) as log:
        (record,) = [r for t in log.catalog.event_topics for r in read_all(log, t.name)]
    assert orjson.loads(record.value)["payload"]["url"] == "https://example.com/a"
    (letter,) = letters
    details = orjson.loads(letter.headers["istore.details"])
    assert details["rule"] == "conflict" and details["event_id"] == first["event_id"]
    assert details["stored_digest"] != details["sent_digest"]
    assert len(bytes.fromhex(details["stored_digest"])) == 16
    # Sealed under its subject's key (the document names a contact): the details stay clear.
    assert details["sealed"] is True
    with open_key_store(settings) as keys:
        refused = letter_original(keys, letter)
    assert orjson.loads(refused or b"")["payload"]["url"] == "https://example.com/b"


def test_a_conflict_inside_one_batch_keeps_the_first_copy(settings: Settings) -> None:
    first = doc()
    second = {**first, "source": "another-system"}
    outcomes = _publish(settings, first, second, first)
    assert [o.status for o in outcomes] == ["accepted", "conflict", "duplicate"]
    assert outcomes[1].position == outcomes[0].position == outcomes[2].position


def test_a_resend_with_another_recorded_at_is_a_duplicate(settings: Settings) -> None:
    first = doc(recorded_at="2026-03-01T10:00:00Z")
    _publish(settings, first)
    (again,) = _publish(settings, {**first, "recorded_at": "2026-03-02T10:00:00Z"})
    assert again.status == "duplicate"


def test_ingest_sets_recorded_at_whatever_the_sender_wrote(settings: Settings) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    _publish(settings, doc(recorded_at="2000-01-01T00:00:00Z"))
    with open_log(settings) as log:
        (record,) = [r for t in log.catalog.event_topics for r in read_all(log, t.name)]
    recorded = datetime.fromisoformat(orjson.loads(record.value)["recorded_at"])
    assert before <= recorded <= datetime.now(UTC) + timedelta(seconds=1)


def test_http_answers_conflict_with_both_positions(settings: Settings) -> None:
    first = doc()
    with client(settings) as c:
        headers = {**auth("publisher"), "Content-Type": "application/json"}
        c.post("/v1/events", content=orjson.dumps([first]), headers=headers)
        r = c.post(
            "/v1/events",
            content=orjson.dumps([{**first, "source": "elsewhere"}, first]),
            headers=headers,
        )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["accepted"], answer["duplicates"], answer["conflicts"]) == (0, 1, 1)
    conflict, duplicate = answer["events"]
    assert conflict["status"] == "conflict" and conflict["event_id"] == first["event_id"]
    assert conflict["position"] == duplicate["position"]
    assert conflict["dead_letter"]["offset"] >= 0


@pytest.mark.parametrize("strict", [False, True])
def test_publish_counts_conflicts(settings: Settings, tmp_path: Path, strict: bool) -> None:
    first = doc()
    path = tmp_path / "events.jsonl"
    path.write_bytes(orjson.dumps(first) + b"\n" + orjson.dumps({**first, "source": "other"}))
    result = invoke(settings, "publish", *(["--strict"] if strict else []), str(path))
    assert "accepted 1, duplicate 0, conflict 1, rejected 0 (of 2)" in result.output
    assert "conflict: the event_id is stored at" in result.output
    assert result.exit_code == (1 if strict else 0), result.output
