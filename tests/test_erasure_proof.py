"""Proof of crypto-shredding: a person's e-mail address, phone, names and message texts,
published through ``Ingest`` and through the intake topic (valid, duplicate, conflicting and
rejected documents), are never in clear on a topic the store writes (read raw, before and after
the erasure), the view databases hold none of them once the erasure is applied, a replay gives
the live views, and an erasure during a worker process's run (other processes still holding
the person's key in their caches), or with the worker SIGKILLed before it applied it, ends the
same: nothing of the person in the views, the data folder's files or the topics. The other
person's data stays readable throughout."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from pydantic import SecretStr

from interaction_store.erasure import Eraser
from interaction_store.ingest import Ingest
from interaction_store.intake import IntakeProcessor, IntakeStats
from interaction_store.log import open_log
from interaction_store.log.base import LogRecord
from interaction_store.privacy import open_key_store
from interaction_store.privacy.sealing import letter_original, sealer_of
from interaction_store.projection.registry import KINDS
from interaction_store.read import ReadAPI
from interaction_store.settings import Settings
from interaction_store.views import open_store
from tests.api_support import project
from tests.factories import doc
from tests.test_erasure import Person, checksums, erase, publish, stored_text
from tests.test_log_behaviour import read_all

ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 30.0


# --------------------------------------------------------------------------- the people


@dataclass
class Someone:
    """A person whose data arrives through ``Ingest`` (test_erasure's Person) and through the
    intake topic, with a rejected document each way and, through the intake, a duplicate and
    a conflicting copy of an event ``Ingest`` stored."""

    person: Person
    docs: list[dict[str, Any]] = field(default_factory=list)
    """The person's documents for ``Ingest`` (made once: each has an event id of its own)."""

    def __post_init__(self) -> None:
        self.docs = self.docs or self.person.docs()

    @property
    def tag(self) -> str:
        return self.person.tag

    @property
    def contact(self) -> str:
        return self.person.contact

    @property
    def email(self) -> str:
        return self.person.secrets[0]

    @property
    def phone(self) -> str:
        return self.person.secrets[1]

    @property
    def intake_texts(self) -> list[str]:
        t = self.tag
        return [
            f"Intake subject for {t}",
            f"Intake SMS for {t}",
            f"Intake chat of {t}",
            f"Intake form of {t}",
            f"Intake lastname {t}",
        ]

    @property
    def rejected_texts(self) -> list[str]:
        t = self.tag
        return [f"Rejected preview for {t}", f"Rejected chat of {t}", f"Conflicting subject of {t}"]

    @property
    def secrets(self) -> list[str]:
        """Everything personal the person ever sent, by any way."""
        return [*self.person.secrets, *self.intake_texts, *self.rejected_texts]

    @property
    def in_views(self) -> list[str]:
        """What the views copy in clear while the person is not erased (chat and form texts
        are in no view's rows)."""
        p = self.person.secrets
        i = self.intake_texts
        return [*p[:6], p[7], i[0], i[1], i[4]]

    def ingest_docs(self) -> list[dict[str, Any]]:
        return [*self.docs, self.rejected_by_ingest()]

    def rejected_by_ingest(self) -> dict[str, Any]:
        # An empty subject: rejected (string_too_short), the address and a text beside it.
        return doc(
            "email.sent",
            self.contact,
            20,
            {"subject": "", "to_address": self.email, "preview_text": self.rejected_texts[0]},
        )

    def intake_docs(self) -> list[dict[str, Any]]:
        c, (subject, sms, chat, form, last) = self.contact, self.intake_texts
        first = self.person.secrets[2]
        stored = self.docs
        conflicting = dict(stored[4])  # email.sent: the same id, another subject
        conflicting["payload"] = {**stored[4]["payload"], "subject": self.rejected_texts[2]}
        return [
            doc(
                "contact.updated",
                c,
                10,
                {"first_name": first, "last_name": last, "email": self.email, "phone": self.phone},
            ),
            doc(
                "email.sent",
                c,
                11,
                {"subject": subject, "to_address": self.email},
                correlation={"message_id": f"mi-{c}"},
            ),
            doc("sms.sent", c, 12, {"text": sms, "to_number": self.phone}),
            doc(
                "chat.message", c, 13, {"conversation_id": "k2", "sender": "customer", "text": chat}
            ),
            doc("form.submitted", c, 14, {"form_id": "f2", "fields": {"answer": form}}),
            stored[5],  # sent again: a duplicate
            conflicting,
            # No such sender: rejected (literal_error), the person's address in the text.
            doc(
                "chat.message",
                c,
                15,
                {
                    "conversation_id": "k3",
                    "sender": "nobody",
                    "text": f"{self.rejected_texts[1]} {self.email}",
                },
            ),
        ]


def people() -> tuple[Someone, Someone]:
    return Someone(Person("Gone")), Someone(Person("Kept"))


def found(haystack: bytes, secrets: list[str]) -> list[str]:
    """The secrets in the bytes, compared case-folded (a view may fold an address)."""
    low = haystack.lower()
    return [s for s in secrets if s.lower().encode() in low]


# --------------------------------------------------------------------------- Kafka, raw


@pytest.fixture(params=["sqlite", "postgres"])
def kafka_views(request: pytest.FixtureRequest, kafka_settings: Settings) -> Iterator[Settings]:
    """Kafka topics of the test's own, the views in SQLite or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield kafka_settings
        return
    from tests.postgres_server import fresh_database

    admin = request.getfixturevalue("postgres_admin")
    with fresh_database(admin) as dsn:
        yield kafka_settings.model_copy(update={"postgres_dsn": SecretStr(dsn)})


def inject(settings: Settings, docs: list[dict[str, Any]]) -> None:
    """Write documents to the intake topic as a publisher in another language would: clear,
    unvalidated, keyed by the contact id (kafka-python partitions with murmur2)."""
    with open_log(settings) as log:
        assert log.catalog.intake is not None
        topic = log.catalog.intake.name
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        for d in docs:
            key = d["subject"]["contact_id"].encode()
            headers = [("istore.type", d["type"].encode())]
            producer.send(topic, value=orjson.dumps(d), key=key, headers=headers)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)


def forward(settings: Settings) -> IntakeStats:
    with open_log(settings) as log:
        return IntakeProcessor(log).run(once=True)


def store_topics(settings: Settings) -> set[str]:
    """Every topic of the broker under the test's prefix."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        return {t for t in admin.list_topics() if t.startswith(settings.topic_prefix)}
    finally:
        admin.close()


def raw_topics(settings: Settings, topics: set[str]) -> dict[str, list[bytes]]:
    """Every committed record of the topics, from the beginning, read with a plain consumer
    (no store code): key, value, and each header's name and value, as bytes."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    out: dict[str, list[bytes]] = {t: [] for t in topics}
    try:
        tps = []
        for topic in sorted(topics):
            partitions = consumer.partitions_for_topic(topic)
            assert partitions, topic
            tps += [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        deadline = time.monotonic() + WAIT_S
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, "the raw read did not reach the end offsets"
            for tp, records in consumer.poll(timeout_ms=500).items():
                for r in records:
                    parts = [r.key or b"", r.value or b""]
                    parts += [k.encode() + b"=" + (v or b"") for k, v in r.headers]
                    out[tp.topic].append(b"\n".join(parts))
    finally:
        consumer.close()
    return out


def clear_on_topics(
    settings: Settings, secrets: list[str]
) -> tuple[dict[str, list[str]], dict[str, list[bytes]]]:
    """The secrets found in clear on each topic the store writes (every topic of the prefix
    but the intake topic, which holds what publishers sent until its retention), and every
    topic's raw records."""
    with open_log(settings) as log:
        catalog = log.catalog
        assert catalog.intake is not None
        intake = catalog.intake.name
        known = {t.name for t in catalog.event_topics} | {catalog.dead_letter.name, intake}
    topics = store_topics(settings)
    # The test knows every topic there is: a new one would be read too, and only the intake
    # topic is left out of the search.
    assert topics == known, topics ^ known
    raw = raw_topics(settings, topics)
    clear = {
        topic: sorted({s for record in records for s in found(record, secrets)})
        for topic, records in raw.items()
        if topic != intake
    }
    return {t: s for t, s in clear.items() if s}, raw


def letters_of(settings: Settings, contact: str) -> list[LogRecord]:
    with open_log(settings) as log:
        letters = read_all(log, log.catalog.dead_letter.name)
    return [
        r for r in letters if orjson.loads(r.headers["istore.details"]).get("subject") == contact
    ]


def opened_letters(settings: Settings, letters: list[LogRecord]) -> list[bytes | None]:
    with open_key_store(settings) as keys:
        return [letter_original(keys, r) for r in letters]


def publish_everything(settings: Settings, gone: Someone, kept: Someone) -> None:
    """Both people through ``Ingest`` and through the intake topic, then projected."""
    outcomes = publish(settings, gone.ingest_docs() + kept.ingest_docs())
    statuses = [o.status for o in outcomes]
    assert statuses.count("rejected") == 2 and statuses.count("accepted") == len(statuses) - 2
    inject(settings, gone.intake_docs() + kept.intake_docs())
    stats = forward(settings)
    assert (stats.forwarded, stats.duplicates, stats.conflicts, stats.dead_lettered) == (
        10,
        2,
        2,
        2,
    ), stats.summary()
    assert project(settings) > 0


# --------------------------------------------------------------------------- 1. the topics


@pytest.mark.kafka
def test_no_topic_the_store_writes_holds_the_person_in_clear_before_or_after_erasure(
    kafka_settings: Settings,
) -> None:
    settings = kafka_settings
    gone, kept = people()
    publish_everything(settings, gone, kept)

    # Sealed at ingest: nothing in clear on a canonical or the dead-letter topic already.
    clear, raw = clear_on_topics(settings, gone.secrets + kept.secrets)
    assert clear == {}, clear
    intake = next(t for t in raw if t.endswith("istore.intake.v1"))
    # The intake topic does hold what publishers sent (until its retention): the search
    # would have found it, and it is left out knowingly.
    assert set(found(b"\n".join(raw[intake]), gone.secrets)) >= set(gone.intake_texts)
    written = b"\n".join(r for t, records in raw.items() if t != intake for r in records)
    assert gone.contact.encode() in written and b"enc:v1:" in written  # the records are there
    # Both rejected documents and the conflicting copy are dead letters, sealed, and open
    # (before the erasure) to what was sent, the address with them.
    letters = letters_of(settings, gone.contact)
    assert len(letters) == 3
    assert all(orjson.loads(r.headers["istore.details"])["sealed"] for r in letters)
    opened = opened_letters(settings, letters)
    assert all(o is not None and gone.email.encode() in o for o in opened), opened
    # The views read the person in clear, from both ways in.
    texts = timeline_texts(settings, gone.contact)[1]
    assert gone.person.secrets[4] in texts and gone.intake_texts[0] in texts

    receipt, new = erase(settings, gone.contact)
    assert new and receipt["erased"]["contacts"] == [gone.contact]
    assert any("intake topic" in p for p in receipt["pending"])
    # After the erasure, publishers go on sending about the person through the intake: a
    # valid event, a rejected one and a conflicting copy, all holding personal data.
    after = [
        f"After SMS of {gone.tag}",
        f"After rejected of {gone.tag}",
        f"After conflict {gone.tag}",
    ]
    changed = dict(gone.docs[6], payload={**gone.docs[6]["payload"], "text": after[2]})
    inject(
        settings,
        [
            doc("sms.sent", gone.contact, 50, {"text": after[0], "to_number": gone.phone}),
            doc(
                "chat.message",
                gone.contact,
                51,
                {"conversation_id": "a", "sender": "nobody", "text": f"{after[1]} {gone.email}"},
            ),
            changed,
        ],
    )
    stats = forward(settings)
    assert (stats.forwarded, stats.conflicts, stats.dead_lettered) == (1, 1, 1), stats.summary()
    project(settings)

    clear, raw = clear_on_topics(settings, gone.secrets + after + kept.secrets)
    assert clear == {}, clear
    # The person's dead letters no longer open (those made after the erasure keep nothing);
    # the other person's still do.
    assert opened_letters(settings, letters_of(settings, gone.contact)) == [None] * 5
    kept_letters = opened_letters(settings, letters_of(settings, kept.contact))
    assert len(kept_letters) == 3 and all(o is not None for o in kept_letters)
    # The other person is still readable through the views, from both ways in.
    with ReadAPI(settings) as api:
        entries = api.timeline(contact_id=kept.contact, limit=500).entries
        texts = orjson.dumps([e.preview for e in entries]).decode()
        for secret in (kept.person.secrets[4], kept.person.secrets[5], *kept.intake_texts[:2]):
            assert secret in texts, secret
        assert api.consent(kept.contact).email.value == kept.email
        gone_entries = api.timeline(contact_id=gone.contact, limit=500).entries
        assert gone_entries and all(e.preview == {"erased": True} for e in gone_entries)


# --------------------------------------------------------------------------- 2. the views


@pytest.mark.kafka
def test_the_view_databases_forget_the_person_and_a_replay_gives_the_live_views(
    kafka_views: Settings,
) -> None:
    settings = kafka_views
    gone, kept = people()
    publish_everything(settings, gone, kept)
    before = stored_text(settings)
    # The search finds what the views hold: both people, from both ways in.
    assert found(before, gone.in_views) == gone.in_views
    assert found(before, kept.in_views) == kept.in_views
    unerased = checksums(settings)
    assert sorted(unerased) == sorted(KINDS)

    erase(settings, gone.contact)
    project(settings)

    after = stored_text(settings)
    assert found(after, gone.secrets) == []
    assert found(after, kept.in_views) == kept.in_views
    live = checksums(settings)
    assert live != unerased  # the checksums see what the erasure changed
    assert checksums(settings, "_replayed") == live


# --------------------------------------------------------------------------- 3. worker processes


@dataclass
class Worker:
    """An ``istore run`` process (tests.crash_worker: a 6 s group session, stack dumps on
    SIGUSR1), its output in a file."""

    process: subprocess.Popen[bytes]
    output: Path

    def text(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, sig: signal.Signals) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=WAIT_S)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[[Settings], Worker]]:
    started: list[Worker] = []

    def start(settings: Settings) -> Worker:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ISTORE_", "KAFKA_"))}
        env["ISTORE_MASTER_KEY"] = os.environ["ISTORE_MASTER_KEY"]
        env["ISTORE_DATA_DIR"] = str(settings.data_dir)
        env["ISTORE_WORKER_INTAKE"] = "false"  # the test forwards the intake itself
        args = [sys.executable, "-m", "tests.crash_worker"]
        if settings.backend == "kafka":
            assert settings.kafka_bootstrap_servers is not None
            args += ["--backend", "kafka", "--bootstrap-servers", settings.kafka_bootstrap_servers]
            args += ["--topic-prefix", settings.topic_prefix]
        output = tmp_path / f"worker-{len(started)}.log"
        with output.open("wb") as out:
            process = subprocess.Popen(
                [*args, "run", "--batch-size", "20"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(process, output)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.alive():
            worker.process.kill()
            worker.process.wait(timeout=WAIT_S)


def caught_up(settings: Settings) -> bool:
    """Every live view has applied every record of every event topic."""
    with open_log(settings) as log, open_store(settings) as store:
        ends = {
            (t.name, p): end
            for t in log.catalog.event_topics
            for p, end in log.end_offsets(t.name).items()
            if end > 0
        }
        return all(
            store.tracked(kind, ends).get(tp, -1) + 1 >= end
            for kind in KINDS
            for tp, end in ends.items()
        )


def forgotten(settings: Settings) -> bool:
    with open_store(settings) as store, store.reading() as c:
        c.execute("SELECT COUNT(*) FROM timeline__erased")
        return bool(c.fetchone()[0])


def wait_for(what: str, check: Callable[[], bool], worker: Worker) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            if check():
                return
        except Exception:  # tables the worker has not made yet
            pass
        assert worker.alive(), f"the worker exited\n{worker.text()[-4000:]}"
        if time.monotonic() > deadline:
            worker.process.send_signal(signal.SIGUSR1)
            time.sleep(1)
            pytest.fail(f"{what}: not within {WAIT_S:g} s\n{worker.text()[-8000:]}")
        time.sleep(0.1)


def timeline_texts(settings: Settings, contact: str) -> tuple[int, str]:
    with ReadAPI(settings) as api:
        entries = api.timeline(contact_id=contact, limit=500).entries
        return len(entries), orjson.dumps([e.preview for e in entries]).decode()


def log_bytes(settings: Settings) -> bytes:
    return b"".join(p.read_bytes() for p in settings.data_dir.glob("log.sqlite*"))


def check_forgotten(settings: Settings, gone: Someone, kept: Someone) -> None:
    """Nothing of ``gone`` readable through the views, ``kept`` intact."""
    with ReadAPI(settings) as api:
        entries = api.timeline(contact_id=gone.contact, limit=500).entries
        assert entries and all(e.preview == {"erased": True} for e in entries)
        assert api.consent(gone.contact).email.value in (None, "(erased)")
        kept_entries = api.timeline(contact_id=kept.contact, limit=500).entries
        texts = orjson.dumps([e.preview for e in kept_entries]).decode()
        assert kept.person.secrets[4] in texts and kept.person.secrets[5] in texts
        assert api.consent(kept.contact).email.value == kept.email


def wrapped_keys(settings: Settings, subjects: list[str]) -> list[bytes]:
    """The subjects' data keys as the key store holds them (wrapped by the master key)."""
    path = settings.private_data_dir() / "keys.sqlite"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT wrapped FROM data_keys WHERE subject IN (SELECT value FROM json_each(?))",
            (orjson.dumps(subjects).decode(),),
        ).fetchall()
    return [bytes(r[0]) for r in rows if r[0] is not None]


def files_holding(folder: Path, pattern: str, secrets: list[str] | list[bytes]) -> dict[str, Any]:
    """For each file of the folder matching ``pattern``, what of ``secrets`` it holds."""
    out: dict[str, Any] = {}
    for path in sorted(p for p in folder.glob(pattern) if p.is_file()):
        data = path.read_bytes()
        held = found(data, [s for s in secrets if isinstance(s, str)]) + [
            s for s in secrets if isinstance(s, bytes) and s in data
        ]
        if held:
            out[path.name] = held
    return out


def other_files_holding(folder: Path, secrets: list[str] | list[bytes]) -> dict[str, Any]:
    """What of ``secrets`` each file of the data folder holds, but the view database's (the
    log, the key store, the event-id index, ...)."""
    return {
        name: held
        for name, held in files_holding(folder, "*", secrets).items()
        if not name.startswith("views.sqlite")
    }


def test_an_erasure_while_a_worker_process_runs(
    embedded_settings: Settings, workers: Callable[[Settings], Worker]
) -> None:
    """`istore run` in a process of its own follows the embedded log while the person is
    erased, with events of the person published just before, and after by a process whose
    key cache still holds the destroyed key."""
    settings = embedded_settings
    gone, kept = people()
    publish(settings, gone.docs + kept.docs)
    worker = workers(settings)
    wait_for("the worker projects both people", lambda: caught_up(settings), worker)
    count, texts = timeline_texts(settings, gone.contact)
    assert gone.person.secrets[4] in texts  # read in clear before
    # The person's data key (their lead's and visitor's events carry no sealed field).
    keys = wrapped_keys(settings, [gone.contact, gone.person.lead, gone.person.visitor])
    assert len(keys) == 1

    # Just before the erasure, while the worker runs: events it may apply before or after it.
    racing = [f"Racing SMS of {gone.tag}", f"Racing chat of {gone.tag}"]
    publish(
        settings,
        [
            doc("sms.sent", gone.contact, 30, {"text": racing[0], "to_number": gone.phone}),
            doc(
                "chat.message",
                gone.contact,
                31,
                {"conversation_id": "r", "sender": "customer", "text": racing[1]},
            ),
        ],
    )
    # Another ingest process, which holds the person's key in its cache (up to
    # key_cache_seconds) and goes on sealing with it after the erasure; the worker, which holds
    # it too, opens what it sealed: the views must forget it all the same.
    stale = sealer_of(settings)
    stale.keys.get_or_create_many({gone.contact})
    erase(settings, gone.contact)
    # The key is gone from the key store's files (the worker has the store open too).
    assert other_files_holding(settings.data_dir, keys) == {}
    stale_texts = [f"Stale SMS of {gone.tag}", f"stale.{gone.tag}@example.org", f"Stale{gone.tag}"]
    with open_log(settings) as log:
        late = Ingest(log, parallel=False, sealer=stale).publish_documents(
            [
                orjson.dumps(d)
                for d in [
                    doc("sms.sent", gone.contact, 40, {"text": stale_texts[0]}),
                    doc(
                        "contact.updated",
                        gone.contact,
                        41,
                        {"email": stale_texts[1], "first_name": stale_texts[2]},
                    ),
                    doc(
                        "consent.contact_point_changed",
                        gone.contact,
                        42,
                        {
                            "channel": "email",
                            "contact_point": stale_texts[1],
                            "purpose": "commercial",
                            "status": "opted_in",
                        },
                    ),
                ]
            ],
            "stale ingest",
        )
    stale.close()
    # Sealed with the key the erasure destroyed (not dropped as for an erased subject).
    assert [(o.status, o.personal_data_dropped) for o in late] == [("accepted", False)] * 3
    # And one through a process that knows of the erasure: stored without its fields.
    later = f"Late SMS of {gone.tag}"
    (outcome,) = publish(settings, [doc("sms.sent", gone.contact, 43, {"text": later})])
    assert outcome.personal_data_dropped
    wait_for("the worker applies the erasure and the rest", lambda: caught_up(settings), worker)
    secrets = [*gone.person.secrets, *racing, *stale_texts, later]
    check_forgotten(settings, gone, kept)
    assert timeline_texts(settings, gone.contact)[0] >= count + 3  # still countable
    assert other_files_holding(settings.data_dir, [*secrets, *keys]) == {}

    assert worker.signal(signal.SIGTERM) == 0, worker.text()
    assert files_holding(settings.data_dir, "views.sqlite*", secrets) == {}
    assert found(stored_text(settings), kept.in_views[:7]) == kept.in_views[:7]


def test_the_view_files_of_a_running_worker_hold_nothing_of_an_erased_person(
    embedded_settings: Settings, workers: Callable[[Settings], Worker]
) -> None:
    """The views forget while the worker goes on running, as a deployment runs it (and
    `istore serve` holds the file open too): the forgotten values must not stay in a file
    of the view database, the write-ahead log included."""
    settings = embedded_settings
    gone, kept = people()
    publish(settings, gone.docs + kept.docs)
    worker = workers(settings)
    wait_for("the worker projects both people", lambda: caught_up(settings), worker)
    erase(settings, gone.contact)
    wait_for("the worker applies the erasure", lambda: caught_up(settings), worker)
    assert forgotten(settings)
    check_forgotten(settings, gone, kept)
    assert files_holding(settings.data_dir, "views.sqlite*", gone.secrets) == {}


class KillingEraser(Eraser):
    """An eraser that calls ``then`` right after it published ``contact.erased``, before it
    destroys the keys."""

    def __init__(self, *args: Any, then: Callable[[], None]) -> None:
        super().__init__(*args)
        self.then = then

    def _publish(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        position = super()._publish(*args, **kwargs)
        self.then()
        return position


@pytest.mark.kafka
def test_a_worker_killed_while_an_erasure_happens_forgets_after_its_restart(
    kafka_settings: Settings, workers: Callable[[Settings], Worker]
) -> None:
    """`istore run` on Kafka, frozen once caught up (so it applies nothing more), killed
    right after the erasure published ``contact.erased``, restarted: it catches up on the
    person's events it never saw, the erasure, and intake records forwarded after it."""
    settings = kafka_settings
    gone, kept = people()
    publish(settings, gone.docs + kept.docs)
    first = workers(settings)
    wait_for("the worker projects both people", lambda: caught_up(settings), first)
    assert gone.person.secrets[4] in timeline_texts(settings, gone.contact)[1]
    (key,) = wrapped_keys(settings, [gone.contact])

    # The worker is frozen: whatever comes now, it cannot apply. Events of the person are
    # published meanwhile, and more wait on the intake topic, in clear.
    first.process.send_signal(signal.SIGSTOP)
    pending = [f"Pending SMS of {gone.tag}", f"Pending chat of {gone.tag}"]
    publish(
        settings,
        [
            doc("sms.sent", gone.contact, 30, {"text": pending[0], "to_number": gone.phone}),
            doc(
                "chat.message",
                gone.contact,
                31,
                {"conversation_id": "p", "sender": "customer", "text": pending[1]},
            ),
        ],
    )
    waiting = [f"Waiting SMS of {gone.tag}", f"Waiting chat of {gone.tag}"]
    inject(
        settings,
        [
            doc("sms.sent", gone.contact, 32, {"text": waiting[0], "to_number": gone.phone}),
            doc(
                "chat.message",
                gone.contact,
                33,
                {"conversation_id": "w", "sender": "customer", "text": waiting[1]},
            ),
            doc("sms.sent", kept.contact, 34, {"text": f"Waiting SMS of {kept.tag}"}),
        ],
    )

    killed: list[int] = []

    def kill() -> None:
        killed.append(first.signal(signal.SIGKILL))

    with open_log(settings) as log, open_store(settings) as store, open_key_store(settings) as k:
        receipt, _ = KillingEraser(log, store, k, then=kill).erase(gone.contact, "tests")
    assert killed == [-signal.SIGKILL]
    # Killed before it applied the erasure: the views still hold the person in clear.
    assert gone.person.secrets[4] in timeline_texts(settings, gone.contact)[1]
    assert not forgotten(settings)

    second = workers(settings)
    stats = forward(settings)  # the intake records waiting at the erasure, meanwhile
    assert stats.forwarded == 3
    wait_for("the restarted worker catches up", lambda: caught_up(settings), second)
    secrets = [*gone.person.secrets, *pending, *waiting]
    assert forgotten(settings)
    check_forgotten(settings, gone, kept)
    assert other_files_holding(settings.data_dir, [*secrets, key]) == {}
    _, kept_texts = timeline_texts(settings, kept.contact)
    assert f"Waiting SMS of {kept.tag}" in kept_texts
    clear, _ = clear_on_topics(settings, secrets)
    assert clear == {}, clear

    # (The view files of a running worker: see the test above.)
    assert second.signal(signal.SIGTERM) == 0, second.text()
    assert files_holding(settings.data_dir, "views.sqlite*", secrets) == {}
    assert receipt["event"]["topic"].endswith("istore.profiles.v1")
