"""Any record on a topic, whatever its bytes, headers or size, is applied or dead-lettered with
a reason: no record stops the views. The embedded log and a real Kafka broker.

Upstream systems may publish straight to Kafka, so the store's readers meet what Kafka can hold:
tombstones (a null value), bytes that are not JSON, JSON with NUL characters, nesting deeper
than the JSON libraries write, documents larger than the contract allows, headers without
values or naming a type the value does not hold.
"""

from __future__ import annotations

import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interaction_store.log import EventLog, open_log
from interaction_store.log.embedded import EmbeddedLog, _write_lock
from interaction_store.projection import ProjectionRunner
from interaction_store.projection.registry import ViewRegistry, build
from interaction_store.projection.runner import RunStats
from interaction_store.read import ReadAPI
from interaction_store.settings import Settings
from interaction_store.views import open_store
from tests.factories import doc, raw
from tests.test_log_behaviour import read_all

Header = tuple[str, bytes | None]

NAMED_POISONS: dict[str, tuple[bytes | None, list[Header]]] = {
    "tombstone": (None, []),
    "truncated JSON with \\u0000": (b'{"event_id":"5b0c\\u0000", "type": "email.op', []),
    "NUL in a valid document": (raw(source="a\u0000b"), []),
    "nested 300 deep in the payload": (
        b'{"type":"email.opened","payload":' + b"[" * 300 + b"]" * 300 + b"}",
        [],
    ),
    "nested past orjson's limit": (b"[" * 2000 + b"]" * 2000, []),
    "not UTF-8": (b'{"type":"\xff\xfe"}', []),
    "empty": (b"", []),
    "a JSON number": (b"1e999999", []),
    "over the size limit": (
        orjson.dumps(doc(payload={"subject": "x" * 600_000, "preview_text": "y"})),
        [],
    ),
    "a header naming a skipped type": (b"\x00\x01garbage", [("istore.type", b"consent.level_set")]),
    "a header without a value": (b"not json", [("istore.type", None), ("other", b"\xff")]),
    "a schema version past 64 bits": (
        raw().replace(b'"schema_version":1', b'"schema_version":' + b"9" * 40),
        [],
    ),
}


POISONS = st.lists(
    st.tuples(
        st.one_of(
            st.binary(max_size=200),
            st.none(),
            st.builds(lambda b: b'{"type":"email.opened",' + b, st.binary(max_size=60)),
        ),
        st.lists(
            st.tuples(
                st.sampled_from(["istore.type", "istore.reason", "x"]) | st.text(max_size=8),
                st.none() | st.binary(max_size=20) | st.sampled_from([b"email.opened"]),
            ),
            max_size=3,
        ),
    ),
    min_size=1,
    max_size=12,
)
"""Records another publisher may put on a topic: any bytes, a tombstone, a truncated event, and
any headers, among them a type header that may lie."""


class PoisonRecords(ABC):
    """The contract; subclasses give a log and a way to put raw records on its topics."""

    @abstractmethod
    @contextmanager
    def fresh_settings(self) -> Iterator[Settings]:
        """Settings of a log and views of their own (hypothesis runs many examples)."""

    @abstractmethod
    def inject(
        self, log: EventLog, topic: str, records: list[tuple[bytes | None, list[Header]]]
    ) -> None:
        """Put records on ``topic`` as another publisher would, bypassing validation."""

    supports_tombstones = True

    def _project(self, settings: Settings) -> RunStats:
        """Run the default views over the log until caught up; their stats, lag checked."""
        with open_log(settings) as log, open_store(settings) as store:
            infos = ViewRegistry(store).ensure_defaults(settings)
            runner = ProjectionRunner(log, store, [build(i, settings) for i in infos])
            stats = runner.run(follow=False)
            assert all(n == 0 for n in runner.lag().values()), runner.lag()
            return stats

    def _check(self, settings: Settings, poisons: list[tuple[bytes | None, list[Header]]]) -> None:
        contact = uuid.uuid4()
        before, after = raw(contact=contact, at=1), raw(contact=contact, at=2)
        with open_log(settings) as log:
            from interaction_store.codec import decode

            log.publish([decode(before)])
            topic = log.catalog.by_name("interactions").name
            self.inject(log, topic, poisons)
            log.publish([decode(after)])
        stats = self._project(settings)
        # Every poison was dead-lettered with a reason naming where it came from ...
        assert stats.rejected == len(poisons)
        with open_log(settings) as log:
            letters = read_all(log, log.catalog.dead_letter.name)
        assert len(letters) == len(poisons)
        for letter in letters:
            assert letter.headers["istore.reason"], letter
            assert letter.headers["istore.source"].startswith("log:"), letter.headers
        # ... and the valid neighbours on either side were applied.
        with ReadAPI(settings) as api:
            page = api.timeline(contact_id=contact)
        assert len(page.entries) == 2
        # A restarted worker does not meet them again: their positions count as done.
        again = self._project(settings)
        assert again.rejected == 0 and again.applied == 0

    @pytest.mark.parametrize("name", sorted(NAMED_POISONS))
    def test_a_poison_record_is_dead_lettered_and_its_neighbours_applied(self, name: str) -> None:
        value, headers = NAMED_POISONS[name]
        if value is None and not self.supports_tombstones:
            value = b"null"  # the embedded log stores bytes: the nearest it can hold
        with self.fresh_settings() as s:
            self._check(s, [(value, headers)])

    examples = 8

    def test_any_bytes_and_headers_never_stop_the_views(self) -> None:
        # The property is defined per call: hypothesis wants each test method run by one class
        # (its database replays examples per method), and both logs share this one.
        @settings(
            max_examples=self.examples,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(POISONS)
        def check(poisons: list[tuple[bytes | None, list[Header]]]) -> None:
            if not self.supports_tombstones:
                poisons = [(b"null" if v is None else v, h) for v, h in poisons]
            with self.fresh_settings() as s:
                self._check(s, poisons)

        check()


class TestEmbedded(PoisonRecords):
    supports_tombstones = False

    @contextmanager
    def fresh_settings(self) -> Iterator[Settings]:
        with tempfile.TemporaryDirectory() as tmp:
            yield Settings(backend="embedded", data_dir=Path(tmp) / "data")

    def inject(
        self, log: EventLog, topic: str, records: list[tuple[bytes | None, list[Header]]]
    ) -> None:
        assert isinstance(log, EmbeddedLog)
        rows = []
        for value, headers in records:
            named = dict(headers).get("istore.type")
            # The embedded log keeps the type beside the value, as Kafka keeps a header.
            stored_type = named.decode("utf-8", "replace") if named else "unknown"
            rows.append((uuid.uuid4().bytes, stored_type, value or b""))
        with log.datastore.transaction(commit=True) as c:
            _write_lock(c)
            log.recorders[topic].append(c, rows)


@pytest.mark.kafka
class TestKafka(PoisonRecords):
    @pytest.fixture(autouse=True)
    def _broker(self, kafka_bootstrap: str) -> None:
        self.bootstrap = kafka_bootstrap

    @contextmanager
    def fresh_settings(self) -> Iterator[Settings]:
        with tempfile.TemporaryDirectory() as tmp:
            s = Settings(
                backend="kafka",
                data_dir=Path(tmp) / "data",
                kafka_bootstrap_servers=self.bootstrap,
                topic_prefix=f"p{uuid.uuid4().hex[:10]}.",
            )
            with open_log(s) as log:
                log.ensure_topics()
            yield s

    def inject(
        self, log: EventLog, topic: str, records: list[tuple[bytes | None, list[Header]]]
    ) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.bootstrap, max_request_size=4 << 20)
        try:
            for value, headers in records:
                # kafka-python sends no header without a value (the Java client can): an empty one.
                sent = [(k, b"" if v is None else v) for k, v in headers]
                producer.send(topic, value=value, key=b"k", headers=sent)
            producer.flush(timeout=30)
        finally:
            producer.close(timeout=5)
