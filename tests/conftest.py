"""Shared fixtures: settings for each backend, and one real Kafka broker per test session."""

from __future__ import annotations

import base64
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from interaction_store.settings import Settings
from tests.kafka_broker import kafka_bootstrap_servers

TEST_MASTER_KEY = base64.b64encode(bytes(range(32))).decode()
"""The master key of the tests' stores on Kafka and PostgreSQL, where a deployment must set one
(the embedded default makes its own; tests of that leave this out)."""


@pytest.fixture(autouse=True)
def _master_key(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """ISTORE_MASTER_KEY for every test and the processes it starts, as a deployment sets it;
    a test marked ``embedded_master_key`` runs without, to see the embedded default."""
    if request.node.get_closest_marker("embedded_master_key") is None:
        monkeypatch.setenv("ISTORE_MASTER_KEY", TEST_MASTER_KEY)
    else:
        monkeypatch.delenv("ISTORE_MASTER_KEY", raising=False)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Apache Kafka broker: KAFKA_BOOTSTRAP_SERVERS, else testcontainers, else jars."""
    with kafka_bootstrap_servers(tmp_path_factory.mktemp("kafka-broker")) as bootstrap:
        yield bootstrap


@pytest.fixture(autouse=True)
def _signal_handlers() -> Iterator[None]:
    """`istore run` and `istore serve`, run in-process by tests, install SIGINT/SIGTERM
    handlers; give pytest its own back after every test."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


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


@pytest.fixture(scope="session")
def postgres_admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server for the session: ISTORE_TEST_POSTGRES_DSN, else
    testcontainers, else Debian's binaries started in a temporary folder."""
    from tests.postgres_server import postgres_dsn

    with postgres_dsn(tmp_path_factory.mktemp("postgres")) as dsn:
        yield dsn


@pytest.fixture(params=["sqlite", "postgres"])
def view_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings whose views live in SQLite, or in a fresh PostgreSQL database of their own."""
    settings = Settings(backend="embedded", data_dir=tmp_path / "data")
    if request.param == "sqlite":
        yield settings
        return
    from tests.postgres_server import fresh_database

    admin = request.getfixturevalue("postgres_admin")
    with fresh_database(admin) as dsn:
        yield settings.model_copy(update={"postgres_dsn": SecretStr(dsn)})
