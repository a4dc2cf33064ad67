"""Read-your-writes over HTTP: the ingest API's consistency token makes a read wait until the
views it reads have applied the write, or answer 504 saying how far behind they are; a token
that is not one of this log's is a 422 naming the parameter. SQLite and PostgreSQL views."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi.testclient import TestClient

from interaction_store.api import consistency
from interaction_store.ingest import Ingest
from interaction_store.log import open_log
from interaction_store.settings import Settings
from tests.api_support import auth, client, project
from tests.factories import doc

RECENT = datetime.now(UTC) - timedelta(hours=1)


def post(http: TestClient, *docs: dict[str, Any]) -> str:
    """Publish over HTTP; the consistency token of the answer (body and header agree)."""
    r = http.post(
        "/v1/events",
        content=orjson.dumps(list(docs)),
        headers={**auth("publisher"), "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == len(docs), body
    token: str = body["consistency_token"]
    assert r.headers["X-Consistency-Token"] == token
    return token


def token_for(body: dict[str, int]) -> str:
    return "v1." + base64.urlsafe_b64encode(orjson.dumps(body)).decode().rstrip("=")


def test_a_read_with_the_token_waits_for_the_write(view_settings: Settings) -> None:
    settings = view_settings.model_copy(update={"consistency_timeout": 30.0})
    contact = str(uuid.uuid4())
    with client(settings) as http:
        post(http, doc("contact.created", contact, RECENT, {"first_name": "Ada"}))
        project(settings)
        url = f"/v1/contacts/{contact}/timeline"
        assert http.get(url, headers=auth("admin")).json()["total"] == 0

        visit = doc("web.page_viewed", contact, RECENT + timedelta(minutes=5))
        token = post(http, visit)
        [partition] = consistency.parse(token)

        # Not projected yet: without the token a read answers what the view has ...
        stale = http.get(url, headers=auth("admin"))
        assert stale.status_code == 200 and stale.json()["total"] == 0
        # ... with it, the read waits (briefly here) and says how far behind the views are.
        for headers, params in (
            (auth("admin"), {"consistency": token, "wait": "0.05"}),
            ({**auth("admin"), "X-Consistency-Token": token}, {"wait": "0"}),
        ):
            late = http.get(url, params=params, headers=headers)
            assert late.status_code == 504, late.text
            assert late.headers["content-type"] == "application/problem+json"
            problem = late.json()
            where = f"{partition[0]}/{partition[1]}"
            assert problem["behind"] == {where: 1} and problem["events"] == 1
            assert problem["view"] in {"timeline", "profiles", "consent"}
            assert f"1 event(s) behind the token ({where}: 1)" in problem["detail"]

        # The projection runs beside a read that waits for it: the read sees the visit.
        worker = threading.Thread(target=project, args=(settings,))
        worker.start()
        try:
            fresh = http.get(url, params={"consistency": token}, headers=auth("admin"))
        finally:
            worker.join()
        assert fresh.status_code == 200, fresh.text
        assert [e["event_id"] for e in fresh.json()["entries"]] == [visit["event_id"]]


def test_every_read_route_takes_the_token(view_settings: Settings) -> None:
    contact, lead = str(uuid.uuid4()), str(uuid.uuid4())
    with client(view_settings) as http:
        token = post(
            http,
            doc("contact.created", contact, RECENT),
            doc("consent.level_changed", contact, RECENT, {"level": "marketing"}),
            doc(
                "lead.created",
                at=RECENT,
                payload={"parent_contact_id": contact},
                subject={"lead_id": lead},
            ),
            doc("activity.phone_call", contact, RECENT, {"direction": "inbound"}),
        )
        decision = {"channel": "email", "purpose": "transactional"}
        reads: list[tuple[str, dict[str, Any]]] = [
            (f"/v1/contacts/{contact}/timeline", {}),
            (f"/v1/leads/{lead}/timeline", {}),
            (f"/v1/contacts/{contact}/consent", {}),
            (f"/v1/contacts/{contact}/consent/decision", decision),
            (f"/v1/leads/{lead}/scores", {}),
            (f"/v1/leads/{lead}/scores/sales-signals", {"explain": True}),
        ]
        project(view_settings)
        # An older token of the same log: already applied, so no wait.
        for path, params in reads:
            r = http.get(path, params={**params, "consistency": token}, headers=auth("admin"))
            assert r.status_code == 200, (path, r.text)
        consent = http.get(reads[2][0], params={"consistency": token}, headers=auth("admin"))
        assert consent.json()["level"]["value"] == "marketing"

        # A write not projected yet holds back every route that reads its views.
        newer = post(http, doc("activity.phone_call", contact, RECENT, {"direction": "inbound"}))
        for path, params in reads:
            late = {**params, "consistency": newer, "wait": 0}
            r = http.get(path, params=late, headers=auth("admin"))
            assert r.status_code == 504, (path, r.text)
            assert sum(r.json()["behind"].values()) == 1


def test_the_wait_is_capped_by_the_settings(embedded_settings: Settings) -> None:
    settings = embedded_settings.model_copy(update={"consistency_timeout": 0.1})
    contact = str(uuid.uuid4())
    with client(settings) as http:
        post(http, doc("contact.created", contact, RECENT))
        project(settings)
        token = post(http, doc("web.page_viewed", contact, RECENT))
        # Asking for a minute gets the server's cap, then a 504 (not a minute's wait).
        r = http.get(
            f"/v1/contacts/{contact}/timeline",
            params={"consistency": token, "wait": 60},
            headers=auth("admin"),
        )
        assert r.status_code == 504 and "0.1 s" in r.json()["detail"], r.text


def test_a_token_from_the_python_ingest_works_too(embedded_settings: Settings) -> None:
    contact = str(uuid.uuid4())
    with open_log(embedded_settings) as log:
        outcomes = Ingest(log, parallel=False).publish_documents(
            [orjson.dumps(doc("contact.created", contact, RECENT))], "test"
        )
    token = consistency.token_of(o.position for o in outcomes if o.position is not None)
    assert token is not None
    with client(embedded_settings) as http:
        project(embedded_settings)
        r = http.get(
            f"/v1/contacts/{contact}/consent",
            headers={**auth("marketing"), "X-Consistency-Token": token},
        )
        assert r.status_code == 200 and r.json()["contact_id"] == contact


def test_a_token_that_is_not_this_logs_is_422(embedded_settings: Settings) -> None:
    contact = str(uuid.uuid4())
    with client(embedded_settings) as http:
        token = post(http, doc("contact.created", contact, RECENT))
        project(embedded_settings)
        [((topic, partition), offset)] = consistency.parse(token).items()
        url = f"/v1/contacts/{contact}/timeline"
        cases = [
            ("consistency", "garbage", "is not one this API issued"),
            ("consistency", "v1.!!!", "not valid base64url JSON"),
            ("consistency", token_for({}), "holds no positions"),
            ("consistency", token_for({f"{topic}/x": 1}), "bad position"),
            ("consistency", token_for({f"{topic}/\u00b2": 1}), "bad position"),
            ("consistency", token_for({f"{topic}/0": -1}), "bad position"),
            ("consistency", token_for({"no.such.topic/0": 0}), "does not have"),
            ("consistency", token_for({f"{topic}/{partition + 50}": 0}), "does not have"),
            ("consistency", token_for({f"{topic}/{partition}": offset + 1}), "holds only"),
            ("X-Consistency-Token", "garbage", "is not one this API issued"),
            ("X-Consistency-Token", token_for({f"{topic}/{partition}": 10**6}), "holds only"),
        ]
        for name, value, says in cases:
            if name == "consistency":
                r = http.get(url, params={name: value}, headers=auth("admin"))
            else:
                r = http.get(url, headers={**auth("admin"), name: value})
            assert r.status_code == 422, (name, value, r.text)
            problem = r.json()
            assert problem["errors"][0]["parameter"] == name, problem
            assert says in problem["detail"] and repr(name) in problem["detail"], problem
        # The token itself is fine.
        ok = http.get(url, params={"consistency": token}, headers=auth("admin"))
        assert ok.status_code == 200, ok.text


def test_reads_waiting_on_a_token_hold_no_server_thread(embedded_settings: Settings) -> None:
    # Two threads for sync handlers: were the waits in them, three waiting reads would hold
    # both, and a plain read would queue behind them until they gave up.
    import anyio.to_thread

    settings = embedded_settings.model_copy(update={"consistency_timeout": 30.0})
    contact = str(uuid.uuid4())
    with client(settings) as http:
        assert http.portal is not None
        http.portal.call(
            lambda: setattr(anyio.to_thread.current_default_thread_limiter(), "total_tokens", 2)
        )
        post(http, doc("contact.created", contact, RECENT))
        project(settings)
        token = post(http, doc("web.page_viewed", contact, RECENT + timedelta(minutes=1)))
        url = f"/v1/contacts/{contact}/timeline"
        finished: list[int] = []

        def waiting_read() -> None:
            r = http.get(url, params={"consistency": token, "wait": 5}, headers=auth("admin"))
            finished.append(r.status_code)

        waiting = [threading.Thread(target=waiting_read) for _ in range(3)]
        for t in waiting:
            t.start()
        time.sleep(1)  # let them reach the server first (they wait 5 s)
        plain = http.get(url, headers=auth("admin"))
        assert plain.status_code == 200
        assert finished == [], "the plain read answered while the token reads still waited"
        for t in waiting:
            t.join(30)
        assert finished == [504, 504, 504]
