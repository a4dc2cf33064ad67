"""Order does not matter: the same set of events, delivered in any interleaving, in any
batches and with duplicates, gives identical views (compared by checksum), and the same consent
read for every contact, merged groups included, now and as of instants around the merges."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from interaction_store import demo
from interaction_store.codec import decode
from interaction_store.events import InteractionEvent
from interaction_store.log.base import Position
from interaction_store.projection import Projection, view_checksum
from interaction_store.projection.consent import Consent, consent_state
from interaction_store.projection.registry import KINDS, ViewInfo, build, default_definition
from interaction_store.settings import Settings
from interaction_store.views.sqlite import SQLiteViewStore
from tests.conftest import TEST_MASTER_KEY

DEMO: list[InteractionEvent] = list(
    demo.generate(25, seed=3, end=datetime(2026, 10, 1, tzinfo=UTC), days=150)
)


def merges(events: list[InteractionEvent]) -> list[InteractionEvent]:
    """Merges among the demo's contacts that changed consent (the demo merges one in 500): a
    chain (1 into 0, then 0 into 2) and a second duplicate of 2, each a while after the
    contacts' first events, so their consent events fall on both sides."""
    firsts: dict[str, datetime] = {}
    for e in sorted(events, key=lambda e: e.occurred_at):
        if e.type.startswith("consent.") and e.subject.contact_id is not None:
            firsts.setdefault(str(e.subject.contact_id), e.occurred_at)
    c = sorted(firsts)[:4]
    out = []
    for n, (into, duplicate) in enumerate(((c[0], c[1]), (c[2], c[0]), (c[2], c[3]))):
        at = max(firsts[into], firsts[duplicate]) + timedelta(days=10 + n)
        doc = {
            "event_id": str(uuid.UUID(int=n + 1)),
            "type": "contact.merged",
            "schema_version": 1,
            "occurred_at": at.isoformat(),
            "source": "tests",
            "subject": {"contact_id": into},
            "payload": {"merged_contact_id": duplicate},
        }
        out.append(decode(orjson.dumps(doc)))
    return out


EVENTS = DEMO + merges(DEMO)
CONTACTS = sorted({str(e.subject.contact_id) for e in EVENTS if e.subject.contact_id})
AT = {e.event_id: Position("log", 0, n) for n, e in enumerate(EVENTS)}
"""Each event's place in the log, whatever order it is delivered in (the subjects index keeps
it)."""
INSTANTS = sorted({e.occurred_at for e in EVENTS if e.type == "contact.merged"})


def projections(settings: Settings) -> list[Projection]:
    return [
        build(
            ViewInfo(kind, kind, "live", default_definition(kind, settings), None, "", None),
            settings,
        )
        for kind in KINDS
    ]


def fold(path: Path, batches: list[list[InteractionEvent]]) -> dict[str, str]:
    # One master key for every fold (the module's reference is made outside any test, where
    # the embedded default would make a key per folder): the lookup index hashes under it.
    settings = Settings(data_dir=path, master_key=SecretStr(TEST_MASTER_KEY))
    store = SQLiteViewStore(path / "views.sqlite")
    try:
        views = projections(settings)
        store.ensure([s for v in views for s in v.schema(store.dialect)])
        for batch in batches:
            with store.transaction() as c:
                for view in views:
                    view.apply_records(c, [(AT[e.event_id], e) for e in batch if view.wants(e)])
        sums = {v.instance: view_checksum(store, v) for v in views}
        return sums | {"consent reads": consent_reads(store, views)}
    finally:
        store.close()


def consent_reads(store: SQLiteViewStore, views: list[Projection]) -> str:
    """A digest of every contact's consent now and around each merge (which the rows do not
    hold: a merged group is combined when read)."""
    view = next(v for v in views if isinstance(v, Consent))
    digest = hashlib.sha256()
    for contact in CONTACTS:
        for as_of in (None, *(t + timedelta(seconds=s) for t in INSTANTS for s in (-1, 0))):
            try:
                state = consent_state(store, contact, as_of, view=view)
            except LookupError:
                continue  # no consent event names the contact (or its group) by then
            digest.update(repr(state).encode())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    ordered = sorted(EVENTS, key=lambda e: (e.occurred_at, str(e.event_id)))
    return fold(tmp_path_factory.mktemp("reference"), [ordered])


def test_the_demo_sample_touches_every_view() -> None:
    kinds = {e.channel for e in EVENTS}
    assert {"email", "consent", "contact", "lead"} <= kinds
    assert len(EVENTS) > 300


def test_the_merges_join_contacts_with_consent_of_their_own(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    store = SQLiteViewStore(tmp_path / "views.sqlite")
    try:
        view = Consent.from_settings(settings)
        store.ensure(view.schema(store.dialect))
        with store.transaction() as c:
            view.apply(c, [e for e in EVENTS if view.wants(e)])
        root = str(merges(DEMO)[-1].subject.contact_id)
        state = consent_state(store, root, view=view)
    finally:
        store.close()
    assert len(state.merged) == 3
    assert {s.contact_id for s in state.sources()} - {None}, "no value from a duplicate"


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
