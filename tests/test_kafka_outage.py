"""A broker outage ends in an answer, never a hang; publishing recovers by itself once the
broker is back; the projection worker follows the log through it; and a batch that failed
(its transaction aborted) is invisible and, sent again, stored once.

The outage tests stop and start a broker of their own (same ports and data), so the session's
broker keeps serving the other tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from interaction_store.codec import EncodedEvent, prepare
from interaction_store.kafka_local import LocalKafka
from interaction_store.log import open_log
from interaction_store.log.base import TYPE_HEADER
from interaction_store.log.kafka import KafkaLog
from interaction_store.projection import ProjectionRunner
from interaction_store.projection.registry import ViewRegistry, build
from interaction_store.settings import Settings
from interaction_store.views import open_store
from tests.api_support import auth, client
from tests.factories import doc
from tests.test_log_behaviour import read_all

pytestmark = pytest.mark.kafka

BOUND_S = 3.0
"""ISTORE_KAFKA_PUBLISH_TIMEOUT in these tests."""
MARGIN_S = 4.0
"""Allowed above the bound: starting clients, closing them, a loaded machine."""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker of this module's own, to stop and start again."""
    kafka = LocalKafka(tmp_path_factory.mktemp("outage-broker"))
    kafka.ensure_jars()
    bootstrap = kafka.start()
    # The first transaction on a broker creates its transaction state topic: not in a test.
    warm = Settings(
        backend="kafka",
        data_dir=tmp_path_factory.mktemp("outage-warm"),
        kafka_bootstrap_servers=bootstrap,
        topic_prefix="warm.",
    )
    with open_log(warm) as log:
        log.ensure_topics()
        log.append([_encoded(orjson.dumps(doc()))])
    try:
        yield kafka
    finally:
        kafka.stop()


@pytest.fixture
def settings(broker: LocalKafka, tmp_path: Path) -> Settings:
    bootstrap = broker.start()  # running (again) after any test that stopped it
    settings = Settings(
        backend="kafka",
        data_dir=tmp_path / "data",
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=f"o{uuid.uuid4().hex[:10]}.",
        kafka_publish_timeout=BOUND_S,
    )
    with open_log(settings) as log:
        log.ensure_topics()
    return settings


def lines(n: int) -> list[bytes]:
    return [orjson.dumps(doc(at=i)) for i in range(n)]


def stored_ids(settings: Settings) -> list[str]:
    with open_log(settings) as log:
        return [
            str(r.event().event_id) for t in log.catalog.event_topics for r in read_all(log, t.name)
        ]


def istore_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "ISTORE_BACKEND": "kafka",
        "ISTORE_DATA_DIR": str(settings.data_dir),
        "ISTORE_KAFKA_BOOTSTRAP_SERVERS": str(settings.kafka_bootstrap_servers),
        "ISTORE_TOPIC_PREFIX": settings.topic_prefix,
        "ISTORE_KAFKA_PUBLISH_TIMEOUT": str(BOUND_S),
    }


def test_publish_exits_within_the_bound_when_the_broker_stops_and_again_works_after(
    broker: LocalKafka, settings: Settings
) -> None:
    events = lines(30)
    publish = [sys.executable, "-m", "interaction_store.cli", "publish", "--batch-size", "10", "-"]
    proc = subprocess.Popen(
        publish,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=istore_env(settings),
    )
    assert proc.stdin is not None
    try:
        # The first batch is published once the second is read: its producer is connected
        # when the broker stops, and the second batch's flush is the one that used to hang.
        proc.stdin.write(b"\n".join(events[:20]) + b"\n")
        proc.stdin.flush()
        wait_for("the first batch is stored", lambda: len(stored_ids(settings)) == 10, 60)
        broker.stop()
        began = time.monotonic()
        proc.stdin.write(b"\n".join(events[20:]) + b"\n")
        proc.stdin.close()
        code = proc.wait(timeout=60)  # a hang fails here rather than holding up the suite
        took = time.monotonic() - began
    finally:
        proc.kill()
    assert proc.stdout is not None
    output = proc.stdout.read().decode()
    assert code == 75, output
    assert took < BOUND_S + MARGIN_S, f"took {took:.1f} s\n{output}"
    assert "the first 10 events of the input are stored" in output, output
    assert "Running the same command again is safe" in output, output
    assert "ISTORE_KAFKA_PUBLISH_TIMEOUT" in output, output

    broker.start()
    # Answering admin calls comes before the transaction coordinator has loaded its state:
    # the first runs may still fail within the bound, and running again is the remedy.
    deadline = time.monotonic() + 60
    while True:
        done = subprocess.run(
            publish, input=b"\n".join(events), env=istore_env(settings), capture_output=True
        )
        output = done.stdout.decode() + done.stderr.decode()
        if done.returncode != 75 or time.monotonic() > deadline:
            break
    assert done.returncode == 0, output
    assert "accepted 20, duplicate 10, rejected 0" in output, output
    assert sorted(stored_ids(settings)) == sorted(orjson.loads(e)["event_id"] for e in events)


def follow_in_thread(
    settings: Settings,
) -> tuple[ProjectionRunner, threading.Thread, list[BaseException]]:
    log = open_log(settings)
    store = open_store(settings)
    infos = ViewRegistry(store).ensure_defaults(settings)
    runner = ProjectionRunner(log, store, [build(i, settings) for i in infos])
    errors: list[BaseException] = []

    def run() -> None:
        try:
            runner.run(follow=True)
        except BaseException as exc:  # the test asserts there was none
            errors.append(exc)
        finally:
            log.close()
            store.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return runner, thread, errors


def wait_for(what: str, check: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds} s")
        time.sleep(0.2)


def test_ingest_answers_503_while_the_broker_is_down_and_recovers_by_itself(
    broker: LocalKafka, settings: Settings
) -> None:
    runner, worker, errors = follow_in_thread(settings)
    json = {"Content-Type": "application/json", **auth("publisher")}
    first, second = [doc(at=i) for i in range(5)], [doc(at=i) for i in range(5, 9)]
    try:
        with client(settings, role="ingest") as c:
            answer = c.post("/v1/events", content=orjson.dumps(first), headers=json)
            assert answer.status_code == 200, answer.text
            assert c.get("/readyz").status_code == 200
            wait_for("the worker applies the first batch", lambda: runner.stats.applied >= 5, 30)

            broker.stop()
            began = time.monotonic()
            ready = c.get("/readyz")
            assert ready.status_code == 503, ready.text
            answer = c.post("/v1/events", content=orjson.dumps(second), headers=json)
            took = time.monotonic() - began
            assert answer.status_code == 503, answer.text
            assert answer.headers["Retry-After"].isdigit()
            assert "ISTORE_KAFKA_PUBLISH_TIMEOUT" in answer.json()["detail"]
            assert took < 2 * BOUND_S + MARGIN_S, f"took {took:.1f} s"
            assert c.get("/readyz").status_code == 503

            broker.start()
            # No restart of anything: /readyz makes a new producer, and that is enough.
            wait_for("/readyz says ready", lambda: c.get("/readyz").status_code == 200, 60)
            answer = c.post("/v1/events", content=orjson.dumps(second), headers=json)
            assert answer.status_code == 200, answer.text
            assert answer.json()["accepted"] == 4, answer.text
        wait_for("the worker applies the batch sent after", lambda: runner.stats.applied >= 9, 60)
        assert worker.is_alive(), errors
    finally:
        runner.stop()
        worker.join(30)
    # The batch that failed was not stored: sent again, it is stored once.
    ids = stored_ids(settings)
    assert sorted(ids) == sorted(d["event_id"] for d in first + second)


def test_an_aborted_batch_is_invisible_and_sent_again_is_stored_once(
    kafka_settings: Settings,
) -> None:
    events = [orjson.dumps(doc(at=i)) for i in range(20)]
    with open_log(kafka_settings) as log:
        assert isinstance(log, KafkaLog)
        topic = log.catalog.by_name("interactions").name
        # A batch written but never committed: what a publisher failing after the broker
        # took its records leaves behind.
        producer = log.publisher.producer()
        producer.begin_transaction()
        for value in events:
            producer.send(topic, value=value, key=b"k", headers=[(TYPE_HEADER, b"email.opened")])
        producer.flush()
        assert producer.abort_within(10)

        assert read_all(log, topic) == []
        assert sum(log.end_offsets(topic).values()) > 0  # the records and the marker are there
        assert consumed(kafka_settings, topic, "read_committed") == 0
        assert consumed(kafka_settings, topic, "read_uncommitted") == 20

        appended = log.append([_encoded(v) for v in events])
        assert not any(a.duplicate for a in appended)
        again = log.append([_encoded(v) for v in events])
        assert all(a.duplicate for a in again)
        ids = [str(r.event().event_id) for r in read_all(log, topic)]
    assert sorted(ids) == sorted(orjson.loads(v)["event_id"] for v in events)

    # A worker reading the log catches up although offsets skip the transaction markers.
    with open_log(kafka_settings) as log, open_store(kafka_settings) as store:
        infos = ViewRegistry(store).ensure_defaults(kafka_settings)
        runner = ProjectionRunner(log, store, [build(i, kafka_settings) for i in infos])
        assert runner.run(follow=False).applied >= 20  # returned: caught up
        assert sum(runner.lag().values()) == 0


def _encoded(value: bytes) -> EncodedEvent:
    return prepare(value, datetime.now(UTC))


def consumed(settings: Settings, topic: str, isolation: str) -> int:
    consumer = KafkaConsumer(
        **settings.kafka_client_config(),
        isolation_level=isolation,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        n = 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            n += sum(len(r) for r in consumer.poll(timeout_ms=200).values())
        return n
    finally:
        consumer.close()
