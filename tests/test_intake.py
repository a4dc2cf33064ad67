"""The intake topic: publishers writing straight to Kafka put records there; the intake
processor forwards each valid event once to its canonical topic and dead-letters the rest with
the reason and where it was, on a real broker, also across a SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from kafka import KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from pydantic import ValidationError

from interaction_store.catalog import CatalogError, StreamCatalog, TopicSpec
from interaction_store.cli import main
from interaction_store.intake import IntakeProcessor
from interaction_store.log import open_log
from interaction_store.projection.registry import ViewError
from interaction_store.settings import Settings
from tests.factories import raw
from tests.test_log_behaviour import read_all
from tests.test_poison_records import NAMED_POISONS, POISONS, Header

ROOT = Path(__file__).resolve().parents[1]


def intake_of(settings: Settings) -> TopicSpec:
    intake = StreamCatalog.load(settings).intake
    assert intake is not None, "the catalog has an intake topic"
    return intake


def inject(settings: Settings, records: list[tuple[bytes | None, list[Header]]]) -> None:
    """Write records to the intake topic as a publisher would: no validation."""
    topic = intake_of(settings).name
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, max_request_size=4 << 20
    )
    try:
        for value, headers in records:
            # kafka-python sends no header without a value: an empty one.
            sent = [(k, b"" if v is None else v) for k, v in headers]
            producer.send(topic, value=value, key=b"k", headers=sent)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)


def canonical_ids(settings: Settings) -> Counter[str]:
    """How many times each event id is on the canonical topics."""
    with open_log(settings) as log:
        return Counter(
            str(r.event().event_id) for t in log.catalog.event_topics for r in read_all(log, t.name)
        )


def dead_letters(settings: Settings) -> list[dict[str, str]]:
    with open_log(settings) as log:
        return [dict(r.headers) for r in read_all(log, log.catalog.dead_letter.name)]


def forward_all(settings: Settings) -> None:
    with open_log(settings) as log:
        IntakeProcessor(log).run(once=True)


# ------------------------------------------------------------------ the topic and its settings


def test_the_intake_topic_keeps_seven_days_by_default_and_carries_no_events() -> None:
    catalog = StreamCatalog.load(Settings())
    assert catalog.intake is not None
    assert catalog.intake.retention_ms == 7 * 24 * 3600 * 1000
    assert catalog.intake not in catalog.event_topics  # the views never read it
    assert all(
        catalog.topic_for(t) is not catalog.intake for t in ("email.sent", "contact.created")
    )


def test_the_intake_retention_is_a_setting_and_must_be_finite(tmp_path: Path) -> None:
    assert intake_of(Settings(intake_retention_ms=3_600_000)).retention_ms == 3_600_000
    with pytest.raises(ValidationError, match="intake_retention_ms"):
        Settings(intake_retention_ms=-1)
    streams = tmp_path / "streams"
    streams.mkdir()
    text = (Settings().streams_dir / "catalog.toml").read_text()
    (streams / "catalog.toml").write_text(
        text.replace("retention_ms = 604800000", "retention_ms = -1")
    )
    with pytest.raises(CatalogError, match=r"topics\.intake\.retention_ms=-1.*finite"):
        StreamCatalog.load(Settings(streams_dir=streams))


def test_intake_run_on_the_embedded_store_says_what_to_use_instead(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["--backend", "embedded", "--data-dir", str(tmp_path / "d"), "intake", "run"]
    )
    assert result.exit_code == 1, result.output
    assert "backend='embedded'" in result.output and "istore publish" in result.output


@pytest.mark.kafka
def test_the_intake_topic_gets_the_configured_retention(kafka_settings: Settings) -> None:
    def retention(s: Settings) -> str:
        name = intake_of(s).name
        admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap_servers)
        try:
            found = admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name)], config_filter="all"
            )
        finally:
            admin.close()
        return str(found["topic"][name]["retention.ms"]["value"])

    assert retention(kafka_settings) == "604800000"
    # Changed later: `istore topics ensure` applies it to the existing topic.
    shorter = kafka_settings.model_copy(update={"intake_retention_ms": 3_600_000})
    with open_log(shorter) as log:
        assert log.ensure_topics() == []
    assert retention(shorter) == "3600000"


# ------------------------------------------------------------------ forwarding


@pytest.mark.kafka
def test_valid_records_are_forwarded_once_and_duplicates_answered(kafka_settings: Settings) -> None:
    contact = uuid.uuid4()
    docs = [raw(contact=contact, at=i) for i in range(20)]
    repeated = docs[3]
    inject(kafka_settings, [(d, [("istore.type", b"email.opened")]) for d in docs])
    inject(kafka_settings, [(repeated, [])])  # the same event id again, later
    with open_log(kafka_settings) as log:
        stats = IntakeProcessor(log, batch_size=7).run(once=True)
    assert (stats.read, stats.forwarded, stats.duplicates, stats.dead_lettered) == (21, 20, 1, 0)
    ids = canonical_ids(kafka_settings)
    assert ids == Counter({str(orjson.loads(d)["event_id"]): 1 for d in docs})
    # A second run finds nothing new: the intake positions were committed.
    with open_log(kafka_settings) as log:
        assert IntakeProcessor(log).run(once=True).read == 0


@pytest.mark.kafka
def test_a_changed_copy_of_a_forwarded_event_is_a_conflict(kafka_settings: Settings) -> None:
    first = raw(at=1)
    changed = orjson.loads(first)
    changed["source"] = "another"
    inject(kafka_settings, [(first, []), (orjson.dumps(changed), [])])
    with open_log(kafka_settings) as log:
        stats = IntakeProcessor(log).run(once=True)
    assert (stats.forwarded, stats.conflicts) == (1, 1)
    (letter,) = dead_letters(kafka_settings)
    assert "same event_id, different content" in letter["istore.reason"]
    assert letter["istore.source"].startswith("intake:")


@pytest.mark.kafka
def test_a_stopped_processor_resumes_where_it_was(kafka_settings: Settings) -> None:
    docs = [raw(at=i) for i in range(300)]
    inject(kafka_settings, [(d, []) for d in docs])
    with open_log(kafka_settings) as log:
        processor = IntakeProcessor(log, batch_size=25)
        # Stopped from another thread after its third batch: that batch is finished.
        thread = threading.Thread(
            target=processor.run,
            kwargs={"on_batch": lambda s: processor.stop() if s.batches >= 3 else None},
        )
        thread.start()
        thread.join(60)
        assert not thread.is_alive()
    assert processor.stats.forwarded == 75
    forward_all(kafka_settings)
    assert canonical_ids(kafka_settings) == Counter(
        {str(orjson.loads(d)["event_id"]): 1 for d in docs}
    )


@pytest.mark.kafka
def test_a_processor_killed_mid_way_loses_nothing_and_forwards_each_event_once(
    kafka_settings: Settings,
) -> None:
    docs = [raw(at=i) for i in range(3000)]
    inject(kafka_settings, [(d, []) for d in docs])
    env = {
        k: v
        for k, v in os.environ.items()
        if k == "ISTORE_MASTER_KEY" or not k.startswith(("ISTORE_", "KAFKA_"))
    }
    env["ISTORE_DATA_DIR"] = str(kafka_settings.data_dir)
    args = [
        sys.executable,
        "-m",
        "tests.crash_worker",  # `istore` with a 6 s consumer-group session
        "--backend",
        "kafka",
        "--bootstrap-servers",
        str(kafka_settings.kafka_bootstrap_servers),
        "--topic-prefix",
        kafka_settings.topic_prefix,
        "intake",
        "run",
        "--batch-size",
        "50",
    ]
    for round in range(2):
        before = sum(canonical_ids(kafka_settings).values())
        output = kafka_settings.data_dir.parent / f"intake-{round}.log"
        with output.open("wb") as out:  # a file, not a pipe nobody reads: it never fills
            process = subprocess.Popen(args, cwd=ROOT, env=env, stderr=out)
        deadline = time.monotonic() + 60
        while sum(canonical_ids(kafka_settings).values()) < before + 300:
            assert time.monotonic() < deadline, output.read_text()[-4000:]
            assert process.poll() is None, output.read_text()[-4000:]
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    done = subprocess.run(
        [*args, "--once"], cwd=ROOT, env=env, capture_output=True, timeout=120, check=True
    )
    assert b"intake: read" in done.stdout
    ids = canonical_ids(kafka_settings)
    assert set(ids) == {str(orjson.loads(d)["event_id"]) for d in docs}, "an event was lost"
    # The batch in hand at each kill is read again and answered as duplicates by the event-id
    # index; only a kill between a commit and the index's write (a few ms) may leave a second
    # copy of its events, which the views skip by id.
    assert sum(n - 1 for n in ids.values()) <= 2 * 50, ids.most_common(3)


# ------------------------------------------------------------------ bad records


@contextmanager
def fresh(bootstrap: str) -> Iterator[Settings]:
    with tempfile.TemporaryDirectory() as tmp:
        s = Settings(
            backend="kafka",
            data_dir=Path(tmp) / "data",
            kafka_bootstrap_servers=bootstrap,
            topic_prefix=f"i{uuid.uuid4().hex[:10]}.",
        )
        with open_log(s) as log:
            log.ensure_topics()
        yield s


def check_poisons(s: Settings, poisons: list[tuple[bytes | None, list[Header]]]) -> None:
    before, after = raw(at=1), raw(at=2)
    inject(s, [(before, []), *poisons, (after, [])])
    with open_log(s) as log:
        stats = IntakeProcessor(log).run(once=True)
    # Every poison dead-lettered, naming where it was; the neighbours forwarded.
    assert (stats.forwarded, stats.dead_lettered) == (2, len(poisons))
    letters = dead_letters(s)
    assert len(letters) == len(poisons)
    offsets = set()
    for letter in letters:
        assert letter["istore.reason"], letter
        source = letter["istore.source"]
        assert source.startswith("intake:") and "@" in source, source
        offsets.add(source)
    assert len(offsets) == len(poisons)
    assert set(canonical_ids(s)) == {str(orjson.loads(d)["event_id"]) for d in (before, after)}


@pytest.mark.kafka
def test_named_poisons_are_dead_lettered_and_never_stop_the_processor(
    kafka_bootstrap: str,
) -> None:
    with fresh(kafka_bootstrap) as s:
        check_poisons(s, list(NAMED_POISONS.values()))
        letters = {h["istore.reason"] for h in dead_letters(s)}
        assert any("tombstone" in r for r in letters), letters


@pytest.mark.kafka
def test_any_bytes_and_headers_on_intake_are_dead_lettered(kafka_bootstrap: str) -> None:
    @settings(
        max_examples=6,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(POISONS)
    def check(poisons: list[tuple[bytes | None, list[Header]]]) -> None:
        with fresh(kafka_bootstrap) as s:
            check_poisons(s, poisons)

    check()


# ------------------------------------------------------------------ in the projection worker


@pytest.mark.kafka
def test_the_worker_forwards_intake_records_and_projects_them(kafka_settings: Settings) -> None:
    from interaction_store.cli.views import ProjectionWorker
    from interaction_store.read import ReadAPI

    contact = uuid.uuid4()
    docs = [raw(contact=contact, at=i) for i in range(5)]
    inject(kafka_settings, [(d, []) for d in docs] + [(b"not json", [])])
    worker = ProjectionWorker(kafka_settings)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            with ReadAPI(kafka_settings) as api, contextlib.suppress(ViewError, LookupError):
                # (no live view, or no tables, until the worker has set them up)
                if len(api.timeline(contact_id=contact).entries) == len(docs):
                    break
            assert time.monotonic() < deadline, "the worker did not forward and project them"
            assert thread.is_alive()
            time.sleep(0.3)
    finally:
        worker.stop()
        thread.join(60)
    assert not thread.is_alive()
    (letter,) = dead_letters(kafka_settings)
    assert letter["istore.source"].startswith("intake:"), letter


@pytest.mark.kafka
def test_istore_run_once_forwards_the_intake_first(kafka_settings: Settings) -> None:
    from interaction_store.read import ReadAPI

    contact = uuid.uuid4()
    inject(kafka_settings, [(raw(contact=contact, at=i), []) for i in range(3)])
    result = CliRunner().invoke(
        main,
        [
            "--backend",
            "kafka",
            "--bootstrap-servers",
            str(kafka_settings.kafka_bootstrap_servers),
            "--topic-prefix",
            kafka_settings.topic_prefix,
            "--data-dir",
            str(kafka_settings.data_dir),
            "run",
            "--once",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "intake: read 3, forwarded 3" in result.output
    with ReadAPI(kafka_settings) as api:
        assert len(api.timeline(contact_id=contact).entries) == 3
