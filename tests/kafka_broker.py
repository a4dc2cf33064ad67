"""Give tests a Kafka broker: KAFKA_BOOTSTRAP_SERVERS, else Docker (apache/kafka), else local jars.

Used by fixtures: ``with kafka_bootstrap_servers(tmp_path / "kafka") as bootstrap: ...``.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from interaction_store.kafka_local import LocalKafka, wait_for_broker
from tests.docker_engine import docker_available

KAFKA_IMAGE = "apache/kafka:4.3.1"
_KAFKA_PORT = 9092
_STARTER_SCRIPT = "/tmp/istore_kafka_start.sh"
# Written after the script so the container never runs a half-copied script.
_STARTER_READY = "/tmp/istore_kafka_start.ready"
_READY_TIMEOUT_S = 120.0


def _log(message: str) -> None:
    print(f"[kafka fixture] {message}", file=sys.stderr, flush=True)


def _put_file(container: Any, path: str, content: str, mode: int) -> None:
    data = content.encode("utf-8")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name=path.lstrip("/"))
        info.size = len(data)
        info.mode = mode
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    container.get_wrapped_container().put_archive("/", buffer.getvalue())


@contextmanager
def _docker_kafka() -> Iterator[str]:
    """A single-node KRaft broker from the official apache/kafka image.

    testcontainers 4.15's KafkaContainer cannot run it: its with_kraft() compares the tag with
    Confluent versions (4.3.1 < 7.0.0 is refused) and its start script calls Confluent-only
    paths. So this uses a generic container the way testcontainers-java's apache/kafka module
    does: the broker starts only once we know the mapped port to advertise.
    """
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    env = {
        # Any base64 UUID works; a fixed one keeps the container reproducible.
        "CLUSTER_ID": "ljEU7z15QfuxjHXN49IgUA",
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,BROKER://:9093,CONTROLLER://:9094",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
            "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT"
        ),
        "KAFKA_INTER_BROKER_LISTENER_NAME": "BROKER",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        # The image formats storage without --standalone, so it needs static voters.
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9094",
        "KAFKA_NUM_PARTITIONS": "1",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    }
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_exposed_ports(_KAFKA_PORT)
        .with_envs(**env)
        .with_command(
            [
                "sh",
                "-c",
                f"while [ ! -f {_STARTER_READY} ]; do sleep 0.1; done; exec sh {_STARTER_SCRIPT}",
            ]
        )
    )
    container.start()
    try:
        host, port = container.get_container_host_ip(), container.get_exposed_port(_KAFKA_PORT)
        bootstrap = f"{host}:{port}"
        script = (
            f"export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://{bootstrap},BROKER://$(hostname):9093\n"
            "exec /etc/kafka/docker/run\n"
        )
        _put_file(container, _STARTER_SCRIPT, script, 0o755)
        _put_file(container, _STARTER_READY, "", 0o644)
        strategy = LogMessageWaitStrategy("Transitioning from RECOVERY to RUNNING")
        strategy.with_startup_timeout(int(_READY_TIMEOUT_S))
        strategy.wait_until_ready(container)
        wait_for_broker(bootstrap, timeout=60.0)
        yield bootstrap
    finally:
        container.stop()


@contextmanager
def kafka_bootstrap_servers(tmp_home: Path) -> Iterator[str]:
    """Yield bootstrap servers of a broker that answers admin calls; clean up what we started."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        _log(f"using KAFKA_BOOTSTRAP_SERVERS={external}")
        wait_for_broker(external, timeout=30.0)
        yield external
        return
    if docker_available():
        _log(f"Docker answers: starting {KAFKA_IMAGE} with testcontainers")
        with _docker_kafka() as bootstrap:
            _log(f"Docker broker ready at {bootstrap}")
            yield bootstrap
        return
    _log(f"no KAFKA_BOOTSTRAP_SERVERS and no Docker: starting a local broker in {tmp_home}")
    broker = LocalKafka(tmp_home)
    broker.ensure_jars(progress=_log)
    started = time.monotonic()
    try:
        bootstrap = broker.start()
        _log(f"local broker ready at {bootstrap} in {time.monotonic() - started:.1f}s")
        yield bootstrap
    finally:
        broker.stop()
