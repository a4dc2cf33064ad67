"""The timeline view: newest first, filters, previews, the default window, stable cursor pages,
lead and account timelines, delivery reports that supersede, read permissions, and the same
rows whatever the order of the events. SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from interaction_store import demo
from interaction_store.codec import decode_document, to_document
from interaction_store.events import InteractionEvent
from interaction_store.log import EventLog, open_log
from interaction_store.projection import ProjectionRunner, view_checksum
from interaction_store.projection.profiles import Profiles
from interaction_store.projection.timeline import (
    SETTINGS_FILE,
    Timeline,
    TimelineConfigError,
    TimelinePage,
    TimelineSettings,
    encode_cursor,
)
from interaction_store.settings import Settings
from interaction_store.views import ViewStore, open_store
from tests.factories import BASE, event

NOW = BASE + timedelta(days=1)
SHIPPED = Settings().projections_dir / SETTINGS_FILE


@pytest.fixture
def log(view_settings: Settings) -> Iterator[EventLog]:
    with open_log(view_settings) as log:
        yield log


@pytest.fixture
def store(view_settings: Settings) -> Iterator[ViewStore]:
    with open_store(view_settings) as store:
        yield store


def project(log: EventLog, store: ViewStore, events: Sequence[InteractionEvent]) -> Timeline:
    """Publish the events and bring the live timeline and profiles views up to date."""
    timeline = Timeline()
    log.publish(list(events))
    ProjectionRunner(log, store, [timeline, Profiles()], batch_size=50).run(follow=False)
    return timeline


def apply_each(store: ViewStore, timeline: Timeline, batches: Sequence[Sequence[Any]]) -> None:
    """Apply batches straight to a view, one transaction each (as the runner does); the
    profiles view is there but empty."""
    store.ensure(timeline.schema(store.dialect) + Profiles().schema(store.dialect))
    for batch in batches:
        with store.transaction() as c:
            timeline.apply(c, batch)


def sent(
    kind: str, contact: uuid.UUID, at: int | datetime, message: str, **kw: Any
) -> InteractionEvent:
    payloads = {
        "email": {"subject": "Spring webinar", "preview_text": "Join us", "to_address": "a@b.c"},
        "sms": {"text": "Your code is 1234", "to_number": "+33600000000"},
        "push": {"title": "Your report is ready", "body": "Open the app"},
    }
    return event(
        type=f"{kind}.sent",
        contact=contact,
        at=at,
        payload=payloads[kind],
        correlation={"message_id": message, "campaign_id": f"cmp-{kind}", "journey_id": "jrn-1"},
        **kw,
    )


def report(
    kind: str, contact: uuid.UUID, at: int, message: str | None, **kw: Any
) -> InteractionEvent:
    payload = {
        "email.bounced": {"bounce_type": "hard", "reason": "mailbox unknown"},
        "sms.failed": {"reason": "unreachable handset"},
    }.get(kind, {})
    correlation = {"message_id": message} if message else {}
    return event(type=kind, contact=contact, at=at, payload=payload, correlation=correlation, **kw)


def every_page(
    timeline: Timeline, store: ViewStore, limit: int, **kw: Any
) -> tuple[list[TimelinePage], list[str]]:
    pages = [timeline.query(store, limit=limit, now=NOW, **kw)]
    while pages[-1].next_cursor is not None:
        pages.append(
            timeline.query(store, limit=limit, now=NOW, cursor=pages[-1].next_cursor, **kw)
        )
    return pages, [e.event_id for p in pages for e in p.entries]


# --------------------------------------------------------------------------- reading


def test_newest_first_with_previews_and_statuses(log: EventLog, store: ViewStore) -> None:
    contact, other = uuid.uuid4(), uuid.uuid4()
    events = [
        event(type="contact.created", contact=contact, at=0),
        sent("email", contact, 1, "m-email"),
        report("email.delivered", contact, 2, "m-email"),
        event(type="email.opened", contact=contact, at=30, correlation={"message_id": "m-email"}),
        sent("sms", contact, 40, "m-sms"),
        sent("push", contact, 50, "m-push"),
        report("push.delivered", contact, 51, "m-push"),
        event(type="web.page_viewed", contact=contact, at=60),
        event(type="consent.preferences_changed", contact=contact, at=70),
        event(
            type="activity.phone_call",
            contact=contact,
            at=80,
            payload={"direction": "inbound", "subject": "Renewal", "duration_seconds": 300},
        ),
        sent("email", other, 90, "m-other"),
    ]
    timeline = project(log, store, events)
    page = timeline.query(store, contact_id=contact, now=NOW)
    assert [e.type for e in page.entries] == [
        "activity.phone_call",
        "web.page_viewed",
        "push.sent",
        "sms.sent",
        "email.opened",
        "email.sent",
    ]
    assert page.total == 6 and page.next_cursor is None
    by_type = {e.type: e for e in page.entries}
    email = by_type["email.sent"]
    assert email.preview == {"subject": "Spring webinar", "preview_text": "Join us"}
    assert (email.status, email.status_at) == ("delivered", BASE + timedelta(minutes=2))
    assert (email.message_id, email.campaign_id, email.journey_id) == (
        "m-email",
        "cmp-email",
        "jrn-1",
    )
    assert by_type["sms.sent"].preview == {"text": "Your code is 1234"}
    assert by_type["sms.sent"].status == "sent"  # no report yet
    assert by_type["push.sent"].preview == {"title": "Your report is ready", "body": "Open the app"}
    assert by_type["push.sent"].status == "delivered"
    # An open shows the email it is about; personal data (the address) is in no preview.
    assert by_type["email.opened"].message == email.preview
    assert by_type["email.opened"].status is None
    assert by_type["activity.phone_call"].preview == {
        "direction": "inbound",
        "subject": "Renewal",
        "duration_seconds": 300.0,
    }
    assert {e.type: e.permission for e in page.entries} == {
        "activity.phone_call": "activity",
        "web.page_viewed": "website",
        "push.sent": "push_notification",
        "sms.sent": "sms",
        "email.opened": "marketing_email",
        "email.sent": "marketing_email",
    }
    assert all(e.subject_kind == "contact" and e.subject_id == str(contact) for e in page.entries)
    newest = [e.occurred_at for e in page.entries]
    assert newest == sorted(newest, reverse=True)


def test_filters_by_channel_type_status_and_time(log: EventLog, store: ViewStore) -> None:
    contact = uuid.uuid4()
    events = [
        sent("email", contact, 0, "m1"),
        event(type="email.opened", contact=contact, at=10, correlation={"message_id": "m1"}),
        sent("email", contact, 20, "m2"),
        report("email.bounced", contact, 21, "m2"),
        event(type="email.opened", contact=contact, at=30, correlation={"message_id": "m1"}),
        sent("sms", contact, 40, "m3"),
        event(type="web.page_viewed", contact=contact, at=50),
    ]
    timeline = project(log, store, events)

    def types(**kw: Any) -> list[str]:
        page = timeline.query(store, contact_id=str(contact), now=NOW, **kw)
        assert page.total == len(page.entries)
        return [e.type for e in page.entries]

    assert types(channels=["email"]) == ["email.opened", "email.sent", "email.opened", "email.sent"]
    assert types(types=["email.opened"]) == ["email.opened", "email.opened"]
    assert types(channels=["sms", "web"]) == ["web.page_viewed", "sms.sent"]
    assert types(channels=["sms"], types=["email.opened"]) == []
    assert types(statuses=["bounced"]) == ["email.sent"]
    assert types(statuses=["sent"]) == ["sms.sent", "email.sent"]

    def at(minutes: int) -> datetime:
        return BASE + timedelta(minutes=minutes)

    assert types(since=at(20), until=at(40)) == ["email.opened", "email.sent"]
    assert types(until=at(10)) == ["email.sent"]  # until is exclusive
    assert types(since=at(50)) == ["web.page_viewed"]  # since is inclusive


def test_the_default_window_hides_old_marketing_but_keeps_it(
    log: EventLog, store: ViewStore
) -> None:
    contact = uuid.uuid4()
    old = BASE - timedelta(days=400)
    events = [
        sent("email", contact, old, "m-old"),
        event(
            type="activity.phone_call",
            contact=contact,
            at=old + timedelta(minutes=1),
            payload={"direction": "inbound"},
        ),
        sent("email", contact, BASE - timedelta(days=10), "m-new"),
    ]
    timeline = project(log, store, events)
    page = timeline.query(store, contact_id=contact, now=BASE)
    # 12 months of marketing; sales and service activities whatever their age.
    assert [(e.type, e.message_id) for e in page.entries] == [
        ("email.sent", "m-new"),
        ("activity.phone_call", None),
    ]
    assert page.window_start == BASE - timedelta(days=365) and page.total == 2
    # Older entries are still stored: an explicit since reaches them.
    since = timeline.query(store, contact_id=contact, now=BASE, since=old)
    assert [e.message_id for e in since.entries] == ["m-new", None, "m-old"]
    assert since.window_start is None and since.total == 3
    # The window comes from projections/: a 400-day window shows the old email again.
    wide = Timeline(settings=settings_with("window_days = 365", "window_days = 401"))
    assert wide.query(store, contact_id=contact, now=BASE).total == 3


def test_pages_are_stable_while_events_arrive(log: EventLog, store: ViewStore) -> None:
    contact = uuid.uuid4()
    # Ties on occurred_at across page boundaries: the event id breaks them.
    first = [event(type="web.page_viewed", contact=contact, at=i // 3) for i in range(25)]
    timeline = project(log, store, first)
    page = timeline.query(store, contact_id=contact, limit=6, now=NOW)
    seen = [e.event_id for e in page.entries]
    arrivals = [
        # newer than all; on either side of the next page boundary; older than all
        [event(type="email.opened", contact=contact, at=100 + i) for i in range(4)],
        [event(type="email.opened", contact=contact, at=at) for at in (6, 5, 4, 1, 0)],
        [event(type="email.opened", contact=contact, at=-50 - i) for i in range(3)],
    ]
    unseen: set[str] = set()  # arrived above the page being read: a reader will not see them
    while page.next_cursor is not None:
        if arrivals:
            batch = arrivals.pop(0)
            edge = (page.entries[-1].occurred_at, page.entries[-1].event_id)
            unseen |= {str(e.event_id) for e in batch if (e.occurred_at, str(e.event_id)) > edge}
            log.publish(batch)
            ProjectionRunner(log, store, [timeline]).run(follow=False)
        page = timeline.query(store, contact_id=contact, limit=6, now=NOW, cursor=page.next_cursor)
        seen += [e.event_id for e in page.entries]
    everything = timeline.query(store, contact_id=contact, limit=500, now=NOW).entries
    assert len(everything) == 37 and not arrivals and 4 < len(unseen) < 12
    # Every entry below the reader's position exactly once, in order; none above it.
    assert seen == [e.event_id for e in everything if e.event_id not in unseen]


def test_a_lead_timeline_holds_lead_events_only(log: EventLog, store: ViewStore) -> None:
    contact, lead = uuid.uuid4(), uuid.uuid4()
    lead_only = event(type="web.page_viewed", at=1, subject={"lead_id": str(lead)})
    both = event(
        type="form.submitted",
        at=2,
        payload={"form_id": "f-demo", "fields": {"email": "a@b.c"}},
        subject={"lead_id": str(lead), "contact_id": str(contact)},
    )
    contact_only = event(type="email.opened", contact=contact, at=3)
    created = event(type="lead.created", at=0, subject={"lead_id": str(lead)}, payload={})
    timeline = project(log, store, [lead_only, both, contact_only, created])
    on_lead = timeline.query(store, lead_id=lead, now=NOW).entries
    assert [e.event_id for e in on_lead] == [str(both.event_id), str(lead_only.event_id)]
    assert {e.subject_kind for e in on_lead} == {"lead"}
    assert on_lead[0].preview == {"form_id": "f-demo", "prefilled": False}
    on_contact = timeline.query(store, contact_id=contact, now=NOW).entries
    assert [e.event_id for e in on_contact] == [str(contact_only.event_id), str(both.event_id)]


def test_an_account_rolls_up_its_members(log: EventLog, store: ViewStore) -> None:
    account = uuid.uuid4()
    ada, bob, cyd, dan, dup = (uuid.uuid4() for _ in range(5))
    visitor = "cookie-42"

    def membership(contact: uuid.UUID, at: int, kind: str = "joined") -> InteractionEvent:
        payload = {"account_id": str(account)}
        return event(type=f"contact.{kind}_account", contact=contact, at=at, payload=payload)

    events = [
        membership(ada, 0),
        membership(bob, 0),
        membership(cyd, 0),
        membership(cyd, 5, "left"),
        event(type="web.page_viewed", contact=ada, at=10),
        event(type="email.opened", contact=bob, at=11),
        event(type="email.opened", contact=cyd, at=12),  # left the account
        event(type="email.opened", contact=dan, at=13),  # never a member
        # Bob's duplicate, merged into him, and a visitor later identified as Ada.
        event(type="email.clicked", contact=dup, at=14),
        event(type="contact.merged", contact=bob, at=15, payload={"merged_contact_id": str(dup)}),
        event(type="web.page_viewed", at=16, subject={"anonymous_id": visitor}),
        event(
            type="identity.linked",
            at=17,
            contact=ada,
            payload={"anonymous_id": visitor, "contact_id": str(ada)},
        ),
    ]
    timeline = project(log, store, events)
    pages, _ = every_page(timeline, store, 2, account_id=account)
    rolled = [e for p in pages for e in p.entries]
    assert [(e.subject_kind, e.subject_id, e.type) for e in rolled] == [
        ("anonymous", visitor, "web.page_viewed"),
        ("contact", str(dup), "email.clicked"),
        ("contact", str(bob), "email.opened"),
        ("contact", str(ada), "web.page_viewed"),
    ]
    assert len(pages) == 2 and pages[0].total == 4
    ada_page = timeline.query(store, contact_id=ada, now=NOW)
    assert [e.subject_id for e in ada_page.entries] == [visitor, str(ada)]
    # Without the profiles view, a contact's timeline is its own entries only.
    assert timeline.query(store, contact_id=ada, now=NOW, profiles=None).total == 1
    assert timeline.query(store, anonymous_id=visitor, now=NOW).total == 1


def test_a_big_account_is_read_in_parts_with_the_same_pages(
    log: EventLog, store: ViewStore
) -> None:
    # More members than one statement carries: the read goes part by part, and still gives
    # every entry once, newest first, with the right total on every page.
    account = uuid.uuid4()
    members = [uuid.uuid4() for _ in range(510)]
    events: list[InteractionEvent] = []
    for i, contact in enumerate(members):
        payload = {"account_id": str(account)}
        events.append(event(type="contact.joined_account", contact=contact, at=0, payload=payload))
        events.append(event(type="email.opened", contact=contact, at=10 + i))
    timeline = project(log, store, events)
    pages, ids = every_page(timeline, store, 200, account_id=account)
    assert [len(p.entries) for p in pages] == [200, 200, 110]
    assert {p.total for p in pages} == {510}
    opened = [e for e in events if e.type == "email.opened"]
    assert ids == [str(e.event_id) for e in reversed(opened)]


# --------------------------------------------------------------------------- corrections


def test_a_bounce_after_a_delivery_is_one_entry_in_any_order(store: ViewStore) -> None:
    contact = uuid.uuid4()
    message = [
        sent("email", contact, 0, "m1"),
        report("email.delivered", contact, 1, "m1"),
        report("email.bounced", contact, 2, "m1"),
    ]
    sums = set()
    for n, order in enumerate(itertools.permutations(message)):
        timeline = Timeline(f"timeline_order{n}")
        apply_each(store, timeline, [[e] for e in order] + [[order[0], order[0]]])
        [entry] = timeline.query(store, contact_id=contact, now=NOW).entries
        assert (entry.type, entry.status) == ("email.sent", "bounced"), order
        assert entry.status_detail == {"bounce_type": "hard", "reason": "mailbox unknown"}
        sums.add(view_checksum(store, timeline))
    assert len(sums) == 1
    # A later report supersedes again (a soft bounce, then delivered on retry).
    timeline = Timeline("timeline_order0")
    apply_each(store, timeline, [[report("email.delivered", contact, 3, "m1")]])
    [entry] = timeline.query(store, contact_id=contact, now=NOW).entries
    assert (entry.status, entry.status_detail) == ("delivered", {})


def test_a_report_without_its_message_stands_in_until_the_message_arrives(
    store: ViewStore,
) -> None:
    contact = uuid.uuid4()
    timeline = Timeline()
    delivered = report("sms.delivered", contact, 5, "m1")
    failed = report("sms.failed", contact, 6, "m1")
    apply_each(store, timeline, [[failed], [delivered]])
    [entry] = timeline.query(store, contact_id=contact, now=NOW).entries
    # Placed at its first report, showing the latest one.
    assert (entry.event_id, entry.type, entry.status) == (
        str(delivered.event_id),
        "sms.delivered",
        "failed",
    )
    assert entry.status_detail == {"reason": "unreachable handset"}
    assert timeline.query(store, contact_id=contact, now=NOW, types=["sms.failed"]).total == 0
    apply_each(store, timeline, [[sent("sms", contact, 4, "m1")]])
    [entry] = timeline.query(store, contact_id=contact, now=NOW).entries
    assert (entry.type, entry.status, entry.preview) == (
        "sms.sent",
        "failed",
        {"text": "Your code is 1234"},
    )
    # A report naming no message at all can only be an entry of its own.
    lone = report("email.bounced", contact, 7, None)
    apply_each(store, timeline, [[lone]])
    page = timeline.query(store, contact_id=contact, now=NOW)
    assert [(e.type, e.status) for e in page.entries] == [
        ("email.bounced", "bounced"),
        ("sms.sent", "failed"),
    ]


# --------------------------------------------------------------------------- permissions


def test_hidden_categories_are_neither_returned_nor_counted(
    log: EventLog, store: ViewStore
) -> None:
    contact = uuid.uuid4()
    events = [
        sent("email", contact, 10, "m1"),
        event(type="email.opened", contact=contact, at=11, correlation={"message_id": "m1"}),
        sent("sms", contact, 5, "m2"),
        event(type="web.page_viewed", contact=contact, at=1),
        event(type="activity.task", contact=contact, at=0, payload={"subject": "Call back"}),
    ]
    timeline = project(log, store, events)
    page = timeline.query(store, contact_id=contact, now=NOW, limit=2, permissions=["sms"])
    assert [e.type for e in page.entries] == ["sms.sent"]
    assert page.total == 1 and page.next_cursor is None
    both = {"marketing_email", "activity"}
    pages, _ = every_page(timeline, store, 1, contact_id=contact, permissions=both)
    shown = [e for p in pages for e in p.entries]
    assert [e.type for e in shown] == ["email.opened", "email.sent", "activity.task"]
    assert {p.total for p in pages} == {3}
    assert {e.permission for e in shown} <= both
    # An open previews its email only for a reader allowed to see emails.
    assert shown[0].message == {"subject": "Spring webinar", "preview_text": "Join us"}
    none = timeline.query(store, contact_id=contact, now=NOW, permissions=[])
    assert (none.entries, none.total, none.next_cursor) == ([], 0, None)


# --------------------------------------------------------------------------- order


def with_corrections(events: list[InteractionEvent]) -> list[InteractionEvent]:
    """Demo events plus bounces after deliveries (some at the very same instant) and a few
    sends left out, so that reports must supersede each other and stand in for messages."""
    out = list(events)
    for i, e in enumerate(events):
        if e.type == "email.delivered" and i % 3 == 0:
            doc = to_document(e)
            later = e.occurred_at + timedelta(seconds=0 if i % 2 else 30)
            doc.update(
                event_id=str(uuid.uuid4()),
                type="email.bounced",
                schema_version=2,
                occurred_at=later.isoformat(),
                payload={"bounce_type": "soft", "reason": "mailbox full"},
            )
            out.append(decode_document(doc))
    left_out = {e.event_id for e in out if e.type == "email.sent"}
    left_out = set(sorted(left_out)[::10])
    return [e for e in out if e.event_id not in left_out]


def test_the_same_rows_in_any_order_with_duplicates(log: EventLog, store: ViewStore) -> None:
    events = with_corrections(list(demo.generate(30, seed=7, end=BASE, days=120)))
    live = project(log, store, events)
    expected = view_checksum(store, live)
    with store.reading() as c:
        c.execute(f"SELECT type, status, COUNT(*) FROM {live.table('entries')} GROUP BY 1, 2")
        counts = {(t, s): n for t, s, n in c.fetchall()}
    assert sum(counts.values()) > 600
    assert counts[("email.sent", "bounced")] > 10 and counts[("email.sent", "delivered")] > 10
    assert sum(n for (t, _), n in counts.items() if t in ("email.delivered", "email.bounced"))
    for seed in range(3):
        rng = random.Random(seed)
        shuffled = events + rng.sample(events, len(events) // 10)  # redeliveries
        rng.shuffle(shuffled)
        size = rng.choice((7, 100, 5000)) if seed else 1
        batches = [shuffled[i : i + size] for i in range(0, len(shuffled), size)]
        if size == 1:
            batches = [*batches[:300], shuffled[300:]]  # one by one would take too long
        shadow = Timeline(f"timeline_shuffle{seed}")
        apply_each(store, shadow, batches)
        assert view_checksum(store, shadow) == expected, f"seed {seed}, batches of {size}"


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def sqlite_store(embedded_settings: Settings) -> Iterator[ViewStore]:
    with open_store(embedded_settings) as store:
        store.ensure(Timeline().schema(store.dialect))
        yield store


A_CONTACT = str(uuid.uuid4())


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({}, "exactly one of contact_id"),
        ({"contact_id": A_CONTACT, "lead_id": A_CONTACT}, "lead_id="),
        ({"contact_id": "not-a-uuid"}, "contact_id 'not-a-uuid'"),
        ({"account_id": "42"}, "account_id '42'"),
        ({"anonymous_id": ""}, "anonymous_id ''"),
        ({"contact_id": A_CONTACT, "limit": 0}, "limit 0"),
        ({"contact_id": A_CONTACT, "limit": 501}, "limit 501"),
        ({"contact_id": A_CONTACT, "limit": True}, "limit True"),
        ({"contact_id": A_CONTACT, "channels": ["email", "fax"]}, "channels ['fax']"),
        ({"contact_id": A_CONTACT, "channels": "email"}, "channels 'email'"),
        ({"contact_id": A_CONTACT, "channels": ["consent"]}, "channels ['consent']"),
        ({"contact_id": A_CONTACT, "types": ["email.read"]}, "types ['email.read']"),
        ({"contact_id": A_CONTACT, "types": ["contact.created"]}, "types ['contact.created']"),
        ({"contact_id": A_CONTACT, "statuses": ["lost"]}, "statuses ['lost']"),
        ({"contact_id": A_CONTACT, "permissions": ["emails"]}, "permissions ['emails']"),
        ({"contact_id": A_CONTACT, "since": datetime(2026, 1, 1)}, "since datetime"),
        ({"contact_id": A_CONTACT, "until": "2026-01-01"}, "until '2026-01-01'"),
        ({"contact_id": A_CONTACT, "now": datetime(2026, 1, 1)}, "now datetime"),
        ({"contact_id": A_CONTACT, "since": NOW, "until": BASE}, "since 2026-03-02"),
        ({"contact_id": A_CONTACT, "cursor": "not a cursor"}, "cursor 'not a cursor'"),
        ({"contact_id": A_CONTACT, "cursor": "WyJ4Il0"}, "cursor 'WyJ4Il0'"),
        ({"contact_id": A_CONTACT, "cursor": encode_cursor("yesterday", A_CONTACT)}, "cursor"),
        ({"contact_id": A_CONTACT, "cursor": encode_cursor(BASE.isoformat(), "e1")}, "cursor"),
        ({"account_id": A_CONTACT, "profiles": None}, "profiles None"),
    ],
)
def test_bad_arguments_are_named(
    sqlite_store: ViewStore, kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError) as raised:
        Timeline().query(sqlite_store, **kwargs)
    assert named in str(raised.value)


def test_a_missing_profiles_view_is_explained(sqlite_store: ViewStore) -> None:
    with pytest.raises(LookupError, match=r"profiles view 'profiles'.*profiles=None"):
        Timeline().query(sqlite_store, contact_id=A_CONTACT)
    assert Timeline().query(sqlite_store, contact_id=A_CONTACT, profiles=None).total == 0


# --------------------------------------------------------------------------- settings


def settings_with(old: str, new: str) -> TimelineSettings:
    text = SHIPPED.read_text(encoding="utf-8")
    assert old in text, old
    return TimelineSettings.parse(text.replace(old, new, 1), "edited.toml")


def test_the_shipped_settings_load_from_the_projections_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = TimelineSettings.load()
    assert shipped.window_days == 365 and shipped.source == str(SHIPPED)
    assert "email.delivered" not in shipped.entry_types and "email.sent" in shipped.entry_types
    assert not any(t.startswith(("contact.", "consent.", "lead.")) for t in shipped.entry_types)
    assert shipped.sent_types == {"email.sent", "sms.sent", "push.sent"}
    text = SHIPPED.read_text(encoding="utf-8").replace("window_days = 365", "window_days = 30")
    (tmp_path / SETTINGS_FILE).write_text(text, encoding="utf-8")
    monkeypatch.setenv("ISTORE_PROJECTIONS_DIR", str(tmp_path))
    assert Timeline().settings.window_days == 30
    assert Timeline().settings.source == str(tmp_path / SETTINGS_FILE)


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("window_days = 365", "window_days = 0", "window_days = 0"),
        ("window_days = 365", 'window_days = "a year"', "window_days = 'a year'"),
        ("window_days = 365", "", "window_days is missing"),
        ("window_days = 365", "window_day = 365", "window_day = 365: unknown key"),
        ('"opportunity"]\n', '"opportunity", "fax"]\n', "channels[9] = 'fax'"),
        (
            '["email", "sms", "push", "web", "form", "event"]',
            '["email", "chat", "consent"]',
            "windowed_channels[2] = 'consent'",
        ),
        ("hidden_types = []", 'hidden_types = ["email.read"]', "hidden_types[0] = 'email.read'"),
        ('"sms.failed" = "failed"', '"sms.failed" = "sent"', "corrections.\"sms.failed\" = 'sent'"),
        ('"sms.failed" = "failed"', '"web.page_viewed" = "x"', 'corrections."web.page_viewed"'),
        ("hidden_types = []", 'hidden_types = ["email.sent"]', 'corrections."email.delivered"'),
        ('["title", "body"]', '["title", "image"]', "preview.\"push.sent\"[1] = 'image'"),
        ('["title", "body"]', '"title"', "preview.\"push.sent\" = 'title'"),
        ("[preview]", '[preview]\n"lead.created" = []', "'lead.created': its channel is not"),
        ('activity = "activity"', "", "permissions.activity is missing"),
        ('activity = "activity"', 'activity = ""', "permissions.activity = ''"),
        ("window_days = 365", "window_days = [", "not valid TOML"),
    ],
)
def test_a_bad_settings_file_is_named_with_key_and_value(
    tmp_path: Path, old: str, new: str, named: str
) -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    assert old in text, old
    (tmp_path / SETTINGS_FILE).write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(TimelineConfigError) as raised:
        TimelineSettings.load(tmp_path)
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / SETTINGS_FILE}: "), message
    assert named in message, message


def test_a_missing_settings_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(TimelineConfigError, match="ISTORE_PROJECTIONS_DIR") as raised:
        TimelineSettings.load(tmp_path)
    assert str(tmp_path / SETTINGS_FILE) in str(raised.value)
