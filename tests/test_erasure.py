"""Erasure: after ``contact.erased`` no view holds the person's name, e-mail, phone or message
texts (the SQLite file's bytes and PostgreSQL's tables are searched), another contact is
untouched, a replay and any arrival order give the same views, consent does not come back
(suppression, under a new contact id too), and the HTTP route's roles, 404, 422 and 200."""

from __future__ import annotations

import base64
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import settings as settings_of_hypothesis
from hypothesis import strategies as st
from pydantic import SecretStr

from interaction_store.codec import decode
from interaction_store.erasure import Eraser, UnknownSubject, _about
from interaction_store.ingest import Ingest
from interaction_store.log import open_log
from interaction_store.privacy import open_key_store
from interaction_store.privacy.sealing import opener_of, sealer_of
from interaction_store.projection import ProjectionRunner
from interaction_store.projection.base import view_checksum
from interaction_store.projection.registry import ViewRegistry, build
from interaction_store.projection.runner import DEAD_LETTERS, dead_letters_ddl
from interaction_store.projection.timeline import Timeline
from interaction_store.read import ReadAPI
from interaction_store.settings import Settings
from interaction_store.views import open_store
from tests.api_support import auth, client
from tests.api_support import project as project_all
from tests.factories import doc


@pytest.fixture
def settings(view_settings: Settings) -> Settings:
    key = base64.b64encode(os.urandom(32)).decode()
    return view_settings.model_copy(update={"master_key": SecretStr(key)})


@dataclass
class Person:
    """A contact with every kind of personal data, its visitor id and a lead of its own."""

    tag: str
    contact: str = field(default_factory=lambda: str(uuid.uuid4()))
    lead: str = field(default_factory=lambda: str(uuid.uuid4()))
    visitor: str = field(default_factory=lambda: f"cookie-{uuid.uuid4().hex}")

    @property
    def secrets(self) -> list[str]:
        t = self.tag
        return [
            f"{t}.person@example.org",
            f"+3361{abs(hash(t)) % 10**7:07d}",
            f"Firstname{t}",
            f"Lastname{t}",
            f"Subject line for {t}",
            f"SMS words for {t}",
            f"Chat words of {t}",
            f"Push body for {t}",
            f"Form answer of {t}",
        ]

    def docs(self) -> list[dict[str, Any]]:
        email, phone, first, last, subject, sms, chat, push, form = self.secrets
        c = self.contact
        person = {"first_name": first, "last_name": last, "email": email, "phone": phone}
        return [
            doc("contact.created", c, 0, person),
            doc(
                "consent.contact_point_changed",
                c,
                1,
                {
                    "channel": "email",
                    "contact_point": email,
                    "purpose": "commercial",
                    "status": "opted_in",
                },
            ),
            doc("consent.preferences_changed", c, 1, {"allow_bulk_email": True}),
            doc("consent.level_changed", c, 1, {"level": "marketing"}),
            doc(
                "email.sent",
                c,
                2,
                {"subject": subject, "preview_text": subject, "to_address": email},
                correlation={"message_id": f"m-{c}"},
            ),
            doc(
                "email.bounced",
                c,
                3,
                {"bounce_type": "soft", "reason": f"full: {email}"},
                correlation={"message_id": f"m-{c}"},
            ),
            doc("sms.sent", c, 4, {"text": sms, "to_number": phone}),
            doc("push.sent", c, 4, {"title": "Hello", "body": push}),
            doc("chat.message", c, 5, {"conversation_id": "k", "sender": "customer", "text": chat}),
            doc("form.submitted", c, 6, {"form_id": "f", "fields": {"note": form}}),
            doc("web.page_viewed", c, 6, {"url": "https://example.com/pricing"}),
            doc(
                "identity.linked",
                c,
                7,
                {"anonymous_id": self.visitor, "contact_id": c},
            ),
            doc(
                "web.page_viewed",
                at=7,
                payload={"url": "https://example.com/a"},
                subject={"anonymous_id": self.visitor},
            ),
            doc(
                "lead.created",
                at=8,
                payload={"parent_contact_id": c, "topic": "t"},
                subject={"lead_id": self.lead},
            ),
            doc(
                "activity.phone_call",
                at=9,
                payload={"direction": "inbound"},
                subject={"lead_id": self.lead, "contact_id": c},
            ),
        ]


def publish(settings: Settings, docs: list[dict[str, Any]]) -> list[Any]:
    with open_log(settings) as log:
        sealer = sealer_of(settings)
        try:
            ingest = Ingest(log, parallel=False, sealer=sealer)
            return ingest.publish_documents([orjson.dumps(d) for d in docs], "test_erasure")
        finally:
            sealer.keys.close()


def erase(settings: Settings, contact: str) -> tuple[dict[str, Any], bool]:
    with open_log(settings) as log, open_store(settings) as store, open_key_store(settings) as k:
        return Eraser(log, store, k).erase(contact, "tests")


def checksums(settings: Settings, suffix: str = "") -> dict[str, str]:
    """Each live view's checksum, or (``suffix``) of a replay of every kind beside them."""
    with open_log(settings) as log, open_store(settings) as store:
        infos = ViewRegistry(store).ensure_defaults(settings)
        views = [build(i, settings) for i in infos]
        if suffix:
            views = [build(replace(i, instance=f"{i.kind}{suffix}"), settings) for i in infos]
            ProjectionRunner(log, store, views, opener=opener_of(settings)).run(follow=False)
        return {v.kind: view_checksum(store, v) for v in views}


def stored_text(settings: Settings, store_path: Any = None) -> bytes:
    """Everything the view database holds: the SQLite files' bytes, or every PostgreSQL
    table's rows as text."""
    if settings.postgres_dsn is None:
        folder = settings.data_dir
        return b"".join(p.read_bytes() for p in folder.glob("views.sqlite*"))
    import psycopg

    out = []
    with psycopg.connect(settings.postgres_dsn.get_secret_value()) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        for (table,) in tables:
            rows = conn.execute(f"SELECT t::text FROM {table} t").fetchall()
            out += [r[0] for r in rows]
    return "\n".join(out).encode()


def test_erasing_forgets_the_person_in_every_view_and_keeps_the_others(
    settings: Settings,
) -> None:
    gone, kept = Person("Gone"), Person("Kept")
    publish(settings, gone.docs() + kept.docs())
    project_all(settings)
    before = stored_text(settings)
    # The views copy these (chat and form texts are in no view's rows: the log only).
    held = [*gone.secrets[:6], gone.secrets[7], *kept.secrets[:6]]
    assert [s for s in held if s.encode() not in before] == []
    with ReadAPI(settings) as api:
        counted = api.timeline(contact_id=gone.contact, limit=500, since=None).total

    receipt, new = erase(settings, gone.contact)
    assert new and receipt["erased"] == {
        "contacts": [gone.contact],
        "leads": [gone.lead],
        "anonymous_ids": 1,
    }
    assert receipt["suppressed"]["hashes"] == 2  # the e-mail address and the phone number
    assert any("clear" in p for p in receipt["pending"])
    project_all(settings)

    after = stored_text(settings)
    for secret in gone.secrets:
        assert secret.encode() not in after, secret
    for secret in kept.secrets[:6]:
        assert secret.encode() in after, secret
    with ReadAPI(settings) as api:
        page = api.timeline(contact_id=gone.contact, limit=500)
        assert page.total == counted  # still countable
        assert all(e.preview == {"erased": True} for e in page.entries)
        timeline = api.view("timeline")
        assert isinstance(timeline, Timeline)
        visitor = timeline.query(api.store, anonymous_id=gone.visitor, limit=500)
        assert visitor.total == 1 and visitor.entries[0].preview == {"erased": True}
        lead_page = api.timeline(lead_id=gone.lead, limit=500)
        assert lead_page.total == 1 and lead_page.entries[0].preview == {"erased": True}
        other = api.timeline(contact_id=kept.contact, limit=500)
        assert all(e.preview != {"erased": True} for e in other.entries)
        assert api.lead_scores(gone.lead)[0].status == api.lead_scores(kept.lead)[0].status

    # A replay from offset 0 gives the same views.
    live = checksums(settings)
    assert checksums(settings, "_r") == live


def test_the_views_are_the_same_whatever_order_the_erasure_arrives_in(
    settings: Settings,
) -> None:
    gone, kept = Person("Gone"), Person("Kept")
    publish(settings, gone.docs() + kept.docs())
    project_all(settings)
    erase(settings, gone.contact)
    project_all(settings)
    live = checksums(settings)
    with open_log(settings) as log, open_store(settings) as store:
        # With their positions: the subjects index keeps them.
        records = [
            (r.position, decode(r.value))
            for t in log.catalog.event_topics
            for p in log.partitions(t.name)
            for r in log.read(t.name, p, 0)
        ]
        # Opened as the worker opens them (the erased contact's fields no longer open).
        opened = opener_of(settings).open_events([e for _, e in records])
        records = [(p, e) for (p, _), e in zip(records, opened, strict=True)]
        erasure = [(p, e) for p, e in records if e.type == "contact.erased"]
        assert len(erasure) == 1
        rest = [(p, e) for p, e in records if e.type != "contact.erased"]
        infos = ViewRegistry(store).ensure_defaults(settings)
        rng = random.Random(7)
        for attempt, order in enumerate(
            [erasure + rest, rest[:5] + erasure + rest[5:], rng.sample(records, len(records))]
        ):
            views = [build(replace(i, instance=f"{i.kind}_o{attempt}"), settings) for i in infos]
            store.ensure([s for v in views for s in v.schema(store.dialect)])
            for start in range(0, len(order), 4):
                with store.transaction() as c:
                    for v in views:
                        batch = order[start : start + 4]
                        v.apply_records(c, [(p, e) for p, e in batch if v.wants(e)])
            assert {v.kind: view_checksum(store, v) for v in views} == live, attempt


def test_consent_never_comes_back_and_later_events_drop_personal_fields(
    settings: Settings,
) -> None:
    gone = Person("Gone")
    publish(settings, gone.docs())
    project_all(settings)
    with ReadAPI(settings) as api:
        assert api.may_send(gone.contact, "email", "commercial").allowed is True
    erase(settings, gone.contact)
    email = gone.secrets[0]

    # The same address, spelled otherwise, under a new contact id, opted in again.
    newcomer = str(uuid.uuid4())
    later = publish(
        settings,
        [
            doc("contact.created", newcomer, 20, {"email": f" {email.upper()} "}),
            doc("consent.preferences_changed", newcomer, 20, {"allow_bulk_email": True}),
            doc("consent.level_changed", newcomer, 20, {"level": "marketing"}),
            doc("contact.updated", gone.contact, 21, {"email": email, "first_name": "Again"}),
        ],
    )
    assert [o.personal_data_dropped for o in later] == [False, False, False, True]
    project_all(settings)
    with ReadAPI(settings) as api:
        erased = api.may_send(gone.contact, "email", "commercial")
        assert not erased.allowed and "was erased" in erased.reasons[-1]
        decision = api.may_send(newcomer, "email", "commercial")
        assert not decision.allowed
        assert any("suppression list" in r for r in decision.reasons)
        assert email not in " ".join(decision.reasons).casefold()
        assert api.may_send(newcomer, "email", "commercial", contact_point="x@example.net").allowed
    assert b"Again" not in stored_text(settings)


def test_dead_letters_of_the_person_are_removed(settings: Settings) -> None:
    gone, kept = Person("Gone"), Person("Kept")
    publish(settings, gone.docs() + kept.docs())
    project_all(settings)
    with open_store(settings) as store:
        store.ensure([dead_letters_ddl(store.dialect)])
        with store.transaction() as c:
            for person in (gone, kept):
                d = person.docs()[0]
                c.execute(
                    f"INSERT INTO {DEAD_LETTERS} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    ("profiles", "t", 0, 1, d["event_id"], "boom", orjson.dumps(d), 3, "x", None),
                )
    receipt, _ = erase(settings, gone.contact)
    assert receipt["destroyed"][1]["rows"] == 1
    with open_store(settings) as store, store.reading() as c:
        c.execute(f"SELECT event_id FROM {DEAD_LETTERS}")
        assert len(c.fetchall()) == 1  # the other contact's
    project_all(settings)
    assert gone.secrets[0].encode() not in stored_text(settings)


def test_an_erasure_while_a_worker_runs(settings: Settings) -> None:
    gone, kept = Person("Gone"), Person("Kept")
    publish(settings, gone.docs() + kept.docs())
    with open_log(settings) as log, open_store(settings) as store:
        infos = ViewRegistry(store).ensure_defaults(settings)
        runner = ProjectionRunner(
            log,
            store,
            [build(i, settings) for i in infos],
            max_wait=0.1,
            opener=opener_of(settings),
        )
        worker = threading.Thread(target=runner.run)
        worker.start()
        try:
            deadline = time.monotonic() + 30
            while sum(runner.lag().values()) and time.monotonic() < deadline:
                time.sleep(0.1)
            erase(settings, gone.contact)
            publish(settings, [doc("sms.sent", gone.contact, 30, {"text": "late words"})])
            while time.monotonic() < deadline:
                if not sum(runner.lag().values()) and runner.stats.applied > 0:
                    with store.reading() as c:
                        c.execute("SELECT COUNT(*) FROM timeline__erased")
                        if c.fetchone()[0]:
                            break
                time.sleep(0.1)
        finally:
            runner.stop()
            worker.join(30)
    after = stored_text(settings)
    for secret in [*gone.secrets, "late words"]:
        assert secret.encode() not in after, secret
    assert kept.secrets[0].encode() in after


# --------------------------------------------------------------------------- HTTP


@pytest.fixture
def http(settings: Settings) -> Iterator[tuple[Any, Person, Settings]]:
    gone = Person("Gone")
    publish(settings, gone.docs())
    project_all(settings)
    with client(settings) as c:
        yield c, gone, settings


def test_the_erasure_routes(http: tuple[Any, Person, Settings]) -> None:
    c, gone, _ = http
    url = f"/v1/contacts/{gone.contact}"
    assert c.delete(url, headers=auth("marketing")).status_code == 403
    assert c.delete(url).status_code == 401
    bad = c.delete("/v1/contacts/not-a-uuid", headers=auth("privacy"))
    assert bad.status_code == 422 and "not-a-uuid" in bad.text
    nobody = str(uuid.uuid4())
    missing = c.delete(f"/v1/contacts/{nobody}", headers=auth("privacy"))
    assert missing.status_code == 404 and nobody in missing.json()["detail"]

    first = c.delete(url, headers=auth("privacy"))
    assert first.status_code == 200, first.text
    receipt = first.json()
    assert receipt["requested_by"] == "api key privacy"
    assert receipt["event"]["topic"].endswith("profiles.v1")
    again = c.delete(url, headers=auth("admin"))
    assert again.status_code == 200 and again.json() == receipt

    read = c.get(f"/v1/erasures/{receipt['erasure_id']}", headers=auth("privacy"))
    assert read.status_code == 200 and read.json() == receipt
    assert c.get(f"/v1/erasures/{receipt['erasure_id']}", headers=auth("sales")).status_code == 403
    unknown = str(uuid.uuid4())
    no = c.get(f"/v1/erasures/{unknown}", headers=auth("privacy"))
    assert no.status_code == 404 and unknown in no.json()["detail"]

    later = c.post(
        "/v1/events",
        json=[
            doc(
                "chat.message",
                gone.contact,
                40,
                {"conversation_id": "k", "sender": "customer", "text": "secret again"},
            )
        ],
        headers=auth("admin"),
    )
    assert later.status_code == 200, later.text
    assert later.json()["events"][0]["personal_data_dropped"] is True


def test_erasing_an_unknown_contact_names_it(settings: Settings) -> None:
    publish(settings, Person("Other").docs())
    project_all(settings)
    nobody = str(uuid.uuid4())
    with pytest.raises(UnknownSubject, match=nobody):
        erase(settings, nobody)
    with pytest.raises(ValueError, match="'zz'"):
        erase(settings, "zz")


DOC_KEYS = ["subject", "type", "contact_id", "lead_id", "x"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["subject", "type", "contact_id", "x"]), inner, max_size=4
        )
    ),
    max_leaves=20,
)


@given(st.one_of(st.binary(max_size=300), JSON.map(orjson.dumps)))
@settings_of_hypothesis(max_examples=300, deadline=None)
def test_a_dead_letter_of_any_bytes_is_read_without_raising(raw: bytes) -> None:
    # Dead letters are whatever a view could not apply: erasing reads each without trusting it.
    assert _about(raw, {"someone"}) in (True, False)


def test_a_dead_letter_is_matched_by_any_of_its_subjects_even_off_contract() -> None:
    contact = str(uuid.uuid4())
    broken = orjson.dumps({"type": "nope", "subject": {"contact_id": contact}})
    assert _about(broken, {contact}) and not _about(broken, {str(uuid.uuid4())})
    valid = orjson.dumps(doc("email.opened", contact))
    assert _about(valid, {contact})
