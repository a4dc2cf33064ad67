"""Tests for interaction_store.kafka_local: a real broker from jars, plus setup-error messages."""

from __future__ import annotations

import socket
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from interaction_store.kafka_local import KafkaSetupError, LocalKafka
from tests.kafka_broker import kafka_bootstrap_servers


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalKafka]:
    kafka = LocalKafka(tmp_path / "broker")
    try:
        yield kafka
    finally:
        kafka.stop()  # never leave a JVM behind, whatever the test did


def _admin(bootstrap: str) -> Any:
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)


def _topics(bootstrap: str) -> set[str]:
    admin = _admin(bootstrap)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def _produce(bootstrap: str, topic: str, value: bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(topic, key=b"k", value=value).get(timeout=30)
        producer.flush()
    finally:
        producer.close()


def _consume(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    """Read partition 0 from the start until ``expected`` records arrive (or 15 s pass)."""
    # Manual assignment: no consumer group, so no coordinator round trips in the test.
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        values: list[bytes] = []
        deadline = time.monotonic() + 15.0
        while len(values) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(record.value for record in records)
        return values
    finally:
        consumer.close()


@pytest.mark.kafka
def test_start_produce_consume_stop_restart_keeps_data(broker: LocalKafka) -> None:
    assert broker.status().running is False

    bootstrap = broker.start()
    status = broker.status()
    assert status.running is True
    assert status.bootstrap_servers == bootstrap
    assert status.pid is not None
    assert status.home == broker.home
    assert broker.start() == bootstrap  # already running: same broker, no second JVM
    assert broker.status().pid == status.pid

    topic = f"t-{uuid.uuid4().hex[:8]}"
    admin = _admin(bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    _produce(bootstrap, topic, b"hello")
    assert _consume(bootstrap, topic, 1) == [b"hello"]

    assert broker.stop() is True
    stopped = broker.status()
    assert stopped.running is False
    assert stopped.bootstrap_servers is None
    assert stopped.pid is None
    assert broker.stop() is False

    # Restart: same data dir and cluster id; free ports from last time are reused.
    again = broker.start()
    assert again == bootstrap
    assert topic in _topics(again)
    assert _consume(again, topic, 1) == [b"hello"]
    assert broker.stop() is True

    # Restart with the old broker port taken: new ports, data still there.
    old_port = int(bootstrap.rsplit(":", 1)[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", old_port))
        squatter.listen(1)
        moved = broker.start()
        assert moved != bootstrap
        assert topic in _topics(moved)
        assert _consume(moved, topic, 1) == [b"hello"]
        assert broker.stop() is True


@pytest.mark.kafka
def test_status_from_another_instance_and_stop_by_it(broker: LocalKafka) -> None:
    bootstrap = broker.start()
    # A second process (e.g. the CLI) only has the folder: state.json must be enough.
    other = LocalKafka(broker.home)
    status = other.status()
    assert status.running is True
    assert status.bootstrap_servers == bootstrap
    assert other.stop() is True
    assert broker.status().running is False


@pytest.mark.kafka
def test_fixture_helper_falls_back_to_local_jars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    # An engine address that cannot answer: the helper must fall back, not fail.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-docker.sock'}")
    home = tmp_path / "helper"
    with kafka_bootstrap_servers(home) as bootstrap:
        assert LocalKafka(home).status().bootstrap_servers == bootstrap
        assert isinstance(_topics(bootstrap), set)
    assert LocalKafka(home).status().running is False


@pytest.mark.kafka
def test_port_taken_between_pick_and_bind_is_retried(tmp_path: Path) -> None:
    class RacyKafka(LocalKafka):
        """The first port choice is stolen before the JVM binds it, as in a real race."""

        calls = 0

        def _choose_ports(self) -> tuple[int, int]:
            RacyKafka.calls += 1
            broker_port, controller_port = super()._choose_ports()
            return (
                (stolen, controller_port)
                if RacyKafka.calls == 1
                else (broker_port, controller_port)
            )

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        stolen = int(squatter.getsockname()[1])
        kafka = RacyKafka(tmp_path / "broker")
        try:
            bootstrap = kafka.start()
            assert bootstrap != f"127.0.0.1:{stolen}"
            assert RacyKafka.calls == 2
            assert "Address already in use" in kafka.log_file.read_text()
        finally:
            kafka.stop()


def test_missing_java_names_java(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(KafkaSetupError, match=r"java not found on PATH.*JDK 17"):
        LocalKafka(tmp_path / "broker").start(timeout=5)


def test_bad_java_home_names_java_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(KafkaSetupError, match="JAVA_HOME"):
        LocalKafka(tmp_path / "broker").start(timeout=5)


def _script(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def test_old_java_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jdk = tmp_path / "jdk11"
    _script(jdk / "bin", "java", "echo 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    monkeypatch.setenv("JAVA_HOME", str(jdk))
    with pytest.raises(KafkaSetupError, match=r"Java 11; Kafka 4 needs Java 17"):
        LocalKafka(tmp_path / "broker").start(timeout=5)


def test_missing_mvn_names_mvn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    kafka = LocalKafka(tmp_path / "broker", jar_cache=tmp_path / "libs")
    with pytest.raises(KafkaSetupError, match=r"mvn not found on PATH.*apt-get install maven"):
        kafka.ensure_jars()


def test_mvn_failure_shows_output_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_bin = tmp_path / "fake-bin"
    _script(
        fake_bin,
        "mvn",
        """\
        i=0
        while [ $i -lt 60 ]; do echo "noise line $i"; i=$((i+1)); done
        echo "[ERROR] Could not resolve dependencies for project" >&2
        exit 7
        """,
    )
    monkeypatch.setenv("PATH", str(fake_bin))
    kafka = LocalKafka(tmp_path / "broker", jar_cache=tmp_path / "libs")
    with pytest.raises(KafkaSetupError) as caught:
        kafka.ensure_jars()
    message = str(caught.value)
    assert "Maven failed (exit 7)" in message
    assert "Could not resolve dependencies" in message
    assert "noise line 59" in message
    assert "noise line 0\n" not in message  # only the tail, not the whole log
    assert not (tmp_path / "libs" / ".istore-complete").exists()


def test_jar_cache_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISTORE_KAFKA_JAR_CACHE", str(tmp_path / "cache"))
    assert LocalKafka(tmp_path / "broker").jar_cache == (tmp_path / "cache").resolve()
    explicit = LocalKafka(tmp_path / "broker", jar_cache=tmp_path / "mine")
    assert explicit.jar_cache == (tmp_path / "mine").resolve()
