"""Merge and unmerge everywhere: ``contact.merged`` and ``contact.unmerged`` reshape the
timeline, consent, lead scores and profiles (an unmerge splits the group again), a merged-away
id reads as the contact it went into (a pointer in the body), an identity link brings a
visitor's history onto the contact's timeline and its unlink takes it out; a merge into itself
is refused at ingest and a cycle of merges is ignored by the views, which say so. On SQLite
and PostgreSQL, and on Kafka with the two contacts on different partitions."""

from __future__ import annotations

import ast
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interaction_store.catalog import StreamCatalog, partition_of
from interaction_store.codec import decode
from interaction_store.events import ContactsMerged, ContactsUnmerged, InteractionEvent
from interaction_store.ingest import Ingest
from interaction_store.log import open_log
from interaction_store.projection.base import iso
from interaction_store.projection.consent import Consent, consent_state
from interaction_store.projection.merges import IGNORED, MERGED, UNMERGED, fold_merges
from interaction_store.projection.registry import KINDS, ViewInfo, build, default_definition
from interaction_store.projection.timeline import Timeline
from interaction_store.read import ReadAPI
from interaction_store.settings import Settings
from interaction_store.views import open_store
from interaction_store.views.sqlite import SQLiteViewStore
from tests.api_support import auth, client
from tests.api_support import project as project_all
from tests.factories import BASE, doc

SINCE = BASE - timedelta(days=1)
VISITOR = "visitor-unmerge-1"


def publish(settings: Settings, docs: Sequence[dict[str, Any]]) -> list[str]:
    with open_log(settings) as log:
        outcomes = Ingest(log, parallel=False).publish_documents(
            [orjson.dumps(d) for d in docs], "test_unmerge"
        )
    return [o.status for o in outcomes]


def merge(
    into: uuid.UUID, duplicate: uuid.UUID, minutes: int, undo: bool = False
) -> dict[str, Any]:
    kind = "contact.unmerged" if undo else "contact.merged"
    return doc(type=kind, contact=into, at=minutes, payload={"merged_contact_id": str(duplicate)})


def link(contact: uuid.UUID, minutes: int, undo: bool = False) -> dict[str, Any]:
    kind = "identity.unlinked" if undo else "identity.linked"
    payload = {"anonymous_id": VISITOR, "contact_id": str(contact)}
    return doc(type=kind, contact=contact, at=minutes, payload=payload)


def history(survivor: uuid.UUID, duplicate: uuid.UUID, lead: uuid.UUID) -> list[dict[str, Any]]:
    """Two people, a lead of the survivor; the duplicate submits a form (40 points under
    marketing-engagement) and opts out of bulk email; a visitor views a page."""
    return [
        doc(type="contact.created", contact=survivor, at=0),
        doc(type="contact.created", contact=duplicate, at=0),
        doc(
            type="lead.created",
            contact=None,
            at=1,
            subject={"lead_id": str(lead)},
            payload={"parent_contact_id": str(survivor), "topic": "demo"},
        ),
        doc(
            type="form.submitted",
            contact=duplicate,
            at=5,
            payload={"form_id": "form-contact-sales"},
        ),
        doc(
            type="consent.preferences_changed",
            contact=duplicate,
            at=6,
            payload={"allow_bulk_email": False},
        ),
        doc(
            type="web.page_viewed",
            at=7,
            subject={"anonymous_id": VISITOR},
            payload={"url": "https://example.com/pricing", "seconds_on_page": 5},
        ),
        merge(survivor, duplicate, 10),
        link(survivor, 11),
    ]


def timeline_ids(api: ReadAPI, contact: uuid.UUID) -> tuple[set[str], str | None]:
    page = api.timeline(contact_id=contact, since=SINCE, limit=100)
    return {e.type for e in page.entries}, page.merged_into


def subjects(api: ReadAPI, lead: uuid.UUID) -> tuple[str, ...]:
    return api.explain(lead, "marketing-engagement").subjects


def score(api: ReadAPI, lead: uuid.UUID) -> float | None:
    return next(s.score for s in api.lead_scores(lead) if s.model == "marketing-engagement")


def merge_rows(settings: Settings) -> dict[str, tuple[str, str, str]]:
    with open_store(settings) as store, store.reading() as c:
        c.execute("SELECT contact_id, into_contact_id, status, note FROM profiles__merges")
        return {r[0]: (r[1], r[2], r[3]) for r in c.fetchall()}


def test_unmerge_splits_every_view_and_unlink_takes_the_visitor_out(
    view_settings: Settings,
) -> None:
    s, d, lead = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert set(publish(view_settings, history(s, d, lead))) == {"accepted"}
    project_all(view_settings)

    with ReadAPI(view_settings) as api:
        types, pointer = timeline_ids(api, s)
        assert {"form.submitted", "web.page_viewed"} <= types, "merged and linked history"
        assert pointer is None
        dup_types, dup_pointer = timeline_ids(api, d)
        assert dup_pointer == str(s) and dup_types == types, "a merged-away id reads as s"
        assert api.consent(s).preferences["allow_bulk_email"].value is False
        assert str(d) in subjects(api, lead)
        assert score(api, lead) == 40
    assert merge_rows(view_settings)[str(d)][:2] == (str(s), MERGED)
    with client(view_settings) as http:
        body = http.get(f"/v1/contacts/{d}/consent", headers=auth("admin")).json()
        assert body["merged_into"] == str(s)
        body = http.get(
            f"/v1/contacts/{d}/timeline",
            params={"from": SINCE.isoformat()},
            headers=auth("admin"),
        ).json()
        assert body["merged_into"] == str(s) and body["total"] >= 2

    # The merge and the link undone (arriving after, as they usually do).
    assert publish(view_settings, [merge(s, d, 20, undo=True), link(s, 21, undo=True)]) == [
        "accepted",
        "accepted",
    ]
    project_all(view_settings)
    with ReadAPI(view_settings) as api:
        types, pointer = timeline_ids(api, s)
        assert "form.submitted" not in types and "web.page_viewed" not in types
        assert pointer is None
        dup_types, dup_pointer = timeline_ids(api, d)
        assert dup_pointer is None and "form.submitted" in dup_types
        assert api.consent(s).preferences["allow_bulk_email"].value is not False
        assert api.consent(d).preferences["allow_bulk_email"].value is False
        assert str(d) not in subjects(api, lead)
        assert score(api, lead) == 0
    assert merge_rows(view_settings)[str(d)][:2] == (str(s), UNMERGED)
    with client(view_settings) as http:
        body = http.get(f"/v1/contacts/{d}/consent", headers=auth("admin")).json()
        assert body["merged_into"] is None and body["merged"] == []


def test_a_late_unmerge_earlier_in_event_time_reshapes_as_if_in_order(
    view_settings: Settings,
) -> None:
    """An unmerge that happened before a second merge (but arrives last) leaves the merge."""
    s, d, lead = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    docs = [*history(s, d, lead), merge(s, d, 30)]
    publish(view_settings, docs)
    project_all(view_settings)
    publish(view_settings, [merge(s, d, 20, undo=True)])
    project_all(view_settings)
    with ReadAPI(view_settings) as api:
        assert timeline_ids(api, d)[1] == str(s)
        assert score(api, lead) == 40
    assert merge_rows(view_settings)[str(d)][:2] == (str(s), MERGED)


def test_a_cycle_of_merges_is_ignored_by_its_latest_merge_and_said(
    view_settings: Settings,
) -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    docs = [
        doc(type="email.opened", contact=a, at=1),
        doc(type="email.opened", contact=b, at=2),
        doc(type="email.opened", contact=c, at=3),
        merge(b, a, 10),  # a into b
        merge(c, b, 11),  # b into c
        merge(a, c, 12),  # c into a: the cycle's latest, ignored
    ]
    publish(view_settings, list(reversed(docs)))
    project_all(view_settings)
    rows = merge_rows(view_settings)
    assert rows[str(a)][1] == MERGED and rows[str(b)][1] == MERGED
    into, status, note = rows[str(c)]
    assert (into, status) == (str(a), IGNORED)
    assert "cycle" in note and str(c) in note
    with ReadAPI(view_settings) as api:
        page = api.timeline(contact_id=a, since=SINCE)
        assert page.merged_into == str(c) and page.total == 3
        assert api.timeline(contact_id=c, since=SINCE).merged_into is None
    # Undoing a link of the cycle lets the ignored merge stand.
    publish(view_settings, [merge(c, b, 20, undo=True)])
    project_all(view_settings)
    rows = merge_rows(view_settings)
    assert rows[str(c)][1] == MERGED and rows[str(b)][1] == UNMERGED
    with ReadAPI(view_settings) as api:
        # c into a into b: both read as b, the group's survivor
        assert api.timeline(contact_id=c, since=SINCE).merged_into == str(b)
        assert api.timeline(contact_id=a, since=SINCE).merged_into == str(b)
        assert api.timeline(contact_id=b, since=SINCE).total == 3


def test_a_merge_into_itself_is_refused_at_ingest_with_the_reason(
    view_settings: Settings,
) -> None:
    c = uuid.uuid4()
    with client(view_settings) as http:
        for kind in ("contact.merged", "contact.unmerged"):
            r = http.post(
                "/v1/events",
                json=[doc(type=kind, contact=c, payload={"merged_contact_id": str(c)})],
                headers=auth("publisher"),
            )
            text = r.text
            assert "merge_into_itself" in text or "itself" in text, text
            assert str(c) in text
    assert publish(
        view_settings,
        [doc(type="contact.merged", contact=c, payload={"merged_contact_id": str(c)})],
    ) == ["rejected"]


def test_fold_merges_unmerge_only_undoes_the_current_link() -> None:
    ev = [
        ("t1", "e1", "contact.merged", "s1", "d"),
        ("t2", "e2", "contact.merged", "s2", "d"),
        ("t3", "e3", "contact.unmerged", "s1", "d"),  # s1's merge was already replaced
    ]
    assert fold_merges(ev)["d"].into == "s2" and fold_merges(ev)["d"].status == MERGED
    ev.append(("t4", "e4", "contact.unmerged", "s2", "d"))
    assert fold_merges(ev)["d"].status == UNMERGED
    two = [("t1", "e1", "contact.merged", "b", "a"), ("t2", "e2", "contact.merged", "a", "b")]
    states = fold_merges(two)
    assert states["a"].status == MERGED and states["b"].status == IGNORED


def different_partitions(settings: Settings) -> tuple[uuid.UUID, uuid.UUID]:
    topic = StreamCatalog.load(settings).topic_for("contact.merged")
    first = uuid.uuid4()
    home = partition_of(str(first).encode(), topic.partitions)
    while True:
        other = uuid.uuid4()
        if partition_of(str(other).encode(), topic.partitions) != home:
            return first, other


def test_merge_and_unmerge_across_kafka_partitions(kafka_settings: Settings) -> None:
    """The duplicate's events sit on another partition than the survivor's (and than the
    merge, keyed by the survivor): the views follow the merge and its undoing all the same."""
    s, d = different_partitions(kafka_settings)
    lead = uuid.uuid4()
    assert set(publish(kafka_settings, history(s, d, lead))) == {"accepted"}
    project_all(kafka_settings)
    with ReadAPI(kafka_settings) as api:
        assert "form.submitted" in timeline_ids(api, s)[0]
        assert timeline_ids(api, d)[1] == str(s)
        assert api.consent(s).preferences["allow_bulk_email"].value is False
        assert score(api, lead) == 40
    publish(kafka_settings, [merge(s, d, 20, undo=True)])
    project_all(kafka_settings)
    with ReadAPI(kafka_settings) as api:
        assert "form.submitted" not in timeline_ids(api, s)[0]
        assert timeline_ids(api, d)[1] is None
        assert api.consent(s).preferences["allow_bulk_email"].value is not False
        assert score(api, lead) == 0


# ----------------------------------------------------------------- any order of merges


PEOPLE = [uuid.UUID(int=0xC0FFEE00 + n) for n in range(4)]
LEADS = [uuid.UUID(int=0x1EAD0000 + n) for n in range(2)]


def _event(n: int, **kwargs: Any) -> InteractionEvent:
    return decode(orjson.dumps(doc(event_id=str(uuid.UUID(int=n)), **kwargs)))


def interactions() -> list[InteractionEvent]:
    """Each person's history: created, a form, an open, a bulk-email preference; two leads."""
    out: list[InteractionEvent] = []
    for i, p in enumerate(PEOPLE):
        base = 10 * i
        out += [
            _event(base + 1, type="contact.created", contact=p, at=i),
            _event(
                base + 2,
                type="form.submitted",
                contact=p,
                at=20 + 7 * i,
                payload={"form_id": "form-contact-sales" if i % 2 else "form-whitepaper-ia"},
            ),
            _event(base + 3, type="email.opened", contact=p, at=40 + i),
            _event(
                base + 4,
                type="consent.preferences_changed",
                contact=p,
                at=30 - i,
                payload={"allow_bulk_email": i % 2 == 0},
            ),
        ]
    for n, (lead, parent) in enumerate(zip(LEADS, (PEOPLE[0], PEOPLE[2]), strict=True)):
        out.append(
            _event(
                100 + n,
                type="lead.created",
                contact=None,
                at=2,
                subject={"lead_id": str(lead)},
                payload={"parent_contact_id": str(parent)},
            )
        )
    return out


INTERACTIONS = interactions()

# Few people and a few pairs, so that unmerges undo merges and merges close cycles often.
merge_ops = st.lists(
    st.tuples(
        st.booleans(),  # an unmerge?
        st.sampled_from([(a, b) for a in range(3) for b in range(3) if a != b]),
        st.integers(0, 60),  # its minute: before, between and after the interactions
    ).map(lambda op: (op[0], *op[1], op[2])),
    min_size=1,
    max_size=8,
)


def net_merges(ops: list[InteractionEvent]) -> list[InteractionEvent]:
    """The merges in force after ``ops``, worked out here on its own: per duplicate, in event
    time, a merge links it and an unmerge from its current survivor unlinks it; then in each
    cycle the latest merge is dropped. The equivalent history holds only these."""
    current: dict[str, InteractionEvent] = {}
    for e in sorted(ops, key=lambda e: (iso(e.occurred_at), str(e.event_id))):
        p = e.payload
        assert isinstance(p, ContactsMerged | ContactsUnmerged)
        dup, into = str(p.merged_contact_id), str(e.subject.contact_id)
        if e.type == "contact.merged":
            current[dup] = e
        elif dup in current and str(current[dup].subject.contact_id) == into:
            del current[dup]
    dropped: set[str] = set()
    for start in sorted(current):
        seen: list[str] = []
        node = start
        while node in current and node not in seen:
            seen.append(node)
            node = str(current[node].subject.contact_id)
        if node in seen:
            ring = seen[seen.index(node) :]
            key = {c: (iso(current[c].occurred_at), str(current[c].event_id)) for c in ring}
            dropped.add(max(ring, key=key.__getitem__))
    return [e for dup, e in current.items() if dup not in dropped]


def views_digest(path: Path, batches: list[list[InteractionEvent]]) -> dict[str, Any]:
    """What the views say, leaving out where they keep the merge events themselves (the
    profiles' events and merges tables, and a contact row's updated_at): every other table's
    rows, which contact is merged into which, and every person's timeline and consent."""
    settings = Settings(data_dir=path)
    store = SQLiteViewStore(path / "views.sqlite")
    try:
        views = [
            build(ViewInfo(k, k, "live", default_definition(k, settings), None, "", None), settings)
            for k in KINDS
            if k != "subjects"  # an index of every event by subject: merges included
        ]
        store.ensure([s for v in views for s in v.schema(store.dialect)])
        for batch in batches:
            with store.transaction() as c:
                for view in views:
                    view.apply(c, [e for e in batch if view.wants(e)])
        out: dict[str, Any] = {}
        with store.reading() as c:
            for view in views:
                for name in sorted(view.tables):
                    table = name.rsplit(".", 1)[-1]
                    profiles = view.kind == "profiles" or name.startswith("profiles.")
                    if profiles and table in ("events", "merges"):
                        continue
                    if profiles and table == "contacts":
                        sql = "SELECT contact_id, merged_into FROM {} WHERE merged_into IS NOT NULL"
                    else:
                        sql = "SELECT * FROM {}"
                    c.execute(sql.format(view.table(name)))
                    out[f"{view.instance}.{name}"] = sorted(map(repr, c.fetchall()))
        timeline = next(v for v in views if isinstance(v, Timeline))
        consent = next(v for v in views if isinstance(v, Consent))
        for p in PEOPLE:
            page = timeline.query(store, contact_id=p, since=SINCE, limit=100)
            out[f"timeline {p}"] = ([e.event_id for e in page.entries], page.merged_into)
            out[f"consent {p}"] = repr(consent_state(store, p, view=consent))
        return out
    finally:
        store.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), ops=merge_ops)
def test_any_merges_and_unmerges_in_any_order_give_the_views_of_their_net_merges(
    data: st.DataObject, ops: list[tuple[bool, int, int, int]], tmp_path_factory: Any
) -> None:
    merges = [
        _event(
            1000 + n,
            type="contact.unmerged" if undo else "contact.merged",
            contact=PEOPLE[into],
            at=minute,
            payload={"merged_contact_id": str(PEOPLE[dup])},
        )
        for n, (undo, into, dup, minute) in enumerate(ops)
    ]
    everything = INTERACTIONS + merges
    order = data.draw(st.permutations(everything), label="arrival order")
    size = data.draw(st.integers(1, len(everything)), label="batch size")
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    equivalent = sorted(
        INTERACTIONS + net_merges(merges), key=lambda e: (e.occurred_at, str(e.event_id))
    )
    got = views_digest(tmp_path_factory.mktemp("any"), batches)
    assert got == views_digest(tmp_path_factory.mktemp("net"), [equivalent])


def test_a_duplicate_merged_twice_at_one_instant_leaves_the_first_survivors_leads(
    tmp_path: Path,
) -> None:
    """The property test's shrunk case: C0 merges C2 and C1 merges C2, both at 09:00 (the tie
    goes to the later event id: C2 ends up in C1), one event a batch, in either arrival order.
    When the winning merge comes second, C2 leaves C0's group: C0's lead is rescored without
    C2's matches, as if only the net merge had happened."""
    merges = [
        _event(
            1000 + n,
            type="contact.merged",
            contact=PEOPLE[into],
            at=0,
            payload={"merged_contact_id": str(PEOPLE[2])},
        )
        for n, into in enumerate((0, 1))
    ]
    equivalent = sorted(
        INTERACTIONS + net_merges(merges), key=lambda e: (e.occurred_at, str(e.event_id))
    )
    assert [str(e.subject.contact_id) for e in net_merges(merges)] == [str(PEOPLE[1])]
    want = views_digest(tmp_path / "net", [equivalent])
    # C0's lead counts C0's own form only (at 09:20), not C2's (at 09:34)
    rows = [ast.literal_eval(r) for r in want["lead_scores.scores"]]
    mine = {r[1]: (r[6], r[9]) for r in rows if r[0] == str(LEADS[0])}
    assert mine["marketing-engagement"] == (20.0, "2026-03-01T09:20:00.000000Z")
    for n, order in enumerate((merges, merges[::-1])):
        got = views_digest(tmp_path / f"order{n}", [[e] for e in [*INTERACTIONS, *order]])
        assert got["lead_scores.scores"] == want["lead_scores.scores"], order
        assert got == want
