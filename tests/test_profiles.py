"""Profile reads and contact lookups: each value with the event that set it, now and as of an
instant; a merged-away contact points at the survivor; unknown ids and bad lookups are named;
roles decide which personal fields, categories and lookup keys a caller gets; the lookup index
is blind (keyed hashes) and forgets erased people; the rows are a function of the set of
events. SQLite and PostgreSQL views."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interaction_store.api import create_app
from interaction_store.api.access import AccessConfig, hash_key
from interaction_store.api.services import Services
from interaction_store.codec import decode
from interaction_store.erasure import Eraser
from interaction_store.log import open_log
from interaction_store.privacy import open_key_store
from interaction_store.projection.base import view_checksum
from interaction_store.projection.profiles import Profiles
from interaction_store.read import ReadAPI
from interaction_store.settings import Settings
from interaction_store.views import open_store
from tests.api_support import access_toml, auth, project
from tests.factories import doc
from tests.test_api_read import publish
from tests.test_cli_views import istore

NOW = datetime.now(UTC).replace(microsecond=0)
WEB_ONLY = "test-key-for-web-only"


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@dataclass
class World:
    """Ada (A) with a profile of every part; D, a duplicate merged into A; E, another contact
    with A's new address; G, who is erased; account X; lead L of A and X; visitor V of A."""

    a: str = field(default_factory=lambda: str(uuid.uuid4()))
    d: str = field(default_factory=lambda: str(uuid.uuid4()))
    e: str = field(default_factory=lambda: str(uuid.uuid4()))
    g: str = field(default_factory=lambda: str(uuid.uuid4()))
    x: str = field(default_factory=lambda: str(uuid.uuid4()))
    lead: str = field(default_factory=lambda: str(uuid.uuid4()))
    visitor: str = field(default_factory=lambda: f"anon-{uuid.uuid4().hex[:12]}")
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        a, x = self.a, self.x
        member = {"account_id": x}
        case = "activity.case_opened"
        made = {
            "created": doc(
                "contact.created",
                a,
                ago(100),
                {
                    "first_name": "Ada",
                    "email": " Ada@Example.COM ",
                    "phone": "+33 (1) 23-45.67",
                    "external_id": "crm-42",
                },
                source="crm",
                correlation={"campaign_id": "spring", "journey_id": "j-1"},
            ),
            "updated": doc(
                "contact.updated", a, ago(50), {"last_name": "Lovelace", "email": "ada@new.example"}
            ),
            "account": doc(
                "account.created",
                at=ago(120),
                payload={"name": "Acme"},
                subject={"contact_id": a, "account_id": x},
            ),
            "joined": doc("contact.joined_account", a, ago(90), member),
            "left": doc("contact.left_account", a, ago(60), member),
            "rejoined": doc("contact.joined_account", a, ago(30), member),
            "lead": doc(
                "lead.created",
                at=ago(80),
                payload={"parent_contact_id": a, "parent_account_id": x, "topic": "widgets"},
                subject={"lead_id": self.lead},
                source="web-form",
                correlation={"campaign_id": "autumn"},
            ),
            "reg1": doc(
                "event.registered", a, ago(40), {"event_ref": "ev-1", "event_name": "Expo"}
            ),
            "cancel1": doc("event.registration_cancelled", a, ago(35), {"event_ref": "ev-1"}),
            "reg2": doc("event.registered", a, ago(20), {"event_ref": "ev-2", "event_name": "Day"}),
            "checkin2": doc("event.checked_in", a, ago(10), {"event_ref": "ev-2"}),
            "case1": doc(
                case, a, ago(15), {"case_id": "c-1", "title": "Broken", "priority": "high"}
            ),
            "case2": doc(case, a, ago(14), {"case_id": "c-2", "title": "Slow"}),
            "resolved2": doc("activity.case_resolved", a, ago(13), {"case_id": "c-2"}),
            "open1": doc("email.opened", a, ago(9)),
            "open2": doc("email.opened", a, ago(8)),
            "old_open": doc("email.opened", a, ago(400)),
            "view": doc("web.page_viewed", a, ago(7)),
            "chat": doc("chat.conversation_started", a, ago(6), {"conversation_id": "k"}),
            "link": doc(
                "identity.linked", a, ago(5), {"anonymous_id": self.visitor, "contact_id": a}
            ),
            "d": doc("contact.created", self.d, ago(70), {"email": "ADA@new.example"}),
            "merge": doc("contact.merged", a, ago(4), {"merged_contact_id": self.d}),
            "e": doc("contact.created", self.e, ago(3), {"email": "ada@NEW.example"}),
            "g": doc(
                "contact.created",
                self.g,
                ago(3),
                {"email": "gone@example.com", "phone": "555 0101"},
            ),
            "g_link": doc(
                "identity.linked", self.g, ago(2), {"anonymous_id": "anon-g", "contact_id": self.g}
            ),
        }
        self.docs = made

    def id(self, name: str) -> str:
        return str(self.docs[name]["event_id"])


def access() -> AccessConfig:
    """The default roles, and a role that reads web visits and names only."""
    extra = (
        '\n[roles.web_only]\nread = ["website"]\nprofile = ["names"]\nlookup = ["email"]\n'
        f'\n[keys.web-only]\nrole = "web_only"\nsha256 = "{hash_key(WEB_ONLY)}"\n'
    )
    return AccessConfig.from_toml(access_toml() + extra, "(test access)")


@contextmanager
def served(settings: Settings) -> Iterator[tuple[TestClient, World]]:
    world = World()
    publish(settings, list(world.docs.values()))
    project(settings)
    services = Services(settings, access())
    try:
        with TestClient(create_app(settings, services)) as http:
            yield http, world
    finally:
        services.close()


def get(http: TestClient, url: str, role: str = "admin", status: int = 200, **params: Any) -> Any:
    headers = {"Authorization": f"Bearer {WEB_ONLY}"} if role == "web_only" else auth(role)
    r = http.get(url, params=params, headers=headers)
    assert r.status_code == status, r.text
    return r.json()


def test_a_profile_gives_each_value_with_its_event(view_settings: Settings) -> None:
    with served(view_settings) as (http, w):
        body = get(http, f"/v1/contacts/{w.a}")
        f = body["fields"]
        assert f["first_name"] == {"value": "Ada", "source": _ref(w, "created")}
        assert f["last_name"]["value"] == "Lovelace"
        assert f["email"] == {"value": "ada@new.example", "source": _ref(w, "updated")}
        assert f["phone"]["source"]["event_id"] == w.id("created")
        assert f["external_id"]["value"] == "crm-42"
        assert body["origin"]["source"] == "crm"
        assert body["origin"]["campaign_id"] == "spring"
        assert body["merged_from"] == [w.d]
        periods = [
            (m["since"]["event_id"], (m["until"] or {}).get("event_id"))
            for m in body["memberships"]
        ]
        assert periods == [(w.id("joined"), w.id("left")), (w.id("rejoined"), None)]
        assert [(ld["lead_id"], ld["topic"], ld["status"]) for ld in body["leads"]] == [
            (w.lead, "widgets", "open")
        ]
        regs = {r["event_ref"]: (r["registered"], r["attended"]) for r in body["registrations"]}
        assert regs == {"ev-1": (False, False), "ev-2": (True, True)}
        assert [(c["case_id"], c["priority"]) for c in body["open_cases"]] == [("c-1", "high")]
        counts = {e["channel"]: (e["count"], e["latest"]["event_id"]) for e in body["engagement"]}
        # The 400-day-old open is outside the 365-day window.
        assert counts == {
            "email": (2, w.id("open2")),
            "web": (1, w.id("view")),
            "chat": (1, w.id("chat")),
            "event": (4, w.id("checkin2")),
            "activity": (3, w.id("resolved2")),
        }
        assert body["withheld"] == []

        account = get(http, f"/v1/accounts/{w.x}")
        assert account["fields"]["name"]["value"] == "Acme"
        assert [ld["lead_id"] for ld in account["leads"]] == [w.lead]
        assert len(account["memberships"]) == 2
        lead = get(http, f"/v1/leads/{w.lead}")
        assert lead["fields"]["parent_account_id"]["value"] == w.x
        assert lead["fields"]["status"]["source"]["event_id"] == w.id("lead")
        assert lead["origin"]["campaign_id"] == "autumn"

        with ReadAPI(view_settings) as api:  # the library says the same
            profile = api.profile("contact", w.a)
            assert profile.fields["email"].value == "ada@new.example"
            assert len(profile.engagement) == 5


def _ref(w: World, name: str) -> dict[str, Any]:
    d = w.docs[name]
    at = datetime.fromisoformat(d["occurred_at"]).astimezone(UTC)
    return {
        "event_id": w.id(name),
        "event_type": d["type"],
        "occurred_at": at.isoformat().replace("+00:00", "Z"),
    }


def test_as_of_answers_as_things_stood(view_settings: Settings) -> None:
    with served(view_settings) as (http, w):
        then = get(http, f"/v1/contacts/{w.a}", as_of=ago(55).isoformat())
        assert then["fields"]["email"]["value"] == " Ada@Example.COM ".strip()
        assert then["fields"]["last_name"] == {"value": None, "source": None}
        assert [m["until"] is None for m in then["memberships"]] == [False]
        assert then["registrations"] == [] and then["merged_from"] == []
        counts = {e["channel"]: e["count"] for e in then["engagement"]}
        assert counts == {"email": 1}  # the old open is within the window from then
        before = get(http, f"/v1/contacts/{w.a}", as_of=ago(200).isoformat())
        assert before["events"] == 0 and before["fields"]["email"]["value"] is None
        # D was not merged yet 10 days ago: its own profile then.
        d = get(http, f"/v1/contacts/{w.d}", as_of=ago(10).isoformat())
        assert d["fields"]["email"]["value"] == "ADA@new.example"


def test_a_merged_away_contact_points_at_the_survivor(view_settings: Settings) -> None:
    with served(view_settings) as (http, w):
        body = get(http, f"/v1/contacts/{w.d}")
        assert body == {
            "kind": "contact",
            "id": w.d,
            "merged_into": w.a,
            "location": f"/v1/contacts/{w.a}",
            "source": _ref(w, "merge"),
        }


def test_unknown_ids_and_bad_lookups_are_named(view_settings: Settings) -> None:
    with served(view_settings) as (http, _):
        nobody = str(uuid.uuid4())
        for kind in ("contact", "account", "lead"):
            body = get(http, f"/v1/{kind}s/{nobody}", status=404)
            assert body[f"{kind}_id"] == nobody and kind in body["detail"]
        assert "not-a-uuid" in str(get(http, "/v1/contacts/not-a-uuid", status=422))
        none = get(http, "/v1/contacts", status=422)
        assert "exactly one" in none["detail"]
        two = get(http, "/v1/contacts", status=422, email="a@b.c", phone="123")
        assert "a@b.c" in two["detail"] and "123" in two["detail"]
        bad = get(http, "/v1/contacts", status=422, email="a@b.c", cursor="zz")
        assert bad["errors"][0]["value"] == "zz"
        assert (
            get(http, "/v1/contacts", status=422, email="   ")["errors"][0]["parameter"] == "email"
        )


def test_roles_decide_fields_categories_and_lookup_keys(view_settings: Settings) -> None:
    with served(view_settings) as (http, w):
        body = get(http, f"/v1/contacts/{w.a}", role="web_only")
        assert set(body["fields"]) == {"first_name", "last_name", "is_child", "guardian_contact_id"}
        assert {"email", "phone", "external_id", "registrations", "open_cases"} <= set(
            body["withheld"]
        )
        assert body["registrations"] == [] and body["open_cases"] == []
        assert [e["channel"] for e in body["engagement"]] == ["web"]
        service = get(http, f"/v1/contacts/{w.a}", role="service")
        assert {e["channel"] for e in service["engagement"]} == {"chat", "activity"}
        assert service["registrations"] == [] and len(service["open_cases"]) == 1
        get(http, f"/v1/contacts/{w.a}", role="publisher", status=403)
        denied = get(http, "/v1/contacts", role="marketing", status=403, phone="555")
        assert "phone" in denied["detail"]
        get(http, "/v1/contacts", role="web_only", email="gone@example.com")
        get(http, "/v1/contacts", role="web_only", status=403, anonymous_id="anon-g")


def test_lookups_by_each_key_with_paging(view_settings: Settings) -> None:
    with served(view_settings) as (http, w):

        def found(**query: Any) -> list[str]:
            return [c["contact_id"] for c in get(http, "/v1/contacts", **query)["contacts"]]

        assert found(email="  ADA@new.EXAMPLE") == sorted([w.a, w.d, w.e])
        assert found(email="ada@example.com") == []  # A's old address: no longer hers
        assert found(phone="+33 1 2345 67") == [w.a]
        assert found(phone="+33(1)23.45-67") == [w.a]
        assert found(external_id=" crm-42 ") == [w.a]
        assert found(anonymous_id=w.visitor) == [w.a]
        pages, cursor = [], None
        while True:
            params = {"email": "ada@new.example", "limit": 2} | (
                {"cursor": cursor} if cursor else {}
            )
            body = get(http, "/v1/contacts", **params)
            pages.append([c["contact_id"] for c in body["contacts"]])
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert pages == [sorted([w.a, w.d, w.e])[:2], sorted([w.a, w.d, w.e])[2:]]
        d = next(
            c
            for c in get(http, "/v1/contacts", email="ada@new.example")["contacts"]
            if c["contact_id"] == w.d
        )
        assert d["merged_into"] == w.a and d["location"] == f"/v1/contacts/{w.a}"
        with open_store(view_settings) as store, store.reading() as c:
            c.execute("SELECT lookup_key, digest, contact_id FROM profiles__lookup")
            rows = c.fetchall()
        text = repr(rows)
        assert rows and "ada@" not in text and "crm-42" not in text and w.visitor not in text


def test_an_erased_person_can_no_longer_be_found(view_settings: Settings) -> None:
    with served(view_settings) as (http, w):
        assert len(get(http, "/v1/contacts", email="gone@example.com")["contacts"]) == 1
        with (
            open_log(view_settings) as log,
            open_store(view_settings) as store,
            open_key_store(view_settings) as keys,
        ):
            Eraser(log, store, keys).erase(w.g, "tests")
        project(view_settings)
        for query in (
            {"email": "gone@example.com"},
            {"phone": "5550101"},
            {"anonymous_id": "anon-g"},
        ):
            assert get(http, "/v1/contacts", **query)["contacts"] == [], query
        assert len(get(http, "/v1/contacts", email="ada@new.example")["contacts"]) == 3
        # A visitor linked to the erased contact after the erasure is not found either.
        publish(
            view_settings,
            [doc("identity.linked", w.g, ago(1), {"anonymous_id": "anon-g2", "contact_id": w.g})],
        )
        project(view_settings)
        assert get(http, "/v1/contacts", anonymous_id="anon-g2")["contacts"] == []


def test_the_rows_are_a_function_of_the_set_of_events(view_settings: Settings) -> None:
    """Shuffled orders, batch splits and redeliveries, with the erasure among them, give the
    same rows (each fold into a view of its own in the same database)."""
    w = World()
    erased = doc("contact.erased", w.g, ago(1), {"request_id": str(uuid.uuid4())})
    events = [decode(orjson.dumps(d)) for d in [*w.docs.values(), erased]]
    sums = set()
    with open_store(view_settings) as store:
        for n in range(4):
            order = events + random.Random(n).sample(events, n * 3)  # some delivered twice
            random.Random(n).shuffle(order)
            view = Profiles.from_settings(view_settings, f"profiles_order{n}")
            store.ensure(view.schema(store.dialect))
            size = 1 + n * 3
            for i in range(0, len(order), size):
                with store.transaction() as c:
                    view.apply(c, [e for e in order[i : i + size] if view.wants(e)])
            with store.reading() as c:
                c.execute(
                    f"SELECT COUNT(*) FROM {view.table('lookup')} WHERE contact_id = %s", (w.g,)
                )
                assert c.fetchone()[0] == 0
            sums.add(view_checksum(store, view))
    assert len(sums) == 1


def test_any_lookup_value_is_answered_never_a_500(embedded_settings: Settings) -> None:
    """Whatever text comes in a lookup key (or a cursor): a page, or a 422 naming it."""
    with served(embedded_settings) as (http, _):

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            key=st.sampled_from(["email", "phone", "external_id", "anonymous_id"]),
            value=st.text(max_size=400),
            cursor=st.none() | st.text(max_size=40),
        )
        def lookup(key: str, value: str, cursor: str | None) -> None:
            params = {key: value} | ({} if cursor is None else {"cursor": cursor})
            r = http.get("/v1/contacts", params=params, headers=auth("admin"))
            assert r.status_code in (200, 422), r.text
            if r.status_code == 422:
                assert r.json()["errors"], r.text

        lookup()


def test_istore_show_prints_the_profile_with_its_events(embedded_settings: Settings) -> None:
    w = World()
    publish(embedded_settings, list(w.docs.values()))
    project(embedded_settings)
    shown = istore(embedded_settings, "show", "contact", w.a).stdout
    assert f"Profile of contact {w.a}:" in shown
    assert f"  email = ada@new.example  (contact.updated {w.id('updated')} at" in shown
    assert (
        "  open case c-1 (high, web)" in shown and "event ev-2 Day: registered, attended" in shown
    )
    then = istore(embedded_settings, "show", "account", w.x, "--as-of", ago(70).isoformat())
    assert f"account {w.x} / contact {w.a} since" in then.stdout and "(member)" in then.stdout
    merged = istore(embedded_settings, "show", "contact", w.d).stdout
    assert f"was merged into {w.a}" in merged
    lead = istore(embedded_settings, "show", "lead", w.lead).stdout
    assert "  topic = widgets" in lead
    nobody = str(uuid.uuid4())
    assert (
        f"account {nobody} is unknown"
        in istore(embedded_settings, "show", "account", nobody, code=1).stderr
    )
