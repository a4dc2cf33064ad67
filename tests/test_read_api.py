"""The read API reads the live views exactly as the functions under it do (timelines, consent
now and as of an instant, send decisions, lead scores and explanations, positions), names what
it cannot find, and says to run `istore run` while there is no live view. SQLite and
PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from interaction_store.log import open_log
from interaction_store.projection.consent import (
    Consent,
    UnknownContact,
    audit_trail,
    consent_state,
    may_send,
)
from interaction_store.projection.registry import ViewError, ViewRegistry
from interaction_store.projection.scoring import UnknownLead, UnknownModel, explain, lead_scores
from interaction_store.projection.timeline import Timeline
from interaction_store.read import ReadAPI
from interaction_store.settings import Settings
from interaction_store.views import open_store
from tests.factories import event
from tests.test_cli_views import (
    END,
    SINCE,
    demo_events,
    istore,
    load_demo,
)

MIDYEAR = datetime(2025, 9, 15, 8, 30, tzinfo=UTC)


def test_reads_equal_the_functions_under_them(view_settings: Settings, tmp_path: Path) -> None:
    load_demo(view_settings, tmp_path)
    events = demo_events()
    busy = Counter(e.subject.contact_id for e in events if e.subject.contact_id)
    consent_changes = Counter(e.subject.contact_id for e in events if e.type.startswith("consent."))
    ranked = [c for c, _ in busy.most_common(3)] + [c for c, _ in consent_changes.most_common(2)]
    contacts = [c for c in ranked if c is not None]
    accounts = {str(e.subject.account_id) for e in events if e.type == "account.created"}

    with open_store(view_settings) as store, ReadAPI(view_settings) as api:
        timeline = Timeline.from_settings(view_settings)
        consent = Consent.from_settings(view_settings)
        with store.reading() as c:
            c.execute("SELECT lead_id FROM lead_scores__scores WHERE status = 'scored'")
            leads = sorted({str(r[0]) for r in c.fetchall()})[:4]
            c.execute("SELECT lead_id FROM profiles__leads WHERE parent_contact_id IS NULL")
            account_leads = [str(r[0]) for r in c.fetchall()]
        assert len(leads) == 4 and accounts and account_leads

        def both(**query: Any) -> None:
            """The API's page and the view's own query, for one set of arguments."""
            via_api = api.timeline(**query, since=SINCE, now=END)
            direct = timeline.query(store, **query, since=SINCE, now=END, profiles="profiles")
            assert via_api == direct, query

        for contact in contacts:
            both(contact_id=contact)
            both(contact_id=str(contact), channels=["email"], types=["email.opened"], limit=3)
            both(contact_id=contact, permissions=["website", "marketing_email"], limit=5)
            first = api.timeline(contact_id=contact, since=SINCE, now=END, limit=2)
            assert first.next_cursor is not None
            both(contact_id=contact, limit=2, cursor=first.next_cursor)
            assert api.timeline(contact_id=contact, now=END) == timeline.query(
                store, contact_id=contact, now=END, profiles="profiles"
            )

            assert api.consent(contact) == consent_state(store, contact, view=consent)
            assert api.consent(contact, as_of=MIDYEAR) == consent_state(
                store, contact, MIDYEAR, view=consent
            )
            assert api.audit(contact) == audit_trail(store, contact, view=consent)
            for channel, purpose, list_id, as_of in (
                ("email", "commercial", None, None),
                ("email", "commercial", "list-offers", MIDYEAR),
                ("sms", "transactional", None, None),
            ):
                decision = api.may_send(contact, channel, purpose, list_id, as_of)
                assert decision == may_send(
                    store, contact, channel, purpose, list_id, as_of, view=consent
                )
                assert decision.reasons
        assert any(api.consent(c) != api.consent(c, as_of=MIDYEAR) for c in contacts), (
            "some consent should have changed since mid-year"
        )
        for account in sorted(accounts)[:2]:
            both(account_id=account, limit=20)

        for lead in leads + account_leads[:1]:
            both(lead_id=lead)
            scores = api.lead_scores(lead)
            assert scores == lead_scores(store, lead)
            assert api.lead_scores(lead, as_of=MIDYEAR) == lead_scores(store, lead, as_of=MIDYEAR)
            for s in scores:
                why = api.explain(lead, s.model)
                assert why == explain(store, lead, s.model)
                if s.status == "scored":
                    assert why.score == pytest.approx(s.score)
                    assert sum(e.decayed_points for e in why.events) == pytest.approx(s.score)
                assert api.explain(lead, s.model, as_of=MIDYEAR) == explain(
                    store, lead, s.model, as_of=MIDYEAR
                )

        # Positions: every live view has applied the log up to its end.
        with open_log(view_settings) as log:
            ends = {
                (t.name, p): end
                for t in log.catalog.event_topics
                for p, end in log.end_offsets(t.name).items()
            }
        positions = api.positions()
        assert sorted(positions) == ["consent", "lead_scores", "profiles", "subjects", "timeline"]
        for instance, tracked in positions.items():
            assert tracked == store.tracked(instance, list(ends))
            assert tracked == {tp: end - 1 for tp, end in ends.items() if end > 0}

        # What is not there is named.
        nobody = "00000000-0000-4000-8000-000000000000"
        with pytest.raises(UnknownContact, match=f"contact {nobody} is not in the consent view"):
            api.consent(nobody)
        with pytest.raises(UnknownContact, match=nobody):
            api.may_send(nobody, "email", "commercial")
        with pytest.raises(UnknownLead, match=f"no lead {nobody} in the lead_scores view"):
            api.lead_scores(nobody)
        with pytest.raises(UnknownModel, match="no scoring model 'gossip' in this view"):
            api.explain(leads[0], "gossip")
        with pytest.raises(ValueError, match="channel 'fax'"):
            api.may_send(contacts[0], "fax", "commercial")
        with pytest.raises(ValueError, match="as_of must be timezone-aware"):
            api.lead_scores(leads[0], as_of=datetime(2025, 9, 1))
        with pytest.raises(ViewError, match="unknown view kind 'widgets'; the kinds are profiles"):
            api.view("widgets")

    # A store handed in stays open after the API is done with it.
    with open_store(view_settings) as store:
        with ReadAPI(view_settings, store=store) as api:
            assert api.lead_scores(leads[0]) == lead_scores(store, leads[0])
        assert lead_scores(store, leads[0])


def test_reading_before_there_is_a_live_view_says_to_run_istore_run(
    view_settings: Settings,
) -> None:
    contact = "00000000-0000-4000-8000-000000000001"
    with ReadAPI(view_settings) as api:
        for kind, read in (
            ("timeline", lambda: api.timeline(contact_id=contact)),
            ("consent", lambda: api.consent(contact)),
            ("consent", lambda: api.audit(contact)),
            ("consent", lambda: api.may_send(contact, "email", "commercial")),
            ("lead_scores", lambda: api.lead_scores(contact)),
            ("lead_scores", lambda: api.explain(contact, "marketing-engagement")),
        ):
            with pytest.raises(ViewError) as caught:
                read()
            assert str(caught.value) == (
                f"there is no live {kind} view yet: run `istore run` (or `istore run --once`)"
            )
        assert api.positions() == {}

        # A live timeline alone is not enough: it looks people up in the profiles view.
        ViewRegistry(api.store).register("timeline", "timeline", {}, status="live")
        api.refresh()
        with pytest.raises(ViewError, match="there is no live profiles view yet"):
            api.timeline(contact_id=contact)

    for args in (("sample",), ("show", "lead", contact)):
        out = istore(view_settings, *args, code=1).stderr
        assert "there is no live lead_scores view yet: run `istore run`" in out
    out = istore(view_settings, "show", "contact", contact, code=1).stderr
    assert "there is no live profiles view yet" in out


def test_sample_says_when_no_lead_is_scored_yet(view_settings: Settings) -> None:
    contact = event().subject.contact_id
    with open_log(view_settings) as log:
        log.publish([event(type="contact.created", contact=contact), event(contact=contact, at=1)])
    istore(view_settings, "run", "--once")
    out = istore(view_settings, "sample").stdout
    assert out == "no scored lead yet: publish events and run `istore run --once`\n"
    with ReadAPI(view_settings) as api:
        [opened] = api.timeline(contact_id=contact, since=SINCE, now=END).entries
        assert opened.type == "email.opened"
        assert sum(len(p) for p in api.positions().values()) == 5 * 2  # two topics, five views
