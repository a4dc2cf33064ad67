"""Personal fields sealed at ingest and opened where needed: nothing personal reaches a log in
clear, duplicates stay duplicates, the views and the export read them in clear, a damaged
ciphertext is shown as unreadable without stopping the worker, dead letters are sealed too."""

from __future__ import annotations

import base64
import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from interaction_store import demo
from interaction_store.cli import main
from interaction_store.codec import EncodedEvent, decode, to_document
from interaction_store.ingest import Ingest
from interaction_store.log import open_log
from interaction_store.log.base import LogRecord
from interaction_store.privacy import is_sealed, open_key_store
from interaction_store.privacy.fields import sealed_paths
from interaction_store.privacy.sealing import (
    UNREADABLE_TEXT,
    Opener,
    Sealer,
    letter_subject,
    open_letter,
)
from interaction_store.projection.runner import dead_letters
from interaction_store.read import ReadAPI
from interaction_store.settings import Settings
from interaction_store.views import open_store
from tests.api_support import project
from tests.factories import doc

SECRET_SUBJECT = "Subject line for Zephyrine Quillfeather"
SECRET_EMAIL = "zephyrine.quillfeather@example.org"
SECRET_SMS = "Zephyrine your code is 8841"


def the_persons_events(contact: str) -> list[dict[str, Any]]:
    return [
        doc(
            "contact.created",
            contact,
            at=0,
            payload={"first_name": "Zephyrine", "email": SECRET_EMAIL, "phone": "+33 612345678"},
        ),
        doc(
            "email.sent",
            contact,
            at=1,
            payload={"subject": SECRET_SUBJECT, "to_address": SECRET_EMAIL},
            correlation={"message_id": "m-1"},
        ),
        doc("sms.sent", contact, at=2, payload={"text": SECRET_SMS}),
    ]


def publish(settings: Settings, docs: list[dict[str, Any]]) -> list[Any]:
    with open_log(settings) as log:
        return Ingest(log, parallel=False).publish_documents(
            [orjson.dumps(d) for d in docs], "test_sealing"
        )


def log_bytes(settings: Settings) -> bytes:
    return b"".join(p.read_bytes() for p in settings.data_dir.glob("log.sqlite*"))


def stored(settings: Settings) -> list[LogRecord]:
    with open_log(settings) as log:
        return [
            r
            for t in log.catalog.event_topics
            for p in log.partitions(t.name)
            for r in log.read(t.name, p, 0)
        ]


# ---------------------------------------------------------------------------- the contract


def test_every_sealed_field_of_every_type_round_trips() -> None:
    """Each type with sealed fields (from a demo year, which has them all): sealed, its stored
    form decodes, no sealed field holds its clear value, and opening gives the event back."""
    end = datetime(2026, 12, 1, tzinfo=UTC)
    examples: dict[str, Any] = {}
    for seed in (1, 2, 3):
        for event in demo.generate(40, seed, end):
            if sealed_paths()[event.type] and event.type not in examples:
                examples[event.type] = event
    assert set(examples) == {t for t, p in sealed_paths().items() if p}
    with _memory_keys() as keys:
        sealer, opener = Sealer(keys), Opener(keys)
        records = [EncodedEvent.of(e) for e in examples.values()]
        sealed, erased = sealer.seal(records)
        assert erased == set()
        for record, before in zip(sealed, records, strict=True):
            assert record.digest == before.digest  # the clear content's
            event = decode(record.value)
            document = to_document(event)
            for path in sealed_paths()[record.type]:
                head, name = path.split(".")
                value = document[head].get(name)
                if value is not None:
                    assert is_sealed(value), (record.type, path, value)
            (opened,) = opener.open_events([event])
            assert opened == decode(before.value)


class _memory_keys:
    """A key store in a temporary folder, with a fixed master key."""

    def __enter__(self) -> Any:
        import tempfile

        self._dir = tempfile.TemporaryDirectory()
        key = base64.b64encode(bytes(32)).decode()
        from pydantic import SecretStr

        settings = Settings(data_dir=self._dir.name, master_key=SecretStr(key))
        self._keys = open_key_store(settings)
        return self._keys

    def __exit__(self, *exc: object) -> None:
        self._keys.close()
        self._dir.cleanup()


# ---------------------------------------------------------------------------- ingest


def test_the_log_holds_no_personal_field_in_clear_and_the_views_read_them(
    embedded_settings: Settings,
) -> None:
    contact = str(uuid.uuid4())
    outcomes = publish(embedded_settings, the_persons_events(contact))
    assert [o.status for o in outcomes] == ["accepted"] * 3
    raw = log_bytes(embedded_settings)
    for secret in (SECRET_SUBJECT, SECRET_EMAIL, SECRET_SMS, "Zephyrine"):
        assert secret.encode() not in raw, secret
    # The envelope stays clear: routing, ordering and de-duplication need no key.
    assert contact.encode() in raw
    project(embedded_settings)
    with ReadAPI(embedded_settings) as read:
        entries = read.timeline(contact_id=contact, limit=10).entries
        previews = {e.type: e.preview for e in entries}
        assert previews["email.sent"]["subject"] == SECRET_SUBJECT
        assert previews["sms.sent"]["text"] == SECRET_SMS
        assert read.consent(contact).email.value == SECRET_EMAIL


def test_a_resent_event_is_a_duplicate_and_a_changed_one_a_conflict(
    embedded_settings: Settings,
) -> None:
    docs = the_persons_events(str(uuid.uuid4()))
    publish(embedded_settings, docs)
    again = publish(embedded_settings, docs)
    assert [o.status for o in again] == ["duplicate"] * 3
    changed = dict(docs[1], payload={**docs[1]["payload"], "subject": "Another subject"})
    (outcome,) = publish(embedded_settings, [changed])
    assert outcome.status == "conflict"


def test_sealed_text_from_a_publisher_is_refused_naming_the_field(
    embedded_settings: Settings,
) -> None:
    forged = doc("sms.sent", payload={"text": "enc:v1:AAAA"})
    (outcome,) = publish(embedded_settings, [forged])
    assert outcome.status == "rejected"
    (violation,) = outcome.error.violations
    assert (violation.field, violation.rule) == ("payload.text", "sealed_by_store")


def test_the_command_line_seals_too(embedded_settings: Settings, tmp_path: Any) -> None:
    contact = str(uuid.uuid4())
    lines = b"\n".join(orjson.dumps(d) for d in the_persons_events(contact))
    source = tmp_path / "events.jsonl"
    source.write_bytes(lines)
    result = CliRunner().invoke(
        main, ["--data-dir", str(embedded_settings.data_dir), "publish", str(source)]
    )
    assert result.exit_code == 0, result.output
    assert SECRET_EMAIL.encode() not in log_bytes(embedded_settings)


@pytest.mark.parametrize("setting", [{"backend": "kafka"}, {"postgres_dsn": "postgresql://x/y"}])
def test_without_a_master_key_a_shared_store_publishes_nothing(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, setting: dict[str, str]
) -> None:
    monkeypatch.delenv("ISTORE_MASTER_KEY", raising=False)
    source = tmp_path / "events.jsonl"
    source.write_bytes(orjson.dumps(the_persons_events(str(uuid.uuid4()))[1]))
    args = ["--data-dir", str(tmp_path / "data")]
    for name, value in setting.items():
        args += [f"--{name.replace('_', '-')}", value]
    result = CliRunner().invoke(main, [*args, "publish", str(source)])
    assert result.exit_code != 0
    assert "ISTORE_MASTER_KEY" in result.output
    assert not (tmp_path / "data" / "log.sqlite").exists()


# ---------------------------------------------------------------------------- damage


def test_a_damaged_ciphertext_reads_as_unreadable_and_the_worker_goes_on(
    embedded_settings: Settings,
) -> None:
    contact = str(uuid.uuid4())
    docs = the_persons_events(contact)
    with open_log(embedded_settings) as log:
        sealer = Sealer.lazy(embedded_settings)
        records, _ = sealer.seal([EncodedEvent.of(decode(orjson.dumps(d))) for d in docs])
        # Damage the e-mail's subject: one character of its ciphertext changed.
        document = orjson.loads(records[1].value)
        text = document["payload"]["subject"]
        flipped = "A" if text[-5] != "A" else "B"
        document["payload"]["subject"] = text[:-5] + flipped + text[-4:]
        records[1] = dataclasses.replace(records[1], value=orjson.dumps(document))
        log.append(records)
        sealer.close()
    assert project(embedded_settings) > 0
    with ReadAPI(embedded_settings) as read:
        previews = {e.type: e.preview for e in read.timeline(contact_id=contact).entries}
        assert previews["email.sent"]["subject"] == UNREADABLE_TEXT
        assert previews["sms.sent"]["text"] == SECRET_SMS  # its neighbour opened
    with open_store(embedded_settings) as store:
        assert dead_letters(store) == []  # shown unreadable, not set aside


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=60))
def test_any_text_in_a_sealed_field_opens_or_reads_as_unreadable(text: str) -> None:
    event = decode(orjson.dumps(doc("sms.sent", payload={"text": "x"})))
    bent = event.model_copy(
        update={"payload": event.payload.model_copy(update={"text": "enc:v1:" + text})}
    )
    with _memory_keys() as keys:
        Sealer(keys).seal([EncodedEvent.of(event)])  # its subject has a key
        (opened,) = Opener(keys).open_events([bent])
    assert opened.payload.text == UNREADABLE_TEXT  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- dead letters


def test_a_rejected_document_is_sealed_under_its_subject_and_forgotten_with_it(
    embedded_settings: Settings,
) -> None:
    contact = str(uuid.uuid4())
    bad = doc("email.sent", contact, payload={"subject": "", "to_address": SECRET_EMAIL})
    (outcome,) = publish(embedded_settings, [bad])
    assert outcome.status == "rejected"
    assert SECRET_EMAIL.encode() not in log_bytes(embedded_settings)
    with open_log(embedded_settings) as log:
        topic = log.catalog.dead_letter.name
        (letter,) = log.read(topic, 0, 0)
    details = orjson.loads(letter.headers["istore.details"])
    assert details["subject"] == contact
    assert [(v["field"], v["rule"]) for v in details["violations"]] == [
        ("payload.subject", "string_too_short")
    ]
    assert "value" not in details["violations"][0]
    with open_key_store(embedded_settings) as keys:
        content = open_letter(keys, letter.value or b"", details)
        assert orjson.loads(content["original"]) == bad
        keys.destroy(contact)
        assert open_letter(keys, letter.value or b"", details) is None


@given(st.binary(max_size=200))
def test_the_subject_of_any_bytes_is_read_without_raising(raw: bytes) -> None:
    subject = letter_subject(raw)
    assert subject is None or 0 < len(subject) <= 200
