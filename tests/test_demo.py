"""The demo-data generator: reproducible, valid, ordered, realistic and streamed."""

from __future__ import annotations

import io
import time
import tracemalloc
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest

from interaction_store.codec import decode, encode
from interaction_store.demo import estimate_events, generate, write_jsonl
from interaction_store.events import InteractionEvent, SmsReplied

END = datetime(2025, 6, 1, tzinfo=UTC)


def _jsonl(contacts: int, seed: int = 0, days: int = 365) -> bytes:
    buf = io.BytesIO()
    write_jsonl(buf, contacts, seed=seed, end=END, days=days)
    return buf.getvalue()


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return _jsonl(200).splitlines()


@pytest.fixture(scope="module")
def events(lines: list[bytes]) -> list[InteractionEvent]:
    return [decode(line) for line in lines]


# --------------------------------------------------------------------------- reproducibility


def test_same_arguments_give_the_same_bytes() -> None:
    first = _jsonl(60, seed=7)
    assert first == _jsonl(60, seed=7)
    assert first != _jsonl(60, seed=8)
    assert first != _jsonl(61, seed=7)


def test_the_same_instant_in_another_timezone_gives_the_same_bytes() -> None:
    paris = END.astimezone(timezone(timedelta(hours=2)))
    a = [encode(e) for e in generate(20, seed=1, end=END, days=30)]
    b = [encode(e) for e in generate(20, seed=1, end=paris, days=30)]
    assert a == b


def test_every_line_decodes_and_round_trips(lines: list[bytes]) -> None:
    assert len(lines) > 10_000
    ids = set()
    for line in lines:
        event = decode(line)
        assert encode(event) == line
        ids.add(event.event_id)
    assert len(ids) == len(lines)


# --------------------------------------------------------------------------- realism


def test_every_family_is_present_at_200_contacts(events: list[InteractionEvent]) -> None:
    types = Counter(e.type for e in events)
    families = {t.split(".", 1)[0] for t in types}
    expected = {"email", "sms", "push", "web", "form", "event", "chat", "activity", "contact"}
    expected |= {"account", "lead", "consent", "identity"}
    assert expected <= families
    for needed in (
        "email.sent", "email.delivered", "email.opened", "email.clicked", "email.bounced",
        "email.unsubscribed", "email.blocked", "sms.sent", "sms.delivered", "sms.replied",
        "push.sent", "push.delivered", "push.opened", "web.page_viewed", "web.link_clicked",
        "form.viewed", "form.submitted", "event.registered", "event.checked_in",
        "event.session_attended", "chat.invitation_shown", "chat.invitation_accepted",
        "chat.invitation_declined", "chat.invitation_expired", "chat.conversation_started",
        "chat.message", "chat.conversation_ended", "activity.phone_call",
        "activity.appointment", "activity.task", "activity.case_opened",
        "activity.case_resolved", "contact.created", "contact.updated",
        "contact.joined_account", "account.created", "identity.linked", "lead.created",
        "lead.qualified", "lead.disqualified", "lead.returned_to_marketing",
        "consent.preferences_changed", "consent.subscription_joined",
        "consent.subscription_left", "consent.contact_point_changed", "consent.level_changed",
    ):  # fmt: skip
        assert types[needed] > 0, needed
    assert "lead.sales_ready" not in types  # the projections emit it, not upstream systems
    # 50 to 150 events a contact a year.
    assert 50 * 200 <= len(events) <= 150 * 200


def _payload(e: InteractionEvent) -> dict[str, Any]:
    return e.payload.model_dump(mode="json")


def test_the_special_cases_of_the_seeds_occur(events: list[InteractionEvent]) -> None:
    def payloads(etype: str) -> list[dict[str, Any]]:
        return [_payload(e) for e in events if e.type == etype]

    leads = [(e, _payload(e)) for e in events if e.type == "lead.created"]
    assert any(p["parent_contact_id"] for _, p in leads)
    assert any(p["parent_account_id"] for _, p in leads)
    orphans = [e for e, p in leads if not p["parent_contact_id"] and not p["parent_account_id"]]
    assert orphans
    assert all(e.subject.lead_id and not e.subject.contact_id for e in orphans)

    replies = [e.payload for e in events if isinstance(e.payload, SmsReplied)]
    assert any(r.is_opt_out and r.keyword == "STOP" for r in replies)
    assert any(not r.is_opt_out for r in replies)
    bounces = {p["bounce_type"] for p in payloads("email.bounced")}
    assert bounces == {"hard", "soft"}
    assert {p["legal_designation"] for p in payloads("email.sent")} == {
        "commercial",
        "transactional",
    }
    subjects = {p["subject"] for p in payloads("email.sent")}
    assert {"3 astuces pour bien démarrer", "3 consejos para empezar"} <= subjects
    assert all(p["preview_text"] for p in payloads("email.sent"))
    assert all(p["seconds_shown"] >= 60 for p in payloads("chat.invitation_expired"))
    assert all(p["proactive"] for p in payloads("chat.conversation_started"))
    assert all(p["seconds_on_page"] >= 30 for p in payloads("chat.invitation_shown"))
    children = [p for p in payloads("contact.created") if p.get("is_child")]
    assert children and all(p["guardian_contact_id"] for p in children)
    submitted = payloads("form.submitted")
    assert {p["prefilled"] for p in submitted} == {True, False}
    assert any(p["consent_checkboxes"] for p in submitted)
    assert any(e.subject.anonymous_id and not e.subject.contact_id for e in events)
    assert any(p.get("referrer") for p in payloads("web.page_viewed"))
    sources = {e.source for e in events}
    assert {"journeys", "outbound-marketing", "sales", "customer-service"} <= sources
    assert {"web-tracking", "omnichannel"} <= sources


def test_profiles_are_consistent(events: list[InteractionEvent]) -> None:
    """Contacts exist before anything happens to them; accounts before their people."""
    created: set[UUID] = set()
    accounts: set[UUID] = set()
    leads: set[UUID] = set()
    for e in events:
        s = e.subject
        if e.type == "account.created":
            # The contract needs a contact in the subject: the account's primary contact,
            # whose contact.created follows.
            assert s.account_id is not None
            accounts.add(s.account_id)
            continue
        if e.type == "contact.created":
            assert s.contact_id not in created
            guardian = e.payload.model_dump()["guardian_contact_id"]
            assert guardian is None or guardian in created
            assert s.contact_id is not None
            created.add(s.contact_id)
        elif s.contact_id is not None:
            assert s.contact_id in created, e.type
        if s.account_id is not None:
            assert s.account_id in accounts, e.type
        if e.type == "lead.created":
            assert s.lead_id is not None
            leads.add(s.lead_id)
        elif s.lead_id is not None:
            assert s.lead_id in leads, e.type
    assert len(created) == 200


def test_merged_contacts_fall_silent() -> None:
    evs = list(generate(1000, seed=2, end=END, days=200))
    merges = [e for e in evs if e.type == "contact.merged"]
    assert 1 <= len(merges) <= 2
    for m in merges:
        gone = m.payload.model_dump()["merged_contact_id"]
        after = [e for e in evs if e.occurred_at > m.occurred_at and e.subject.contact_id == gone]
        assert after == []
        assert any(e.type == "contact.created" and e.subject.contact_id == gone for e in evs)
    assert sum(1 for e in evs if e.type == "contact.created") == 1000


# --------------------------------------------------------------------------- order and window


def test_events_are_sorted_and_inside_the_window(events: list[InteractionEvent]) -> None:
    start = END - timedelta(days=365)
    times = [e.occurred_at for e in events]
    assert times == sorted(times)
    assert start <= times[0] and times[-1] < END
    assert all(t.utcoffset() == timedelta(0) for t in times[:100])


def test_short_windows_stay_inside() -> None:
    evs = list(generate(30, seed=4, end=END, days=1))
    assert evs
    assert all(END - timedelta(days=1) <= e.occurred_at < END for e in evs)
    assert sum(1 for e in evs if e.type == "contact.created") == 30


def test_end_defaults_to_today_midnight_utc() -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    evs = list(generate(2, seed=0, days=10))
    assert evs
    assert all(today - timedelta(days=10) <= e.occurred_at < today for e in evs)


# --------------------------------------------------------------------------- consent


def test_the_generator_respects_its_own_consent(events: list[InteractionEvent]) -> None:
    """No marketing email after an opt-out, unsubscribe or hard bounce; no SMS after STOP."""
    bulk: dict[UUID, bool] = defaultdict(lambda: True)
    allow: dict[UUID, bool] = defaultdict(lambda: True)
    address_out: dict[UUID, bool] = defaultdict(bool)
    hard: set[UUID] = set()
    lists: dict[UUID, set[str]] = defaultdict(set)
    stopped: set[UUID] = set()
    checked_after_opt_out = 0
    opted_out: set[UUID] = set()
    for e in events:
        c = e.subject.contact_id
        if c is None:
            continue
        p = _payload(e)
        match e.type:
            case "consent.preferences_changed":
                if p.get("allow_bulk_email") is not None:
                    bulk[c] = p["allow_bulk_email"]
                    if not bulk[c]:
                        opted_out.add(c)
                if p.get("allow_email") is not None:
                    allow[c] = p["allow_email"]
            case "email.unsubscribed":
                opted_out.add(c)
                if p.get("list_id") is None:
                    bulk[c] = False
                else:
                    lists[c].discard(p["list_id"])
            case "consent.subscription_joined":
                lists[c].add(p["list_id"])
            case "consent.subscription_left":
                lists[c].discard(p["list_id"])
            case "consent.contact_point_changed" if p["channel"] == "email":
                address_out[c] = p["status"] == "opted_out"
            case "email.bounced" if p["bounce_type"] == "hard":
                hard.add(c)
                opted_out.add(c)
            case "sms.replied" if isinstance(e.payload, SmsReplied) and e.payload.is_opt_out:
                stopped.add(c)
            case "sms.sent":
                assert c not in stopped, f"SMS to {c} after STOP"
            case "email.sent":
                assert allow[c] and c not in hard, f"email to {c} who refuses all email"
                if p["legal_designation"] == "commercial":
                    assert bulk[c], f"marketing email to {c} after bulk email was disallowed"
                    assert not address_out[c], f"marketing email to {c}'s opted-out address"
                    if p.get("list_id") is not None:
                        assert p["list_id"] in lists[c], f"{p['list_id']} email to {c}"
                    checked_after_opt_out += c in opted_out
    # Not vacuous: contacts opted out, and some (re-subscribed, or on other lists) still got mail.
    assert len(opted_out) >= 10 and stopped and hard
    assert checked_after_opt_out > 0


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"contacts": 0}, r"contacts .*got 0$"),
        ({"contacts": -3}, r"contacts .*got -3$"),
        ({"contacts": True}, r"contacts .*got True$"),
        ({"contacts": 10, "days": 0}, r"days .*got 0$"),
        ({"contacts": 10, "days": -1}, r"days .*got -1$"),
        ({"contacts": 10, "end": datetime(2025, 1, 1)}, r"end .*timezone.*2025, 1, 1"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_value(
    kwargs: dict[str, Any], message: str
) -> None:
    # Raised at the call, not at the first next(): a CLI reports it before opening files.
    with pytest.raises(ValueError, match=message):
        generate(**kwargs)
    with pytest.raises(ValueError, match=message):
        write_jsonl(io.BytesIO(), **kwargs)
    if "end" not in kwargs:
        with pytest.raises(ValueError, match=message):
            estimate_events(**kwargs)


# --------------------------------------------------------------------------- streaming


def test_the_first_event_comes_before_the_rest_is_generated() -> None:
    tracemalloc.start()
    try:
        began = time.perf_counter()
        first = next(generate(100_000, seed=3, end=END))
        elapsed = time.perf_counter() - began
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Ten million events would take minutes and gigabytes; the first one takes neither.
    assert elapsed < 1.0
    assert peak < 5_000_000
    assert first.occurred_at >= END - timedelta(days=365)


def test_memory_stays_bounded_while_streaming_2000_contacts() -> None:
    tracemalloc.start()
    try:
        count = size = 0
        for event in generate(2000, seed=5, end=END, days=45):
            count += 1
            size += len(encode(event))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count > 20_000
    # Holding the events would take several times their encoded size; the simulation keeps a
    # small state per contact instead.
    assert peak < 15_000_000
    assert peak < size / 2


# --------------------------------------------------------------------------- the writer


def test_write_jsonl_reports_progress_and_counts(lines: list[bytes]) -> None:
    calls: list[int] = []
    buf = io.BytesIO()
    count = write_jsonl(buf, 200, seed=0, end=END, progress=calls.append)
    assert count == len(lines) == sum(calls)
    assert len(calls) >= count // 5000
    assert buf.getvalue().endswith(b"\n")
    assert buf.getvalue().splitlines() == lines


def test_estimate_is_in_the_right_ballpark(events: list[InteractionEvent]) -> None:
    assert 0.7 < estimate_events(200) / len(events) < 1.3
    short = sum(1 for _ in generate(200, seed=0, end=END, days=30))
    assert 0.6 < estimate_events(200, days=30) / short < 1.5
