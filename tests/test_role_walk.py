"""Read permissions hold on every read: each default role walks every GET route of the API (found
in the app's OpenAPI document, so a new route is walked too) and its answers are compared with
admin's. Nothing of a category the role may not read shows (those events' ids and types, counts
that include them) and what it may read equals admin's answer filtered. Then the Python read
API, which takes the same permissions."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from interaction_store.api.access import CATEGORIES
from interaction_store.projection.base import HIDDEN_EVENT
from interaction_store.projection.scoring import WITHHELD
from interaction_store.read import ReadAPI
from interaction_store.settings import Settings
from tests.api_support import access_config, auth, client, project
from tests.factories import doc
from tests.test_api_read import CATEGORY, publish

NOW = datetime.now(UTC).replace(microsecond=0)
ROLES = access_config().roles
CONSENT_OPT_OUTS = {"email.unsubscribed", "email.spam_reported", "email.bounced", "sms.replied"}


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def category(event_type: str) -> str | None:
    return CATEGORY.get(event_type.split(".", 1)[0])


@dataclass
class World:
    """A contact with events of every category and every opt-out the consent view reads; a
    second member of its account; a lead of the contact and one of the account."""

    c1: str = field(default_factory=lambda: str(uuid.uuid4()))
    c2: str = field(default_factory=lambda: str(uuid.uuid4()))
    account: str = field(default_factory=lambda: str(uuid.uuid4()))
    lead: str = field(default_factory=lambda: str(uuid.uuid4()))
    account_lead: str = field(default_factory=lambda: str(uuid.uuid4()))
    erased: str = field(default_factory=lambda: str(uuid.uuid4()))
    """A third contact, erased: its receipt is walked."""
    erasure: str = ""
    docs: list[dict[str, Any]] = field(default_factory=list)
    past: datetime = field(default_factory=lambda: ago(2.5))
    """An instant between the opt-outs, for `as_of` reads."""

    def __post_init__(self) -> None:
        c1, c2 = self.c1, self.c2
        call = {"direction": "inbound"}
        meeting = {"starts_at": ago(12).isoformat(), "ends_at": ago(11.9).isoformat()}
        self.docs = [
            doc("contact.created", c1, ago(30), {"email": "ada@example.com", "phone": "+3312"}),
            doc("contact.joined_account", c1, ago(30), {"account_id": self.account}),
            doc("contact.joined_account", c2, ago(29), {"account_id": self.account}),
            doc("consent.level_changed", c1, ago(25), {"level": "marketing"}),
            doc("consent.subscription_joined", c1, ago(25), {"list_id": "news", "list_name": "N"}),
            doc(
                "lead.created",
                at=ago(20),
                payload={"parent_contact_id": c1},
                subject={"lead_id": self.lead},
            ),
            doc(
                "lead.created",
                at=ago(20),
                payload={"parent_account_id": self.account},
                subject={"lead_id": self.account_lead},
            ),
            doc("email.sent", c1, ago(10), correlation={"message_id": "m-1"}),
            doc("email.opened", c1, ago(9), correlation={"message_id": "m-1"}),
            doc("sms.sent", c1, ago(9)),
            doc("push.sent", c1, ago(8), {"title": "Sale", "body": "Today"}),
            doc("web.page_viewed", c1, ago(8), {"url": "https://x.example/pricing"}),
            doc("form.submitted", c1, ago(7), {"form_id": "form-contact-sales"}),
            doc("event.registered", c1, ago(7), {"event_ref": "e-1"}),
            doc("chat.conversation_started", c1, ago(6), {"conversation_id": "k-1"}),
            doc("chat.conversation_started", c1, ago(5), {"conversation_id": "k-2"}),
            doc("activity.phone_call", c1, ago(5), call),
            doc("activity.appointment", c1, ago(13), meeting),
            doc("email.unsubscribed", c1, ago(4), {"list_id": "news", "via": "link"}),
            doc("email.spam_reported", c1, ago(3)),
            doc("email.bounced", c1, ago(2), {"bounce_type": "hard", "reason": "mailbox unknown"}),
            doc("sms.replied", c1, ago(1), {"text": "STOP", "keyword": "STOP"}),
            doc("email.opened", c2, ago(1)),
            doc("activity.case_opened", c2, ago(0.5), {"case_id": "case-1"}),
            doc("chat.conversation_started", c2, ago(0.4), {"conversation_id": "k-3"}),
            doc("contact.created", self.erased, ago(30), {"email": "gone@example.com"}),
        ]

    def hidden(self, role: str) -> list[dict[str, Any]]:
        """The events of categories the role may not read."""
        read = ROLES[role].read
        return [d for d in self.docs if (c := category(d["type"])) is not None and c not in read]


@contextmanager
def served(settings: Settings) -> Iterator[tuple[TestClient, World]]:
    world = World()
    publish(settings, world.docs)
    project(settings)
    with client(settings) as http:
        erased = http.delete(f"/v1/contacts/{world.erased}", headers=auth("admin"))
        assert erased.status_code == 200, erased.text
        world.erasure = erased.json()["erasure_id"]
        yield http, world


# ------------------------------------------------------------------ what admin's answer becomes


def withheld_source(node: Any, hidden_types: set[str]) -> Any:
    """Every source of a hidden type reduced to its instant, anywhere in a document."""
    if isinstance(node, list):
        return [withheld_source(x, hidden_types) for x in node]
    if not isinstance(node, dict):
        return node
    if node.keys() == {"since", "event_id", "event_type", "note", "contact_id"} and (
        node["event_type"] in hidden_types
    ):
        hidden = {"event_id": None, "event_type": None, "note": "", "contact_id": None}
        return {"since": node["since"], **hidden}
    return {k: withheld_source(v, hidden_types) for k, v in node.items()}


def rounded(node: Any) -> Any:
    """Points to 5 decimals: sums taken in another order may differ in the last digit."""
    if isinstance(node, float):
        return round(node, 5)
    if isinstance(node, list):
        return [rounded(x) for x in node]
    if isinstance(node, dict):
        return {k: rounded(v) for k, v in node.items()}
    return node


def unnamed(text: str, hidden: list[dict[str, Any]]) -> str:
    for d in hidden:
        text = re.sub(
            rf"by {re.escape(d['type'])} event {d['event_id']}( \([^)]*\))?",
            f"by {HIDDEN_EVENT}",
            text,
        )
        text = text.replace(f"event {d['event_id']}", HIDDEN_EVENT)
    return text


@dataclass
class Walk:
    http: TestClient
    world: World
    role: str
    path: str
    params: dict[str, Any]

    @property
    def read(self) -> frozenset[str]:
        return ROLES[self.role].read

    @property
    def hidden(self) -> list[dict[str, Any]]:
        return self.world.hidden(self.role)

    def admin(self, path: str, **params: Any) -> Any:
        r = self.http.get(path, params=params, headers=auth("admin"))
        assert r.status_code == 200, r.text
        return r.json()

    def timeline(self, page: dict[str, Any]) -> dict[str, Any]:
        entries = [e for e in page["entries"] if e["permission"] in self.read]
        granted = sorted(self.read & set(CATEGORY.values()))
        return page | {"entries": entries, "total": len(entries), "categories": granted}

    def consent(self, state: dict[str, Any]) -> dict[str, Any]:
        types = {d["type"] for d in self.hidden}
        as_of = self.params.get("as_of")
        until = NOW if as_of is None else datetime.fromisoformat(as_of)
        withheld = [
            d
            for d in self.hidden
            if d["type"] in CONSENT_OPT_OUTS
            and d["subject"]["contact_id"] == state["contact_id"]
            and datetime.fromisoformat(d["occurred_at"]) <= until
        ]
        out: dict[str, Any] = withheld_source(state, types)
        return out | {"events": state["events"] - len(withheld)}

    def profile(self, profile: dict[str, Any]) -> dict[str, Any]:
        """Admin's profile without the personal fields the role's ``profile`` lacks, nor the
        registrations, cases and engagement of categories it may not read (named withheld)."""
        groups = {"names": ["first_name", "last_name"], "contact_points": ["email", "phone"]}
        groups["contact_points"].append("external_id")
        withheld = []
        fields = dict(profile["fields"])
        if profile["kind"] == "contact":
            for group, names in groups.items():
                if group not in ROLES[self.role].profile:
                    withheld += names
                    fields = {k: v for k, v in fields.items() if k not in names}
        out = profile | {"fields": fields}
        for part, needs in (("registrations", "event"), ("open_cases", "activity")):
            if profile["kind"] == "contact" and needs not in self.read:
                out[part] = []
                withheld.append(part)
        engagement = [e for e in profile["engagement"] if CATEGORY[e["channel"]] in self.read]
        withheld += [f"engagement.{c}" for c, k in CATEGORY.items() if k not in self.read]
        return out | {"engagement": engagement, "withheld": withheld}

    def decision(self, decision: dict[str, Any]) -> dict[str, Any]:
        checks = [c | {"reason": unnamed(c["reason"], self.hidden)} for c in decision["checks"]]
        reasons = [unnamed(r, self.hidden) for r in decision["reasons"]]
        return decision | {"checks": checks, "reasons": reasons}

    def score(self, score: dict[str, Any], explained: bool) -> dict[str, Any]:
        if score["status"] != "scored":
            return score
        params = {k: v for k, v in self.params.items() if k == "as_of"}
        full = self.admin(
            f"/v1/leads/{score['lead_id']}/scores/{score['model']}", explain=True, **params
        )
        e = full["explanation"]
        seen = [x for x in e["events"] if category(x["type"]) in self.read | {None}]
        out = score | {"counted": len(seen)}
        if not explained:
            return out
        ids = {x["event_id"] for x in e["events"]}
        aside = [
            x | {"reason": unnamed(x["reason"], self.hidden)}
            for x in e["set_aside"]
            if category(x["type"]) in self.read | {None}
        ]
        rules = [
            r
            | {
                "counted": sum(1 for x in seen if x["rule_id"] == r["rule_id"]),
                "set_aside": sum(1 for x in aside if x["rule_id"] == r["rule_id"]),
                "total": round(
                    math.fsum(x["decayed_points"] for x in seen if x["rule_id"] == r["rule_id"]),
                    6,
                ),
            }
            for r in e["rules"]
        ]
        points = round(math.fsum(x["decayed_points"] for x in e["events"] if x not in seen), 6)
        withheld = None
        if not self.read >= set(CATEGORIES):
            withheld = {"description": WITHHELD, "points": points}
        assert ids >= {x["event_id"] for x in seen}
        explanation = e | {"events": seen, "set_aside": aside, "rules": rules}
        return out | {"explanation": explanation | {"withheld": withheld}}

    def expected(self, schema: str, answer: dict[str, Any]) -> Any:
        if schema == "TimelinePageOut":
            return self.timeline(answer)
        if schema == "ConsentOut":
            return self.consent(answer)
        if schema == "DecisionOut":
            return self.decision(answer)
        if schema == "LeadScoresOut":
            return answer | {"scores": [self.score(s, False) for s in answer["scores"]]}
        if schema == "LeadScoreOut":
            return self.score(answer, answer["explanation"] is not None)
        if schema == "ProfileOut":
            return self.profile(answer)
        if schema in ("PositionsOut", "Receipt", "LookupOut", "SalesReadyLeadsOut"):
            # The queue names leads and whole scores (what sales-readiness is decided on),
            # no event of any category.
            return answer
        if schema == "ContactExportOut":
            # Only roles that read every category may export (admin, privacy): admin's export.
            assert self.read >= set(CATEGORIES), self.role
            return answer | {"role": self.role}
        pytest.fail(f"{self.path}: say how admin's {schema} is filtered for another role")


# ------------------------------------------------------------------ the routes and their values


def path_values(w: World) -> dict[str, list[str]]:
    return {
        "contact_id": [w.c1, w.c2],
        "lead_id": [w.lead, w.account_lead],
        "account_id": [w.account],
        "model": ["marketing-engagement", "sales-signals"],
        "erasure_id": [w.erasure],
    }


REQUIRED: dict[str, list[Any]] = {
    "channel": ["email", "sms"],
    "purpose": ["commercial"],
    "model": ["marketing-engagement", "sales-signals"],
    "sales_ready": [True],
}
"""Values of every required query parameter (a new one fails the walk until it is here)."""


def variants(w: World, optional: set[str]) -> list[dict[str, Any]]:
    """The optional parameters walked: each alone, and none."""
    values: dict[str, Any] = {
        "limit": 500,
        "as_of": w.past.isoformat(),
        "explain": True,
        "list": "news",
    }
    # A timeline's default window starts at the clock's now - 12 months: a `from` answers
    # the same on every read (and the page holds everything).
    base = {"limit": 500, "from": ago(60).isoformat()} if "limit" in optional else {}
    if "email" in optional:  # a lookup takes exactly one key
        base = {"email": "ADA@example.com"}
    return [base] + [base | {k: v} for k, v in values.items() if k in optional and k != "limit"]


def calls(http: TestClient, w: World) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(schema of the answer, path, query) of every GET route under /v1, with every value."""
    app = http.app
    assert isinstance(app, FastAPI)
    doc = app.openapi()
    for template, item in sorted(doc["paths"].items()):
        op = item.get("get")
        if op is None or not template.startswith("/v1/"):
            continue
        answer = op["responses"]["200"]["content"]["application/json"]["schema"]
        # A contact's profile, or the pointer of a merged-away one (none here).
        ref = answer["$ref"] if "$ref" in answer else answer["anyOf"][0]["$ref"]
        schema = ref.rsplit("/", 1)[-1]
        params = [p for p in op.get("parameters", []) if p["in"] in ("path", "query")]
        paths = [template]
        for p in (p for p in params if p["in"] == "path"):
            assert p["name"] in path_values(w), f"{template}: a value for {p['name']}"
            paths = [
                x.replace("{" + p["name"] + "}", v)
                for x in paths
                for v in path_values(w)[p["name"]]
            ]
        required = [p["name"] for p in params if p["in"] == "query" and p.get("required")]
        for name in required:
            assert name in REQUIRED, f"{template}: a value for the required {name}"
        optional = {p["name"] for p in params if p["in"] == "query" and not p.get("required")}
        queries: list[dict[str, Any]] = [{}]
        for name in required:
            queries = [q | {name: v} for q in queries for v in REQUIRED[name]]
        for path in paths:
            for q in queries:
                for extra in variants(w, optional):
                    yield schema, path, q | extra


def test_every_role_on_every_read_route_sees_admins_answer_filtered(
    view_settings: Settings,
) -> None:
    with served(view_settings) as (http, w):
        walked: set[str] = set()
        for schema, path, params in calls(http, w):
            admin = http.get(path, params=params, headers=auth("admin"))
            assert admin.status_code == 200, (path, params, admin.text)
            for role in ROLES:
                r = http.get(path, params=params, headers=auth(role))
                if r.status_code == 403:
                    continue
                assert r.status_code == 200, (role, path, params, r.text)
                walked.add(f"{role} {schema}")
                text = r.text
                for d in w.hidden(role):
                    assert d["event_id"] not in text, (role, path, params, d["type"])
                    assert d["type"] not in text, (role, path, params, d["type"])
                walk = Walk(http, w, role, path, params)
                expected, got = walk.expected(schema, admin.json()), r.json()
                if schema == "ContactExportOut":  # each export says when it was made
                    expected.pop("exported_at"), got.pop("exported_at")
                if schema == "ProfileOut" and "as_of" not in params:  # a window from now
                    expected.pop("window_start"), got.pop("window_start")
                assert rounded(got) == rounded(expected), (role, path, params)
        # Every role reached the routes its rights allow.
        assert {"marketing LeadScoreOut", "service ConsentOut", "sales TimelinePageOut"} <= walked
        assert "service DecisionOut" in walked and "publisher PositionsOut" in walked
        assert "privacy Receipt" in walked and "marketing Receipt" not in walked
        assert "privacy ContactExportOut" in walked
        assert {"service ProfileOut", "privacy ProfileOut", "marketing LookupOut"} <= walked


# ------------------------------------------------------------------ the defects, one by one


def test_marketing_counts_and_explanation_hold_only_its_categories(
    embedded_settings: Settings,
) -> None:
    with served(embedded_settings) as (http, w):
        url = f"/v1/leads/{w.lead}/scores/sales-signals"
        admin = http.get(url, params={"explain": True}, headers=auth("admin")).json()
        got = http.get(url, params={"explain": True}, headers=auth("marketing")).json()
        # Two chats, a call, a meeting the marketing role may not read; a form, a STOP it may.
        assert admin["counted"] == 6
        assert got["score"] == admin["score"]  # the whole score: sales-readiness is on it
        assert got["counted"] == len(got["explanation"]["events"]) == 2
        assert sum(r["counted"] for r in got["explanation"]["rules"]) == 2
        shown = sum(e["decayed_points"] for e in got["explanation"]["events"])
        assert got["explanation"]["withheld"] == {
            "description": WITHHELD,
            "points": pytest.approx(admin["score"] - shown),
        }
        listed = http.get(f"/v1/leads/{w.lead}/scores", headers=auth("marketing")).json()
        assert {s["model"]: s["counted"] for s in listed["scores"]}["sales-signals"] == 2
        for d in w.hidden("marketing"):
            assert d["event_id"] not in orjson.dumps([got, listed]).decode()


def test_service_sees_when_consent_changed_not_the_marketing_events_behind_it(
    embedded_settings: Settings,
) -> None:
    with served(embedded_settings) as (http, w):
        bounce = next(d for d in w.docs if d["type"] == "email.bounced")
        spam = next(d for d in w.docs if d["type"] == "email.spam_reported")
        for role in ("service", "admin"):
            state = http.get(f"/v1/contacts/{w.c1}/consent", headers=auth(role)).json()
            bulk = state["preferences"]["allow_bulk_email"]
            [bounced] = state["undeliverable"]
            decision = http.get(
                f"/v1/contacts/{w.c1}/consent/decision",
                params={"channel": "email", "purpose": "commercial"},
                headers=auth(role),
            ).json()
            text = orjson.dumps([state, decision]).decode()
            assert bulk["value"] is False and bounced["address"] == "ada@example.com"
            assert bulk["source"]["since"].startswith(spam["occurred_at"][:19])
            assert decision["may_send"] is False
            if role == "admin":
                assert bounced["source"]["event_id"] == bounce["event_id"]
                assert "mailbox unknown" in text and state["events"] == 7
                continue
            assert bounced["source"] == {
                "since": bounced["source"]["since"],
                "event_id": None,
                "event_type": None,
                "note": "",
                "contact_id": None,
            }
            assert "mailbox unknown" not in text and "STOP" not in text
            assert f"by {HIDDEN_EVENT}" in " ".join(decision["reasons"])
            assert (
                state["events"] == 3
            )  # the contact's creation, its level and list: not the 4 others
            for d in w.hidden("service"):
                assert d["event_id"] not in text and d["type"] not in text


def test_the_python_read_api_takes_the_same_permissions(embedded_settings: Settings) -> None:
    w = World()
    publish(embedded_settings, w.docs)
    project(embedded_settings)
    service, marketing = ROLES["service"].read, ROLES["marketing"].read
    hidden = w.hidden("service")
    with ReadAPI(embedded_settings) as api:
        everything = api.audit(w.c1)
        trail = api.audit(w.c1, permissions=service)
        assert [e.occurred_at for e in trail] == [e.occurred_at for e in everything]
        for full, seen in zip(everything, trail, strict=True):
            if full.type in CONSENT_OPT_OUTS:
                assert (seen.event_id, seen.type, seen.source) == (None, None, None)
                assert seen.changes == {k: v for k, v in full.changes.items() if k != "note"}
                assert HIDDEN_EVENT in seen.describe()
            else:
                assert seen == full
        for as_of in (None, w.past):
            state = api.consent(w.c1, as_of, permissions=service)
            assert all(s.event_type not in CONSENT_OPT_OUTS for s in state.sources())
            assert state.preferences == {
                k: v.seen_by(api.shown(service))
                for k, v in api.consent(w.c1, as_of).preferences.items()
            }
            decision = api.may_send(w.c1, "email", "commercial", as_of=as_of, permissions=service)
            assert decision.allowed is False
            words = " ".join(decision.reasons)
            assert not any(d["event_id"] in words for d in hidden), words
        [scores] = [
            s for s in api.lead_scores(w.lead, permissions=marketing) if s.model == "sales-signals"
        ]
        why = api.explain(w.lead, "sales-signals", permissions=marketing)
        assert scores.counted == len(why.events) == 2
        assert why.withheld is not None and why.withheld.points > 0
        assert api.explain(w.lead, "sales-signals").withheld is None
        assert api.shown(ROLES["admin"].read) is None
