"""Bulk writes (PostgreSQL: COPY into a staging table from a few dozen rows on, statement by
statement below) leave the same rows as the same events applied a few at a time, with
duplicates inside a batch, and the same rows as SQLite."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from interaction_store import demo
from interaction_store.events import InteractionEvent
from interaction_store.log import EventLog, LogRecord, open_log
from interaction_store.projection import Projection, ProjectionRunner, view_checksum
from interaction_store.projection.registry import KINDS, ViewInfo, build, default_definition
from interaction_store.settings import Settings
from interaction_store.views import ViewStore, open_store
from interaction_store.views.sqlite import SQLiteViewStore
from tests.test_log_behaviour import read_all

EVENTS: list[InteractionEvent] = list(
    demo.generate(30, seed=11, end=datetime(2026, 10, 1, tzinfo=UTC), days=200)
)


@pytest.fixture
def log(view_settings: Settings) -> Iterator[EventLog]:
    with open_log(view_settings) as log:
        log.publish(EVENTS)
        yield log


@pytest.fixture
def store(view_settings: Settings) -> Iterator[ViewStore]:
    with open_store(view_settings) as store:
        yield store


def views(settings: Settings, suffix: str) -> list[Projection]:
    return [
        build(
            ViewInfo(
                f"{kind}_{suffix}",
                kind,
                "shadow",
                default_definition(kind, settings),
                None,
                "",
                None,
            ),
            settings,
        )
        for kind in sorted(KINDS)
    ]


def records(log: EventLog) -> list[LogRecord]:
    return [r for t in log.catalog.event_topics for r in read_all(log, t.name)]


def build_views(
    log: EventLog, store: ViewStore, suffix: str, batches: Sequence[Sequence[LogRecord]]
) -> dict[str, str]:
    built = views(log.settings, suffix)
    runner = ProjectionRunner(log, store, built)
    runner.load_positions()
    for batch in batches:
        runner.process(batch)
    return {v.kind: view_checksum(store, v) for v in built}


def test_large_batches_with_duplicates_equal_small_ones(log: EventLog, store: ViewStore) -> None:
    every = records(log)
    assert len(every) > 1000
    small = build_views(log, store, "small", [every[i : i + 3] for i in range(0, len(every), 3)])
    # Whole partitions at once, each with a share of its records in it twice.
    by_partition: dict[tuple[str, int], list[LogRecord]] = {}
    for r in every:
        by_partition.setdefault((r.position.topic, r.position.partition), []).append(r)
    large = [part + part[::7] for part in by_partition.values()]
    assert build_views(log, store, "large", large) == small


def test_postgresql_views_equal_sqlite_ones(postgres_admin: str, tmp_path: Path) -> None:
    from pydantic import SecretStr

    from tests.postgres_server import fresh_database

    settings = Settings(backend="embedded", data_dir=tmp_path / "data")
    with fresh_database(postgres_admin) as dsn, open_log(settings) as log:
        log.publish(EVENTS)
        every = records(log)
        pg_settings = settings.model_copy(update={"postgres_dsn": SecretStr(dsn)})
        with open_store(pg_settings) as postgres:
            assert postgres.dialect == "postgres"
            ours = build_views(log, postgres, "pg", [every])
        with SQLiteViewStore(tmp_path / "compare.sqlite") as sqlite:
            assert build_views(log, sqlite, "pg", [every]) == ours
