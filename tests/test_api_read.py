"""The read API over HTTP, on SQLite and PostgreSQL views: timeline pages, cursors, filters, an
account's roll-up and a lead's own timeline; each role sees, and counts, only its categories;
consent now and as of an instant, send decisions, lead scores with their explanations; 404
naming an unknown id, 422 naming a bad parameter, 403 where a role may not read."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from interaction_store.api.services import Services
from interaction_store.ingest import Ingest
from interaction_store.log import open_log
from interaction_store.projection.registry import ViewRegistry, build, default_definition
from interaction_store.projection.runner import ProjectionRunner
from interaction_store.projection.scoring import NO_PARENT, NOT_CREATED
from interaction_store.settings import Settings
from interaction_store.views import open_store
from tests.api_support import auth, client, project
from tests.factories import doc

NOW = datetime.now(UTC).replace(microsecond=0)
"""Events are recent, so the timeline's default window (12 months back) shows them all."""


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@dataclass
class World:
    """Who is in the log: an account of two contacts, an outsider, three leads."""

    c1: str = field(default_factory=lambda: str(uuid.uuid4()))
    c2: str = field(default_factory=lambda: str(uuid.uuid4()))
    outsider: str = field(default_factory=lambda: str(uuid.uuid4()))
    account: str = field(default_factory=lambda: str(uuid.uuid4()))
    lead: str = field(default_factory=lambda: str(uuid.uuid4()))
    orphan_lead: str = field(default_factory=lambda: str(uuid.uuid4()))
    """A lead with neither a parent contact nor a parent account."""
    stray_lead: str = field(default_factory=lambda: str(uuid.uuid4()))
    """A lead only a timeline entry names (no lead event yet)."""
    consent_changed_at: datetime = field(default_factory=lambda: ago(10))

    def documents(self) -> list[dict[str, Any]]:
        c1, c2, lead = self.c1, self.c2, self.lead
        spring = {"message_id": "m-1", "campaign_id": "cmp-spring-2026"}
        return [
            doc("contact.created", c1, ago(30), {"first_name": "Ada", "email": "ada@example.com"}),
            doc(
                "account.created",
                at=ago(30),
                payload={"name": "Acme"},
                subject={"contact_id": c1, "account_id": self.account},
            ),
            doc("contact.joined_account", c1, ago(30), {"account_id": self.account}),
            doc("contact.joined_account", c2, ago(29), {"account_id": self.account}),
            doc("consent.level_changed", c1, ago(20), {"level": "marketing"}),
            doc(
                "consent.subscription_joined",
                c1,
                ago(20),
                {"list_id": "newsletter", "list_name": "Newsletter"},
            ),
            doc("consent.preferences_changed", c1, self.consent_changed_at),
            doc(
                "lead.created",
                at=ago(15),
                payload={"topic": "trial", "parent_contact_id": c1},
                subject={"lead_id": lead},
            ),
            doc(
                "lead.created",
                at=ago(15),
                payload={"topic": "unknown"},
                subject={"lead_id": self.orphan_lead},
            ),
            doc(
                "activity.task",
                at=ago(14),
                payload={"subject": "call back"},
                subject={"lead_id": lead},
            ),
            doc(
                "activity.appointment",
                at=ago(13),
                payload={
                    "subject": "demo",
                    "starts_at": ago(12).isoformat(),
                    "ends_at": (ago(12) + timedelta(hours=1)).isoformat(),
                },
                subject={"contact_id": c1, "lead_id": lead},
            ),
            doc("email.sent", c1, ago(9), correlation=spring),
            doc("email.delivered", c1, ago(9) + timedelta(minutes=1), correlation=spring),
            doc("email.opened", c1, ago(8), correlation=spring),
            doc("sms.sent", c1, ago(7)),
            doc("push.sent", c1, ago(6), {"title": "Sale", "body": "Today only"}),
            doc("web.page_viewed", c1, ago(5)),
            doc("form.submitted", c1, ago(4), {"form_id": "contact-us"}),
            doc("event.registered", c1, ago(3), {"event_ref": "e-1", "event_name": "Expo"}),
            doc("chat.conversation_started", c1, ago(2), {"conversation_id": "k-1"}),
            doc("activity.phone_call", c1, ago(1), {"direction": "inbound"}),
            doc("email.opened", c2, ago(1.5)),
            doc("activity.case_opened", c2, ago(0.5), {"case_id": "case-1"}),
            doc("contact.created", self.outsider, ago(30), {"first_name": "Bo"}),
            doc("web.page_viewed", self.outsider, ago(0.1)),
            doc("activity.task", at=ago(0.2), payload={}, subject={"lead_id": self.stray_lead}),
        ]


C1_CHANNELS = Counter(
    {"email": 2, "sms": 1, "push": 1, "web": 1, "form": 1, "event": 1, "chat": 1, "activity": 2}
)
"""The entries on the first contact's timeline, by channel (the delivery report is a status)."""

CATEGORY = {
    "email": "marketing_email",
    "sms": "sms",
    "push": "push_notification",
    "web": "website",
    "form": "marketing_form",
    "event": "event",
    "chat": "chat",
    "activity": "activity",
    "opportunity": "opportunity",
}
SEES = {
    "admin": set(CATEGORY),
    "marketing": {"email", "sms", "push", "web", "form", "event"},
    "sales": {"email", "event", "form", "web", "chat", "activity", "opportunity"},
    "service": {"chat", "activity"},
}


def publish(settings: Settings, docs: list[dict[str, Any]]) -> None:
    with open_log(settings) as log:
        outcomes = Ingest(log, parallel=False).publish_documents(
            [orjson.dumps(d) for d in docs], "test_api_read"
        )
    assert [o.status for o in outcomes] == ["accepted"] * len(docs)


@contextmanager
def served(settings: Settings) -> Iterator[tuple[TestClient, World]]:
    """The world published and projected, and a client of the app over it."""
    world = World()
    publish(settings, world.documents())
    project(settings)
    with client(settings) as http:
        yield http, world


def get(http: TestClient, url: str, role: str = "admin", **params: Any) -> Any:
    r = http.get(url, params=params, headers=auth(role))
    assert r.status_code == 200, r.text
    return r.json()


def all_pages(http: TestClient, url: str, role: str, limit: int) -> list[dict[str, Any]]:
    """Every entry, following the cursors; each page says the same total."""
    entries: list[dict[str, Any]] = []
    cursor = None
    totals = set()
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        page = get(http, url, role, **params)
        assert len(page["entries"]) <= limit
        entries += page["entries"]
        totals.add(page["total"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert totals == {len(entries)}
    return entries


def newest_first(entries: list[dict[str, Any]]) -> bool:
    keys = [(e["occurred_at"], e["event_id"]) for e in entries]
    return keys == sorted(keys, reverse=True)


def test_timeline_pages_filters_rollup_and_lead(view_settings: Settings) -> None:
    with served(view_settings) as (http, w):
        url = f"/v1/contacts/{w.c1}/timeline"
        page = get(http, url)
        entries = page["entries"]
        assert page["total"] == len(entries) == sum(C1_CHANNELS.values())
        assert Counter(e["channel"] for e in entries) == C1_CHANNELS
        assert newest_first(entries) and page["next_cursor"] is None
        assert page["subject"] == {"kind": "contact", "id": w.c1}
        by_type = {e["type"]: e for e in entries}
        # The delivery report is the message's status; the open shows what was opened.
        assert by_type["email.sent"]["status"] == "delivered"
        assert by_type["email.sent"]["preview"]["subject"] == "Spring webinar"
        assert by_type["email.opened"]["message"]["subject"] == "Spring webinar"
        assert "email.delivered" not in by_type

        # Pages of 3 follow each other without a repeat or a gap.
        assert all_pages(http, url, "admin", 3) == entries

        emails_and_sms = get(http, url, channel=["email", "sms"])
        assert {e["type"] for e in emails_and_sms["entries"]} == {
            "email.sent",
            "email.opened",
            "sms.sent",
        }
        assert emails_and_sms["total"] == 3
        opened = get(http, url, type="email.opened")["entries"]
        assert [e["type"] for e in opened] == ["email.opened"]
        window = get(http, url, **{"from": ago(6.5).isoformat(), "to": ago(1.5).isoformat()})
        assert [e["channel"] for e in window["entries"]] == ["chat", "event", "form", "web", "push"]
        assert window["window_start"] is None

        # An account rolls up its members' timelines, not the outsider's.
        account = get(http, f"/v1/accounts/{w.account}/timeline")
        assert account["total"] == len(account["entries"]) == sum(C1_CHANNELS.values()) + 2
        assert {e["subject_id"] for e in account["entries"]} == {w.c1, w.c2}
        assert newest_first(account["entries"])
        assert (
            all_pages(http, f"/v1/accounts/{w.account}/timeline", "admin", 5) == account["entries"]
        )

        # A lead's timeline holds the events about the lead (also those naming its contact).
        lead = get(http, f"/v1/leads/{w.lead}/timeline")
        assert [e["type"] for e in lead["entries"]] == ["activity.appointment", "activity.task"]
        assert {e["subject_kind"] for e in lead["entries"]} == {"lead"}
        stray = get(http, f"/v1/leads/{w.stray_lead}/timeline")
        assert [e["type"] for e in stray["entries"]] == ["activity.task"]
        # Known (by its lead event) but with nothing on its timeline: an empty page.
        orphan = get(http, f"/v1/leads/{w.orphan_lead}/timeline")
        assert orphan["entries"] == [] and orphan["total"] == 0


def test_each_role_sees_and_counts_only_its_categories(view_settings: Settings) -> None:
    with served(view_settings) as (http, w):
        url = f"/v1/contacts/{w.c1}/timeline"
        for role, channels in SEES.items():
            page = get(http, url, role)
            expected = {c: n for c, n in C1_CHANNELS.items() if c in channels}
            assert Counter(e["channel"] for e in page["entries"]) == expected, role
            assert page["total"] == sum(expected.values()), role
            assert page["categories"] == sorted(CATEGORY[c] for c in channels), role
            # Paging never reveals a hidden entry, in the entries or the counts.
            assert all_pages(http, url, role, 2) == page["entries"], role
            # Nor does a filter on a hidden channel: nothing, counted as nothing.
            for hidden in set(CATEGORY) - channels:
                filtered = get(http, url, role, channel=hidden)
                assert filtered["entries"] == [] and filtered["total"] == 0, (role, hidden)
            account = get(http, f"/v1/accounts/{w.account}/timeline", role)
            assert {e["channel"] for e in account["entries"]} <= channels, role

        # The marketing role sees an open with the email it is about; service sees neither.
        marketing = get(http, url, "marketing", type="email.opened")["entries"]
        assert marketing[0]["message"]["subject"] == "Spring webinar"
        service = get(http, f"/v1/accounts/{w.account}/timeline", "service")
        assert [e["type"] for e in service["entries"]] == [
            "activity.case_opened",
            "activity.phone_call",
            "chat.conversation_started",
            "activity.appointment",
        ]
        assert service["total"] == 4

        reads = {
            "timeline": f"/v1/contacts/{w.c1}/timeline",
            "consent": f"/v1/contacts/{w.c1}/consent",
            "decision": f"/v1/contacts/{w.c1}/consent/decision?channel=email&purpose=commercial",
            "scores": f"/v1/leads/{w.lead}/scores",
            "score": f"/v1/leads/{w.lead}/scores/sales-signals",
        }
        refused = {
            "publisher": set(reads),
            "sales": {"consent", "decision"},
            "service": {"scores", "score"},
            "marketing": set(),
        }
        for role, not_allowed in refused.items():
            for name, path in reads.items():
                r = http.get(path, headers=auth(role))
                if name in not_allowed:
                    assert r.status_code == 403, (role, name, r.text)
                    assert r.headers["content-type"] == "application/problem+json"
                    assert f"role {role}" in r.json()["detail"]
                else:
                    assert r.status_code == 200, (role, name, r.text)
        # Positions need only a valid key.
        assert http.get("/v1/positions", headers=auth("publisher")).status_code == 200
        assert http.get(reads["timeline"]).status_code == 401


def test_consent_now_as_of_and_send_decisions(view_settings: Settings) -> None:
    with served(view_settings) as (http, w):
        url = f"/v1/contacts/{w.c1}/consent"
        now = get(http, url)
        bulk = now["preferences"]["allow_bulk_email"]
        assert bulk["value"] is False
        assert bulk["source"]["event_type"] == "consent.preferences_changed"
        assert now["level"]["value"] == "marketing"
        assert now["subscribed"] == ["newsletter"]
        assert now["email"]["value"] == "ada@example.com"
        assert now["events"] == 4

        before = get(http, url, as_of=(w.consent_changed_at - timedelta(days=1)).isoformat())
        assert before["preferences"]["allow_bulk_email"] == {"value": True, "source": None}
        assert before["level"]["value"] == "marketing"
        assert before["events"] == 3

        decision = f"{url}/decision"
        commercial = get(http, decision, channel="email", purpose="commercial")
        assert commercial["may_send"] is False
        assert any("bulk email not allowed" in r for r in commercial["reasons"])
        failed = {c["rule"] for c in commercial["checks"] if not c["passed"]}
        assert failed == {"allow_bulk_email"}
        transactional = get(http, decision, channel="email", purpose="transactional")
        assert transactional["may_send"] is True
        then = (w.consent_changed_at - timedelta(days=1)).isoformat()
        assert get(http, decision, channel="email", purpose="commercial", as_of=then)["may_send"]
        listed = get(http, decision, channel="email", purpose="commercial", list="newsletter")
        assert any(c["rule"] == "list" and c["passed"] for c in listed["checks"])
        assert listed["list_id"] == "newsletter"

        # A contact only a membership and a timeline name: nothing recorded, the defaults.
        c2 = get(http, f"/v1/contacts/{w.c2}/consent")
        assert c2["events"] == 0 and c2["level"] == {"value": "not_consented", "source": None}
        no = get(http, f"/v1/contacts/{w.c2}/consent/decision", channel="sms", purpose="commercial")
        assert no["may_send"] is False

        for path in (url, f"{url}/decision?channel=sms&purpose=transactional"):
            assert http.get(path, headers=auth("admin")).status_code == 200
        bad = http.get(f"{decision}?channel=fax&purpose=commercial", headers=auth("admin"))
        assert bad.status_code == 422 and bad.json()["errors"][0]["parameter"] == "channel"
        missing = http.get(f"{decision}?channel=email", headers=auth("admin"))
        assert missing.status_code == 422 and missing.json()["errors"][0]["parameter"] == "purpose"


def test_lead_scores_and_explanations(view_settings: Settings) -> None:
    with served(view_settings) as (http, w):
        scores = get(http, f"/v1/leads/{w.lead}/scores")
        by_model = {s["model"]: s for s in scores["scores"]}
        assert set(by_model) == {"marketing-engagement", "sales-signals"}
        signals = by_model["sales-signals"]
        # An inbound call (15), an appointment (25) and a chat on the parent contact.
        assert signals["status"] == "scored" and signals["score"] > 40
        assert signals["explanation"] is None

        one = get(http, f"/v1/leads/{w.lead}/scores/sales-signals", explain="true")
        assert {k: v for k, v in one.items() if k != "explanation"} == {
            k: v for k, v in signals.items() if k != "explanation"
        }
        explanation = one["explanation"]
        assert explanation["subjects"] == [w.c1]
        assert {e["type"] for e in explanation["events"]} >= {
            "activity.phone_call",
            "activity.appointment",
        }
        assert sum(e["decayed_points"] for e in explanation["events"]) == pytest.approx(
            signals["score"]
        )
        assert get(http, f"/v1/leads/{w.lead}/scores/sales-signals")["explanation"] is None

        # Marketing reads scores but not chats or activities: the explanation lists none of
        # theirs, nor counts them in the rules (the score itself stays the same).
        seen = get(http, f"/v1/leads/{w.lead}/scores/sales-signals", "marketing", explain=True)
        assert seen["score"] == signals["score"]
        shown = seen["explanation"]
        assert not {e["type"].split(".")[0] for e in shown["events"] + shown["set_aside"]} & {
            "chat",
            "activity",
        }, shown
        assert sum(r["counted"] for r in shown["rules"]) == len(shown["events"])
        assert sum(r["set_aside"] for r in shown["rules"]) == len(shown["set_aside"])
        assert sum(r["total"] for r in shown["rules"]) == pytest.approx(
            sum(e["decayed_points"] for e in shown["events"])
        )

        orphan = get(http, f"/v1/leads/{w.orphan_lead}/scores")["scores"]
        assert {(s["status"], s["reason"]) for s in orphan} == {("not_scored", NO_PARENT)}
        stray = get(http, f"/v1/leads/{w.stray_lead}/scores")["scores"]
        assert {(s["status"], s["reason"]) for s in stray} == {("not_scored", NOT_CREATED)}
        explained = get(http, f"/v1/leads/{w.stray_lead}/scores/sales-signals", explain=True)
        assert explained["status"] == "not_scored" and explained["explanation"]["events"] == []

        unknown_model = http.get(f"/v1/leads/{w.lead}/scores/no-such-model", headers=auth("admin"))
        assert unknown_model.status_code == 404
        assert unknown_model.json()["model"] == "no-such-model"
        assert "'no-such-model'" in unknown_model.json()["detail"]


def test_unknown_ids_are_404_naming_the_id(view_settings: Settings) -> None:
    with served(view_settings) as (http, w):
        nobody = str(uuid.uuid4())
        for kind, path in (
            ("contact", f"/v1/contacts/{nobody}/timeline"),
            ("contact", f"/v1/contacts/{nobody}/consent"),
            ("contact", f"/v1/contacts/{nobody}/consent/decision?channel=sms&purpose=commercial"),
            ("lead", f"/v1/leads/{nobody}/timeline"),
            ("lead", f"/v1/leads/{nobody}/scores"),
            ("lead", f"/v1/leads/{nobody}/scores/sales-signals?explain=true"),
            ("account", f"/v1/accounts/{nobody}/timeline"),
            # Ids of another kind are not ids of this one.
            ("account", f"/v1/accounts/{w.c1}/timeline"),
            ("lead", f"/v1/leads/{w.c1}/scores"),
        ):
            r = http.get(path, headers=auth("admin"))
            assert r.status_code == 404, (path, r.text)
            body = r.json()
            missing = body[f"{kind}_id"]
            assert missing in (nobody, w.c1) and missing in body["detail"], path
        # An id in another spelling is the same id.
        assert get(http, f"/v1/contacts/{w.c1.upper()}/timeline")["subject"]["id"] == w.c1
        # A known contact whose entries a role may not see: an empty page, not a 404.
        assert get(http, f"/v1/contacts/{w.outsider}/timeline", "service")["total"] == 0


def test_bad_parameters_are_422_naming_them(embedded_settings: Settings) -> None:
    with served(embedded_settings) as (http, w):
        contact = f"/v1/contacts/{w.c1}/timeline"
        cases: list[tuple[str, str, str]] = [
            ("/v1/contacts/not-a-uuid/timeline", "contact_id", "not-a-uuid"),
            ("/v1/leads/123/scores", "lead_id", "123"),
            (f"/v1/accounts/{w.account[:-1]}/timeline", "account_id", w.account[:-1]),
            (f"{contact}?limit=0", "limit", "0"),
            (f"{contact}?limit=501", "limit", "501"),
            (f"{contact}?limit=many", "limit", "many"),
            (f"{contact}?channel=email&channel=fax", "channel", "fax"),
            (f"{contact}?type=email.read", "type", "email.read"),
            (f"{contact}?from=2026-01-01T00:00:00", "from", "2026-01-01T00:00:00"),
            (f"{contact}?to=yesterday", "to", "yesterday"),
            (f"{contact}?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from", "2026-02-01"),
            (f"{contact}?cursor=bm90IGEgY3Vyc29y", "cursor", "bm90IGEgY3Vyc29y"),
            (f"{contact}?wait=-1", "wait", "-1"),
            (f"{contact}?consistency=abc", "consistency", "abc"),
            (f"/v1/contacts/{w.c1}/consent?as_of=2026-01-01", "as_of", "2026-01-01"),
            (f"/v1/contacts/{w.c1}/consent?as_of=0001-01-01T00:00:00%2B01:00", "as_of", "0001"),
            (f"/v1/leads/{w.lead}/scores?as_of=2026-01-01T10:00", "as_of", "2026-01-01T10:00"),
            (f"/v1/leads/{w.lead}/scores/sales-signals?explain=maybe", "explain", "maybe"),
        ]
        for path, parameter, value in cases:
            r = http.get(path, headers=auth("admin"))
            assert r.status_code == 422, (path, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            body = r.json()
            assert body["errors"][0]["parameter"] == parameter, (path, body)
            assert repr(parameter) in body["detail"] and value in body["detail"], (path, body)


def test_positions_and_lag_and_no_live_view_yet(embedded_settings: Settings) -> None:
    w = World()
    with client(embedded_settings) as http:
        # No projection has run: reads say so (503), positions list no view.
        r = http.get(f"/v1/contacts/{w.c1}/timeline", headers=auth("admin"))
        assert r.status_code == 503 and "istore run" in r.json()["detail"], r.text
        assert get(http, "/v1/positions") == {"views": []}

        publish(embedded_settings, w.documents())
        project(embedded_settings)
        views = get(http, "/v1/positions")["views"]
        assert {v["kind"] for v in views} == {
            "profiles",
            "timeline",
            "consent",
            "lead_scores",
            "subjects",
        }
        for view in views:
            assert view["lag"] == 0
            applied = {(p["topic"], p["partition"]): p["position"] for p in view["partitions"]}
            assert sum(p + 1 for p in applied.values() if p is not None) == len(w.documents())

        publish(embedded_settings, [doc("web.page_viewed", w.c1, ago(0.01))])
        lagging = get(http, "/v1/positions")["views"]
        assert {v["lag"] for v in lagging} == {1}
        for view in lagging:
            behind = [p for p in view["partitions"] if p["lag"]]
            assert [p["lag"] for p in behind] == [1] and behind[0]["topic"].endswith(
                "interactions.v1"
            )
        project(embedded_settings)
        assert {v["lag"] for v in get(http, "/v1/positions")["views"]} == {0}


def test_a_promotion_while_serving_is_read_from(
    view_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Services, "REGISTRY_EVERY", 0.0, raising=False)
    with served(view_settings) as (http, w):
        url = f"/v1/contacts/{w.c1}/timeline"
        before = get(http, url)
        # `istore replay timeline --as timeline_b`, `views promote timeline_b`, `views drop
        # timeline`, while the server runs.
        with open_log(view_settings) as log, open_store(view_settings) as store:
            registry = ViewRegistry(store)
            info = registry.register(
                "timeline_b", "timeline", default_definition("timeline", view_settings)
            )
            ProjectionRunner(log, store, [build(info, view_settings)]).run(follow=False)
            registry.promote("timeline_b")
            registry.drop("timeline", view_settings)
        after = get(http, url)
    assert after["total"] == before["total"] > 0
    assert after["entries"] == before["entries"]
