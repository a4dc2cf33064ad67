"""`istore kafka start --nodes 3`: a local three-node KRaft cluster whose topics have three
replicas and min.insync.replicas=2, so a publish and a read go on with one node dead."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from interaction_store.catalog import StreamCatalog
from interaction_store.cli import main
from interaction_store.kafka_cluster import LocalKafkaCluster, replication_for
from interaction_store.log import open_log
from interaction_store.log.kafka import _new_topic
from interaction_store.settings import Settings
from tests.factories import event
from tests.test_log_behaviour import read_all

PUBLISH_BOUND_S = 30.0
"""A publish with one node of three dead must answer well within the producer's bound."""


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "kafka"
    try:
        yield home
    finally:
        LocalKafkaCluster(home, 3).stop(timeout=10)  # never leave JVMs behind


def _istore(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_replication_follows_the_cluster_size() -> None:
    assert replication_for(1) == (1, 1)
    assert replication_for(2) == (2, 1)
    assert replication_for(3) == (3, 2)
    assert replication_for(5) == (3, 2)
    interactions = StreamCatalog.load(Settings()).by_name("interactions")
    assert _new_topic(interactions, 1)["configs"] == interactions.kafka_config()
    assert _new_topic(interactions, 3)["configs"] == {
        **interactions.kafka_config(),
        "min.insync.replicas": "2",
    }


@pytest.mark.kafka
@pytest.mark.slow
def test_three_nodes_replicate_every_topic_and_survive_one_node_dying(
    home: Path, tmp_path: Path
) -> None:
    prefix = f"c{uuid.uuid4().hex[:8]}."
    env = {
        "ISTORE_DATA_DIR": str(tmp_path / "data"),
        "ISTORE_KAFKA_HOME": str(home),
        "ISTORE_TOPIC_PREFIX": prefix,
    }
    started = _istore(env, "kafka", "start", "--nodes", "3")
    assert started.exit_code == 0, started.output
    bootstrap = started.stdout.rsplit("ISTORE_KAFKA_BOOTSTRAP_SERVERS=", 1)[1].strip()
    assert len(bootstrap.split(",")) == 3, bootstrap
    status = _istore(env, "kafka", "status")
    assert status.exit_code == 0 and "3 of 3 up" in status.stdout, status.stdout

    settings = Settings(
        backend="kafka",
        data_dir=tmp_path / "data",
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
    )
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        with open_log(settings) as log:
            names = [t.name for t in log.catalog.topics.values()]
            topic = log.catalog.by_name("interactions").name
        described = {t["name"]: t for t in admin.describe_topics(names)}
        for name in names:
            replicas = {len(p["replica_nodes"]) for p in described[name]["partitions"]}
            assert replicas == {3}, f"{name}: {replicas}"
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        )
        for name in names:
            topic_configs = configs["topic"][name]
            assert topic_configs["min.insync.replicas"]["value"] == "2", topic_configs
        interactions = described[topic]
        leader = next(
            p["leader_id"] for p in interactions["partitions"] if p["partition_index"] == 0
        )
    finally:
        admin.close()

    # The leader of a partition we write to dies as a crash would: no controlled shutdown.
    LocalKafkaCluster(home, 3).kill(leader)
    status = _istore(env, "kafka", "status")
    assert "2 of 3 up" in status.stdout and f"node {leader}: down" in status.stdout

    events = [event(at=i) for i in range(200)]
    with open_log(settings) as log:
        began = time.monotonic()
        appended = log.publish(events)
        took = time.monotonic() - began
        assert took < PUBLISH_BOUND_S, f"publish with a node down took {took:.1f}s"
        assert not any(a.duplicate for a in appended)
        # Offsets skip the transactions' commit markers: read_all reads up to each end.
        read = {r.event().event_id for r in read_all(log, topic)}
    assert read == {e.event_id for e in events}

    stopped = _istore(env, "kafka", "stop")
    assert stopped.stdout.strip() == "stopped", stopped.output
    assert _istore(env, "kafka", "status").exit_code == 3
