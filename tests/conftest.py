"""Shared fixtures: settings for each backend, and one real Kafka broker per test session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from interaction_store.settings import Settings
from tests.kafka_broker import kafka_bootstrap_servers


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Apache Kafka broker: KAFKA_BOOTSTRAP_SERVERS, else testcontainers, else jars."""
    with kafka_bootstrap_servers(tmp_path_factory.mktemp("kafka-broker")) as bootstrap:
        yield bootstrap


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Settings:
    return Settings(backend="embedded", data_dir=tmp_path / "data")


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Kafka settings with topics of this test's own (a unique prefix), already created."""
    from interaction_store.log import open_log

    settings = Settings(
        backend="kafka",
        data_dir=tmp_path / "data",
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
    )
    with open_log(settings) as log:
        log.ensure_topics()
    return settings
