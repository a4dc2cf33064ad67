"""Order does not matter: the same set of events, delivered in any interleaving, in any
batches and with duplicates, gives identical views (compared by checksum)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interaction_store import demo
from interaction_store.events import InteractionEvent
from interaction_store.projection import Projection, view_checksum
from interaction_store.projection.registry import KINDS, ViewInfo, build, default_definition
from interaction_store.settings import Settings
from interaction_store.views.sqlite import SQLiteViewStore

EVENTS: list[InteractionEvent] = list(
    demo.generate(25, seed=3, end=datetime(2026, 10, 1, tzinfo=UTC), days=150)
)


def projections(settings: Settings) -> list[Projection]:
    return [
        build(
            ViewInfo(kind, kind, "live", default_definition(kind, settings), None, "", None),
            settings,
        )
        for kind in KINDS
    ]


def fold(path: Path, batches: list[list[InteractionEvent]]) -> dict[str, str]:
    settings = Settings(data_dir=path)
    store = SQLiteViewStore(path / "views.sqlite")
    try:
        views = projections(settings)
        store.ensure([s for v in views for s in v.schema(store.dialect)])
        for batch in batches:
            with store.transaction() as c:
                for view in views:
                    view.apply(c, [e for e in batch if view.wants(e)])
        return {v.instance: view_checksum(store, v) for v in views}
    finally:
        store.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    ordered = sorted(EVENTS, key=lambda e: (e.occurred_at, str(e.event_id)))
    return fold(tmp_path_factory.mktemp("reference"), [ordered])


def test_the_demo_sample_touches_every_view() -> None:
    kinds = {e.channel for e in EVENTS}
    assert {"email", "consent", "contact", "lead"} <= kinds
    assert len(EVENTS) > 300


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_interleaving_with_duplicates_gives_the_same_views(
    data: st.DataObject, reference: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    order = data.draw(st.permutations(range(len(EVENTS))), label="order")
    repeats = data.draw(
        st.lists(st.integers(0, len(EVENTS) - 1), max_size=40), label="duplicated events"
    )
    delivered = [EVENTS[i] for i in order] + [EVENTS[i] for i in repeats]
    size = data.draw(st.integers(1, 400), label="batch size")
    batches = [delivered[i : i + size] for i in range(0, len(delivered), size)]
    assert fold(tmp_path_factory.mktemp("shuffled"), batches) == reference
