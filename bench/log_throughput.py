"""Log throughput: our publish and read paths against raw kafka-python, and the embedded log.

Run: ``.venv/bin/python -m bench.log_throughput [--events 100000] [--bootstrap HOST:PORT]``.
Without ``--bootstrap`` (or KAFKA_BOOTSTRAP_SERVERS) a local broker is started in a temporary
folder and stopped at the end. Prints a table of figures, then one line of JSON. The figures
are measurements, not tests: the exit status is 0 whether or not a goal is met.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import itertools
import math
import os
import pstats
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import SecretStr

from bench.documents import write_documents
from bench.plain import PlainSealer, new_master_key
from interaction_store.catalog import StreamCatalog
from interaction_store.codec import decode, encode
from interaction_store.events import InteractionEvent
from interaction_store.ingest import Ingest, Outcome
from interaction_store.log.base import EventLog
from interaction_store.log.embedded import EmbeddedLog
from interaction_store.privacy.sealing import Sealer, sealer_of
from interaction_store.settings import Settings

BATCH = 5000
"""Documents per publish call and records per read page (the CLI's default batch)."""

KAFKA_PUBLISH_GOAL = 0.8
"""Our Kafka publish path, as a fraction of the raw producer's rate."""

EMBEDDED_APPEND_GOAL = 50_000
"""Events per second appended to the embedded log."""

SEALED_GOAL = 0.9
"""The full publish path with personal fields sealed, as a fraction of the same path with a
sealer that does nothing (same data, same log backend, same run)."""

MASTER_KEY: SecretStr = new_master_key()
"""The master key of every store this run makes (Kafka has no default one)."""

# Producer settings copied from our KafkaLog's producer onto the raw one, so both send alike.
PRODUCER_TUNING = (
    "acks",
    "enable_idempotence",
    "linger_ms",
    "batch_size",
    "max_request_size",
    "compression_type",
    "buffer_memory",
    "max_in_flight_requests_per_connection",
    "retries",
    "delivery_timeout_ms",
)

DRAIN_TIMEOUT_S = 120.0

Prepared = tuple[str, bytes, bytes, bytes]
"""What our log sends for one event: logical topic, key, encoded value, type header value."""


# --------------------------------------------------------------------------- timing


class _GcClock:
    """Seconds spent in the cyclic garbage collector (any thread), via ``gc.callbacks``."""

    def __init__(self) -> None:
        self.total = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._start


GC_CLOCK = _GcClock()


class Timer:
    """Wall, process CPU (all threads), GC seconds, and the CPU of child processes that ended
    within (the validation worker of ``publish_lines``), of one or more blocks, added up."""

    def __init__(self) -> None:
        self.seconds = self.cpu_seconds = self.gc_seconds = self.child_cpu_seconds = 0.0
        self._marks = (0.0, 0.0, 0.0, 0.0)

    def __enter__(self) -> Timer:
        self._marks = (time.perf_counter(), time.process_time(), GC_CLOCK.total, _child_cpu())
        return self

    def __exit__(self, *exc: object) -> None:
        wall, cpu, gc_total, child = self._marks
        self.seconds += time.perf_counter() - wall
        self.cpu_seconds += time.process_time() - cpu
        self.gc_seconds += GC_CLOCK.total - gc_total
        self.child_cpu_seconds += _child_cpu() - child


def _child_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


@dataclass
class Figure:
    """One measurement: how many events in how long, optionally against a baseline."""

    key: str
    label: str
    events: int
    timer: Timer
    baseline: Figure | None = None
    goal: str = ""
    passed: bool | None = None
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.timer.seconds if self.timer.seconds > 0 else math.inf

    @property
    def ratio(self) -> float | None:
        return None if self.baseline is None else self.rate / self.baseline.rate


def _say(message: str) -> None:
    print(f"[bench] {message} (rss {_rss_now_mb():.0f} MB)", file=sys.stderr, flush=True)


def _rss_now_mb() -> float:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return math.nan


def _rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _batches(items: Sequence[Any], size: int = BATCH) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _accepted(outcomes: list[Outcome], expected: int, what: str) -> None:
    accepted = sum(1 for o in outcomes if o.status == "accepted")
    if accepted != expected:
        statuses = Counter(o.status for o in outcomes)
        raise SystemExit(f"{what}: {accepted} of {expected} accepted ({dict(statuses)})")


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


# --------------------------------------------------------------------------- data


@dataclass
class Data:
    """The documents of one run (warm-up and measured) and what our log makes of them."""

    warm_lines: list[bytes]
    lines: list[bytes]
    warm_records: list[Prepared]
    records: list[Prepared]
    per_topic: Counter[str]  # logical topic -> events (warm-up and measured)
    origin: str
    now: datetime


def make_data(count: int, warmup: int, contacts: int, seed: int, tmp: Path) -> Data:
    """Documents and prepared records, streamed through files and read back in one go: the
    process then holds them compactly (about 150 MB for 100k), not scattered over a heap."""
    catalog = StreamCatalog.load(Settings())
    docs_path, records_path = tmp / "documents.jsonl", tmp / "records.tsv"
    with docs_path.open("wb") as out:
        origin = write_documents(out, warmup + count, contacts, seed)
    # Ingest stamps recorded_at; the raw producer sends the bytes our log would store.
    now = datetime.now(UTC)
    gc.disable()  # setup only: decoding 100k events is several times faster without the GC
    try:
        with docs_path.open("rb") as lines_in, records_path.open("wb") as out:
            for line in lines_in:
                event = decode(line.strip()).with_recorded_at(now)
                logical = catalog.topic_for(event.type).logical
                fields = (logical.encode(), event.key.encode(), event.type.encode(), encode(event))
                out.write(b"\t".join(fields) + b"\n")  # JSON from orjson has no raw tab
    finally:
        gc.enable()
    lines = docs_path.read_bytes().splitlines()
    records: list[Prepared] = []
    for row in records_path.read_bytes().splitlines():
        logical_b, key, kind, value = row.split(b"\t", 3)
        records.append((logical_b.decode(), key, value, kind))
    docs_path.unlink()
    records_path.unlink()
    return Data(
        lines[:warmup],
        lines[warmup:],
        records[:warmup],
        records[warmup:],
        Counter(r[0] for r in records),
        origin,
        now,
    )


def _decoded(lines: Sequence[bytes], now: datetime) -> list[InteractionEvent]:
    return [decode(line).with_recorded_at(now) for line in lines]


def publish_backend(log: EventLog, lines: Sequence[bytes], now: datetime, timer: Timer) -> int:
    """``log.publish`` on events decoded beforehand (batch by batch; decoding is not timed)."""
    appended = 0
    for batch in _batches(lines):
        events = _decoded(batch, now)
        with timer:
            outcome = log.publish(events)
        appended += sum(1 for a in outcome if not a.duplicate)
        del events, outcome
    return appended


def publish_lines(ingest: Ingest, lines: Sequence[bytes], timer: Timer, what: str) -> None:
    """The full path as ``istore publish`` runs it: ``Ingest.publish_lines`` over the input,
    which validates the next batch in a worker process while this one is published (the
    worker's start-up is inside the timing)."""
    with timer:
        report = ingest.publish_lines(lines, "bench")
    if report.accepted != len(lines):
        raise SystemExit(f"{what}: {report.summary()}; expected all {len(lines)} accepted")


def publish_documents(ingest: Ingest, lines: Sequence[bytes], timer: Timer, what: str) -> None:
    """The full path one batch at a time in this process: validate, encode, dedupe, publish."""
    for batch in _batches(lines):
        with timer:
            outcomes = ingest.publish_documents(batch, "bench")
        _accepted(outcomes, len(batch), what)


# --------------------------------------------------------------------------- Kafka


@dataclass
class KafkaRun:
    bootstrap: str
    data: Data
    tmp: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    figures: list[Figure] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    producer_settings: dict[str, Any] = field(default_factory=dict)
    broker_warmup: int = 30_000
    rounds: int = 2

    def settings(self, name: str) -> Settings:
        return Settings(
            backend="kafka",
            data_dir=self.tmp / f"kafka-{name}",
            kafka_bootstrap_servers=self.bootstrap,
            topic_prefix=f"bench{self.tag}.{name}.",
            kafka_client_id=f"istore-bench-{name}",
            master_key=MASTER_KEY,
        )


def bench_kafka(run: KafkaRun) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from interaction_store.log.kafka import TYPE_HEADER, KafkaLog

    data = run.data
    measured = len(data.lines)
    with ExitStack() as stack:
        logs: dict[str, KafkaLog] = {}
        # Each figure writes its own topics, made from the same catalog (another prefix), so
        # partition counts and routing are the same everywhere.
        for name in ("warm", "raw", "rawbatch", "backend", "ours", "notx"):
            settings = run.settings(name)
            if name == "notx":  # the same path without a transaction per batch
                settings = settings.model_copy(update={"kafka_transactions": False})
            log = KafkaLog(settings)
            stack.callback(log.close)
            run.created += log.ensure_topics()
            logs[name] = log
        ours = logs["ours"]

        # Same settings as our producer: read them off it rather than repeating them here.
        config = ours.producer.config
        tuning = {k: config[k] for k in PRODUCER_TUNING if k in config}
        run.producer_settings = {k: _jsonable(v) for k, v in tuning.items()}
        raw_settings = run.settings("raw")
        producer = KafkaProducer(**raw_settings.kafka_client_config(), **tuning)
        stack.callback(producer.close)

        def topic_of(name: str, logical: str) -> str:
            return logs[name].catalog.by_name(logical).name

        def raw_send(name: str, records: Sequence[Prepared], flush_every: int) -> None:
            names = {t.logical: t.name for t in logs[name].catalog.topics.values()}
            for i, (logical, key, value, kind) in enumerate(records, start=1):
                producer.send(names[logical], value=value, key=key, headers=[(TYPE_HEADER, kind)])
                if i % flush_every == 0:
                    producer.flush()
            producer.flush()

        def stored(name: str) -> int:
            """Records in a topic set: checks a raw run actually landed."""
            return sum(
                sum(ours.end_offsets(spec.name).values())
                for spec in logs[name].catalog.event_topics
            )

        # A fresh broker runs at a third of its speed for its first ~20k records (JIT): get
        # that over with on throwaway topics, so the first figure measured is not penalised.
        broker_warmup = list(itertools.islice(itertools.cycle(data.records), run.broker_warmup))
        _say(f"warm-up: {len(broker_warmup)} records to warm the broker up")
        raw_send("warm", broker_warmup, len(broker_warmup))
        _say(f"warm-up: {len(data.warm_lines)} events through each producer")
        raw_send("raw", data.warm_records, len(data.warm_records))
        raw_send("rawbatch", data.warm_records, BATCH)
        publish_backend(logs["backend"], data.warm_lines, data.now, Timer())
        publish_documents(Ingest(ours, BATCH), data.warm_lines, Timer(), "warm-up")
        publish_documents(Ingest(logs["notx"], BATCH), data.warm_lines, Timer(), "warm-up")

        _say(f"raw producer: {measured} events, one flush at the end")
        t = Timer()
        with t:
            raw_send("raw", data.records, len(data.records))
        raw_pub = Figure("kafka_raw_produce", "raw kafka-python producer", measured, t)
        run.figures.append(raw_pub)

        _say(f"raw producer: {measured} events, flush every {BATCH}")
        t = Timer()
        with t:
            raw_send("rawbatch", data.records, BATCH)
        run.figures.append(
            Figure(
                "kafka_raw_produce_flush_per_batch",
                f"  raw producer, flush every {BATCH:,} (diagnostic)",
                measured,
                t,
                baseline=raw_pub,
            )
        )
        for name in ("raw", "rawbatch"):
            if stored(name) != len(data.warm_records) + len(data.records):
                raise SystemExit(f"raw producer ({name}): {stored(name)} records stored")

        _say(f"our log alone: KafkaLog.publish of {measured} pre-decoded events")
        t = Timer()
        appended = publish_backend(logs["backend"], data.lines, data.now, t)
        if appended != measured:
            raise SystemExit(f"KafkaLog.publish: {appended} of {measured} appended")
        run.figures.append(
            Figure(
                "kafka_ours_publish_backend",
                "  ours: KafkaLog.publish, pre-decoded (diagnostic)",
                measured,
                t,
                baseline=raw_pub,
            )
        )

        # The full path, sealed and unsealed, in alternating rounds on fresh topics each:
        # as istore publish (publish_lines) and in-process (publish_documents).
        def make_log(name: str) -> EventLog:
            log = KafkaLog(run.settings(name))
            stack.callback(log.close)
            run.created += log.ensure_topics()
            return log

        sealing = measure_sealing("Kafka", make_log, data, run.rounds)
        unsealed_pub, ours_pub = sealing_figures(
            "kafka_ours_publish",
            "ours: Ingest.publish_lines (KafkaLog)",
            sealing,
            "lines",
            measured,
        )
        in_process = sealing_figures(
            "kafka_ours_publish_in_process",
            "ours: Ingest.publish_documents, in-process",
            sealing,
            "documents",
            measured,
        )
        # The store's path is the sealed one: its goal against the raw producer stays, as a
        # figure of its own beside the ratio to the unsealed path.
        vs_raw = Figure(
            "kafka_ours_publish_vs_raw",
            "ours: Ingest.publish_lines (KafkaLog), sealed, as istore publish",
            measured,
            ours_pub.timer,
            baseline=raw_pub,
            goal=f">= {KAFKA_PUBLISH_GOAL}x raw",
        )
        vs_raw.passed = (vs_raw.ratio or 0) >= KAFKA_PUBLISH_GOAL
        unsealed_pub.baseline = raw_pub
        run.figures += [vs_raw, unsealed_pub, ours_pub, *in_process]
        # What the read figures read: warm-up and measured events, sealed.
        read_log = sealing.logs["documents-sealed0"]

        _say(f"our publish path without transactions: {measured} documents (fresh topics)")
        t = Timer()
        publish_lines(Ingest(logs["notx"], BATCH), data.lines, t, "without transactions")
        notx_pub = Figure(
            "kafka_ours_publish_no_transactions",
            "  ours, ISTORE_KAFKA_TRANSACTIONS=false (diagnostic)",
            measured,
            t,
            baseline=raw_pub,
        )
        run.figures.append(notx_pub)
        run.figures.append(
            Figure(
                "kafka_transactions_cost",
                "  ours with a transaction per batch, vs without",
                measured,
                ours_pub.timer,
                baseline=notx_pub,
            )
        )

        # ----------------------------------------------------------- reading the interactions
        logical = "interactions"
        expected = data.per_topic[logical]

        def raw_drain(topic: str, limit: int) -> int:
            consumer = KafkaConsumer(
                **raw_settings.kafka_client_config(),
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            try:
                parts = consumer.partitions_for_topic(topic) or set()
                tps = [TopicPartition(topic, p) for p in sorted(parts)]
                consumer.assign(tps)
                consumer.seek_to_beginning(*tps)
                n = 0
                deadline = time.monotonic() + DRAIN_TIMEOUT_S
                while n < limit and time.monotonic() < deadline:
                    for batch in consumer.poll(timeout_ms=200, max_records=BATCH).values():
                        n += len(batch)
                return n
            finally:
                consumer.close()

        def ours_drain(decode: bool, limit: int) -> int:
            read = [0]  # a cell the stop condition can see
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            for batch in ours.follow(
                topics=[read_log.catalog.by_name(logical).name],
                batch_size=BATCH,
                idle_sleep=0.2,
                until=lambda: read[0] >= limit or time.monotonic() > deadline,
            ):
                if decode:
                    for record in batch:
                        record.event()
                read[0] += len(batch)
            return read[0]

        _say("warm-up: reading")
        raw_drain(topic_of("raw", logical), BATCH)
        ours_drain(True, BATCH)

        _say(f"raw consumer: {expected} records of {logical}")
        t = Timer()
        with t:
            n = raw_drain(topic_of("raw", logical), expected)
        raw_read = Figure("kafka_raw_consume", f"raw kafka-python consumer ({logical})", n, t)
        run.figures.append(raw_read)

        _say("our read path: follow")
        t = Timer()
        with t:
            n = ours_drain(False, expected)
        run.figures.append(
            Figure("kafka_ours_follow", "ours: KafkaLog.follow (records)", n, t, baseline=raw_read)
        )
        _say("our read path: follow + decode")
        t = Timer()
        with t:
            n = ours_drain(True, expected)
        run.figures.append(
            Figure(
                "kafka_ours_follow_decode",
                "ours: KafkaLog.follow + record.event()",
                n,
                t,
                baseline=raw_read,
            )
        )
        for fig in run.figures[-3:]:
            if fig.events != expected:
                raise SystemExit(f"{fig.label}: read {fig.events} of {expected} records")


def delete_topics(bootstrap: str, names: list[str]) -> None:
    if not names:
        return
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="istore-bench")
    try:
        admin.delete_topics(names)
    except Exception as exc:  # best effort: leftovers are harmless, but say so
        _say(f"could not delete bench topics {names}: {exc}")
    finally:
        admin.close()


# --------------------------------------------------------------------------- sealing


MODES = ("lines", "documents")
"""The two ways of publishing measured with and without sealing: ``Ingest.publish_lines``
(as ``istore publish``: a worker process validates the next batch meanwhile) and
``Ingest.publish_documents`` (one batch at a time, all in this process, as the HTTP API)."""


@dataclass
class Sealing:
    """The full publish path on one log backend, sealed (the store's sealer, key store beside
    the log) and unsealed (a sealer that does nothing), measured in alternating rounds, each
    on a fresh log."""

    backend: str
    timers: dict[tuple[str, bool], list[Timer]] = field(default_factory=dict)
    """(mode, sealed) -> one timer per round."""
    logs: dict[str, EventLog] = field(default_factory=dict)
    """The measured logs by name (``lines-sealed0``, ...), open until the caller's stack
    closes them."""

    def best(self, mode: str, sealed: bool) -> Timer:
        return min(self.timers[(mode, sealed)], key=lambda t: t.seconds)


def measure_sealing(
    backend: str,
    make_log: Callable[[str], EventLog],
    data: Data,
    rounds: int,
) -> Sealing:
    """``rounds`` rounds of both paths (unsealed, sealed) in both modes over the same
    documents, each on a log of its own (fresh topics, a fresh folder) warmed with the warm-up
    documents first; the order flips every round so that neither side always runs first."""
    out = Sealing(backend)
    for r in range(rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        for mode in MODES:
            for sealed in order:
                name = f"{mode}-{'sealed' if sealed else 'unsealed'}{r}"
                log = make_log(name)
                out.logs[name] = log
                sealer: Sealer = sealer_of(log.settings) if sealed else PlainSealer()
                try:
                    ingest = Ingest(log, BATCH, sealer=sealer)
                    publish_documents(ingest, data.warm_lines, Timer(), f"{backend} warm-up")
                    _say(f"{backend}, round {r + 1}/{rounds}: {name}")
                    t = Timer()
                    if mode == "lines":
                        publish_lines(ingest, data.lines, t, f"{backend} {name}")
                    else:
                        publish_documents(ingest, data.lines, t, f"{backend} {name}")
                finally:
                    sealer.close()
                out.timers.setdefault((mode, sealed), []).append(t)
                _check_sealed(log, sealed, f"{backend} {name}")
    return out


def _check_sealed(log: EventLog, sealed: bool, what: str) -> None:
    """The first page of the interactions topic holds sealed fields exactly when it should."""
    topic = log.catalog.by_name("interactions").name
    page = log.read(topic, 0, 0, 1000)
    found = sum(1 for r in page if r.value is not None and b'"enc:v1:' in r.value)
    if sealed != (found > 0):
        raise SystemExit(f"{what}: {found} of {len(page)} records hold sealed fields")


def sealing_figures(key: str, label: str, s: Sealing, mode: str, measured: int) -> list[Figure]:
    """Best of the rounds of each path in one mode, and their ratio (the goal for
    ``lines``, the store's publish path; a diagnostic for ``documents``)."""
    goal = mode == "lines"
    indent = "" if goal else "  "
    unsealed = Figure(
        f"{key}_unsealed",
        f"{indent}{label}, unsealed (no-op Sealer)",
        measured,
        s.best(mode, False),
    )
    sealed = Figure(
        f"{key}_sealed",
        f"{indent}{label}, sealed",
        measured,
        s.best(mode, True),
        baseline=unsealed,
    )
    if goal:
        sealed.goal = f">= {SEALED_GOAL}x unsealed"
        sealed.passed = (sealed.ratio or 0) >= SEALED_GOAL
    rounds = {
        what: {
            "events_per_s": [round(measured / t.seconds) for t in s.timers[(mode, flag)]],
            "cpu_s": [
                round(t.cpu_seconds + t.child_cpu_seconds, 2) for t in s.timers[(mode, flag)]
            ],
        }
        for what, flag in (("sealed", True), ("unsealed", False))
    }
    sealed.note = unsealed.note = orjson.dumps(rounds).decode()
    return [unsealed, sealed]


def sealed_fields(records: Sequence[Prepared]) -> dict[str, float]:
    """How much of the data the sealer has to do: the share of events with a field to seal
    and the fields sealed per event (the demo mix)."""
    from interaction_store.privacy.fields import sealed_paths

    paths = {t: [p.split(".", 1) for p in ps] for t, ps in sealed_paths().items()}
    with_fields = fields = 0
    for _, _, value, kind in records:
        wanted = paths.get(kind.decode())
        if not wanted:
            continue
        doc = orjson.loads(value)
        n = sum(1 for head, name in wanted if (doc.get(head) or {}).get(name) is not None)
        fields += n
        with_fields += n > 0
    return {
        "events_with_sealed_fields": round(with_fields / len(records), 3),
        "sealed_fields_per_event": round(fields / len(records), 3),
    }


# --------------------------------------------------------------------------- embedded


def embedded_settings(folder: Path) -> Settings:
    return Settings(backend="embedded", data_dir=folder, master_key=MASTER_KEY)


def bench_embedded(data: Data, tmp: Path, rounds: int) -> list[Figure]:
    measured = len(data.lines)
    with ExitStack() as stack:
        backend = EmbeddedLog(embedded_settings(tmp / "embedded-backend"))
        stack.callback(backend.close)

        def make_log(name: str) -> EventLog:
            log = EmbeddedLog(embedded_settings(tmp / f"embedded-{name}"))
            stack.callback(log.close)
            return log

        _say(f"embedded warm-up: {len(data.warm_lines)} events")
        publish_backend(backend, data.warm_lines, data.now, Timer())

        sealing = measure_sealing("embedded", make_log, data, rounds)
        unsealed_fig, full_fig = sealing_figures(
            "embedded_append_full", "embedded: Ingest.publish_lines", sealing, "lines", measured
        )
        in_process = sealing_figures(
            "embedded_append_in_process",
            "embedded: Ingest.publish_documents, in-process",
            sealing,
            "documents",
            measured,
        )
        full = sealing.logs["lines-sealed0"]

        _say(f"embedded append, backend only: {measured} pre-decoded events")
        t = Timer()
        appended = publish_backend(backend, data.lines, data.now, t)
        if appended != measured:
            raise SystemExit(f"embedded backend: {appended} of {measured} appended")
        backend_fig = Figure(
            "embedded_append_backend",
            "embedded: EmbeddedLog.publish, pre-decoded",
            measured,
            t,
            goal=f">= {EMBEDDED_APPEND_GOAL:,}/s",
        )
        backend_fig.passed = backend_fig.rate >= EMBEDDED_APPEND_GOAL
        # What validation and encoding cost on top of the backend: the unsealed full path.
        unsealed_fig.baseline = backend_fig

        topics = [spec.name for spec in full.catalog.event_topics]
        total = len(data.warm_lines) + measured

        def read_all(decode: bool, limit: int | None = None) -> int:
            n = 0
            for topic in topics:
                offset = 0
                while limit is None or n < limit:
                    page = full.read(topic, 0, offset, BATCH)
                    if not page:
                        break
                    if decode:
                        for record in page:
                            record.event()
                    n += len(page)
                    offset = page[-1].position.offset + 1
            return n

        read_all(True, BATCH)  # warm-up
        _say(f"embedded read: {total} records in pages of {BATCH}")
        t = Timer()
        with t:
            n = read_all(False)
        read_fig = Figure("embedded_read", "embedded: EmbeddedLog.read pages", n, t)
        t = Timer()
        with t:
            n = read_all(True)
        decode_fig = Figure(
            "embedded_read_decode",
            "embedded: read pages + record.event()",
            n,
            t,
            baseline=read_fig,
        )
        for fig in (read_fig, decode_fig):
            if fig.events != total:
                raise SystemExit(f"{fig.label}: read {fig.events} of {total} records")
    return [unsealed_fig, full_fig, *in_process, backend_fig, read_fig, decode_fig]


# --------------------------------------------------------------------------- profiling


def profile_paths(data: Data, tmp: Path, bootstrap: str | None, count: int, top: int) -> None:
    """cProfile of our publish paths, unsealed (a no-op sealer) then sealed, each on a fresh
    log. Main thread only: the Kafka sender thread is not in it; GC pauses are charged to
    whichever call allocated when the collector ran."""
    lines = data.lines[:count]

    def profiled(title: str, log: EventLog, sealer: Sealer) -> None:
        ingest = Ingest(log, batch_size=BATCH, sealer=sealer)
        ingest.publish_documents(data.warm_lines, "bench")
        prof = cProfile.Profile()
        t = Timer()
        with t:
            prof.enable()
            for batch in _batches(lines):
                ingest.publish_documents(batch, "bench")
            prof.disable()
        sealer.close()
        for order in ("tottime", "cumulative"):
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats(order).print_stats(top)
            print(
                f"\n=== profile: {title}, {len(lines):,} documents, by {order} "
                f"(wall {t.seconds:.2f}s under the profiler, of it GC {t.gc_seconds:.2f}s) ==="
            )
            print(buf.getvalue().split("\n\n", 1)[-1].rstrip())

    for sealed in (False, True):
        what = "sealed" if sealed else "unsealed"
        settings = embedded_settings(tmp / f"profile-embedded-{what}")
        with EmbeddedLog(settings) as log:
            sealer = sealer_of(settings) if sealed else PlainSealer()
            profiled(f"embedded Ingest.publish_documents, {what}", log, sealer)
    if bootstrap is None:
        return
    from interaction_store.log.kafka import KafkaLog

    tag = uuid.uuid4().hex[:8]
    created: list[str] = []
    try:
        for sealed in (False, True):
            what = "sealed" if sealed else "unsealed"
            settings = Settings(
                backend="kafka",
                data_dir=tmp / f"profile-kafka-{what}",
                kafka_bootstrap_servers=bootstrap,
                topic_prefix=f"bench{tag}.profile-{what}.",
                master_key=MASTER_KEY,
            )
            with KafkaLog(settings) as klog:
                created += klog.ensure_topics()
                sealer = sealer_of(settings) if sealed else PlainSealer()
                profiled(f"Kafka Ingest.publish_documents, {what}", klog, sealer)
    finally:
        delete_topics(bootstrap, created)


# --------------------------------------------------------------------------- output


def print_table(figures: list[Figure]) -> None:
    header = ("figure", "events", "s", "cpu s", "gc s", "events/s", "ratio", "goal", "result")
    rows = [header]
    for f in figures:
        rows.append(
            (
                f.label,
                f"{f.events:,}",
                f"{f.timer.seconds:.2f}",
                f"{f.timer.cpu_seconds:.2f}",
                f"{f.timer.gc_seconds:.2f}",
                f"{f.rate:,.0f}",
                "" if f.ratio is None else f"{f.ratio:.2f}x",
                f.goal,
                "" if f.passed is None else ("PASS" if f.passed else "FAIL"),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [
            c.rjust(w) if 0 < i < 7 else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows[1:]:
        print(line(row))
    print("\nratio = events/s over the baseline's events/s:")
    for f in figures:
        if f.baseline is not None:
            print(f"  {f.label.strip()}  /  {f.baseline.label.strip()}")


def print_sealing(figures: list[Figure], info: dict[str, Any]) -> None:
    """The encryption figures on their own: each backend's publish path with and without
    sealing, the ratio, and every round's rate and CPU (this process and the validation
    worker)."""
    sealed = [f for f in figures if f.key.endswith("_sealed") and f.baseline is not None]
    if not sealed:
        return
    share = info["sealing"]
    print(
        f"\nwith and without encryption (best of {info['rounds']} alternating rounds, each on "
        f"a fresh log; {share['events_with_sealed_fields']:.0%} of the events have fields to "
        f"seal, {share['sealed_fields_per_event']:.2f} fields an event):"
    )
    for f in sealed:
        assert f.baseline is not None
        rounds = orjson.loads(f.note)
        verdict = "" if f.passed is None else (" met" if f.passed else " NOT met")
        goal = f" (goal >= {SEALED_GOAL}x:{verdict})" if f.passed is not None else ""
        print(
            f"  {f.label.strip().rsplit(',', 1)[0]}: {f.rate:,.0f}/s sealed vs "
            f"{f.baseline.rate:,.0f}/s unsealed = {f.ratio:.2f}x{goal}"
        )
        for what in ("sealed", "unsealed"):
            r = rounds[what]
            print(f"      {what:8} rounds: events/s {r['events_per_s']}, cpu s {r['cpu_s']}")
        rate = {what: statistics.median(rounds[what]["events_per_s"]) for what in rounds}
        cpu = {what: statistics.median(rounds[what]["cpu_s"]) for what in rounds}
        print(
            f"      medians of the rounds: {rate['sealed']:,.0f} / {rate['unsealed']:,.0f} "
            f"events/s = {rate['sealed'] / rate['unsealed']:.2f}x; CPU (this process + "
            f"validation worker) {cpu['unsealed']:.2f} s unsealed / {cpu['sealed']:.2f} s "
            f"sealed = {cpu['unsealed'] / cpu['sealed']:.2f}x"
        )


# --------------------------------------------------------------------------- main


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.log_throughput", description=__doc__)
    p.add_argument("--events", type=int, default=100_000, help="events measured per figure")
    p.add_argument("--warmup", type=int, default=BATCH, help="events sent before measuring")
    p.add_argument(
        "--broker-warmup",
        type=int,
        default=30_000,
        help="records sent to throwaway topics first, so the broker's JIT is warm",
    )
    p.add_argument("--contacts", type=int, default=1000, help="contacts in the demo data")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        or os.environ.get("ISTORE_KAFKA_BOOTSTRAP_SERVERS"),
        help="Kafka bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS, else a local broker)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="rounds of the full publish path sealed and unsealed (alternating, fresh logs; "
        "the best of each is kept)",
    )
    p.add_argument("--no-kafka", action="store_true", help="only the embedded figures")
    p.add_argument("--no-embedded", action="store_true", help="only the Kafka figures")
    p.add_argument(
        "--gc",
        choices=("freeze", "default", "off"),
        default="freeze",
        help="freeze (default): the bench's own prepared data is moved out of the collector's "
        "reach (gc.freeze), so collections cost what they would in a publisher process; "
        "default: leave it in; off: no cyclic GC while measuring (to see what GC costs)",
    )
    p.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=30_000,
        default=0,
        metavar="N",
        help="after measuring, cProfile our publish paths on N documents (default 30000)",
    )
    p.add_argument("--profile-top", type=int, default=25, help="profile rows shown")
    args = p.parse_args(argv)
    if args.events < 1 or args.warmup < 0 or args.broker_warmup < 0 or args.contacts < 1:
        p.error("--events and --contacts must be >= 1, the warm-ups >= 0")
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    return args


def measure(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, Any], list[Figure]]:
    """Every figure the arguments ask for, and what describes the run."""
    info: dict[str, Any] = {"load_average_start": [round(x, 2) for x in os.getloadavg()]}
    _say(f"making {args.warmup} + {args.events} documents")
    t = Timer()
    with t:
        data = make_data(args.events, args.warmup, args.contacts, args.seed, tmp)
    sizes = [len(line) for line in data.lines]
    stored = [len(r[2]) for r in data.records]
    info |= {
        "documents": data.origin,
        "document_bytes": {
            "mean": round(sum(sizes) / len(sizes)),
            "min": min(sizes),
            "max": max(sizes),
            "stored_mean": round(sum(stored) / len(stored)),
        },
        "per_topic": dict(data.per_topic),
        "make_seconds": round(t.seconds, 1),
        "gc_mode": args.gc,
        "sealing": sealed_fields(data.records),
        "rounds": args.rounds,
    }
    _say(f"documents ready after {t.seconds:.1f}s")
    if args.gc == "freeze":
        gc.collect()
        gc.freeze()
    elif args.gc == "off":
        gc.disable()

    figures: list[Figure] = []
    if not args.no_embedded:
        figures += bench_embedded(data, tmp, args.rounds)
    bootstrap: str | None = None
    broker = None
    try:
        if not args.no_kafka:
            bootstrap = args.bootstrap
            if not bootstrap:
                from interaction_store.kafka_local import LocalKafka

                _say("starting a local Kafka broker (use --bootstrap to bring your own)")
                broker = LocalKafka(tmp / "kafka")
                broker.ensure_jars()
                t = Timer()
                with t:
                    bootstrap = broker.start()
                _say(f"broker at {bootstrap} after {t.seconds:.1f}s")
            run = KafkaRun(
                bootstrap, data, tmp, broker_warmup=args.broker_warmup, rounds=args.rounds
            )
            try:
                bench_kafka(run)
            finally:
                if broker is None:  # someone else's broker: leave no bench topics behind
                    delete_topics(bootstrap, run.created)
            figures = run.figures + figures
            info["kafka"] = {
                "bootstrap": bootstrap,
                "local_broker": broker is not None,
                "producer": run.producer_settings,
            }
        info["peak_rss_mb"] = round(_rss_peak_mb())  # before profiling, which adds its own
        info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        if args.profile:
            gc.enable()
            gc.collect()
            gc.freeze()  # as in the default mode: the bench's own data is not the publisher's
            profile_paths(data, tmp, bootstrap, args.profile, args.profile_top)
    finally:
        if broker is not None:
            broker.stop()
    return info, figures


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    started = time.perf_counter()
    gc.callbacks.append(GC_CLOCK)
    with tempfile.TemporaryDirectory(prefix="istore-bench-") as tmp:
        info, figures = measure(args, Path(tmp))
    kafka_info = info.get("kafka")
    total = time.perf_counter() - started
    sizes_info = info["document_bytes"]
    print()
    print(
        f"log throughput: {args.events:,} events per figure (+{args.warmup:,} warm-up), "
        f"batches of {BATCH:,}, gc {args.gc}"
    )
    print(
        f"documents: {info['documents']}; {sizes_info['mean']} B mean "
        f"({sizes_info['min']}-{sizes_info['max']}), {sizes_info['stored_mean']} B as stored; "
        f"per topic {info['per_topic']}"
    )
    if kafka_info:
        where = " (local broker started for this run)" if kafka_info["local_broker"] else ""
        print(f"kafka: {kafka_info['bootstrap']}{where}")
        print(f"producer settings, ours = raw: {kafka_info['producer']}")
    print()
    print_table(figures)
    print_sealing(figures, info)
    print()
    print(
        f"peak RSS {info['peak_rss_mb']} MB; wall {total:.0f}s; "
        f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}; load average "
        f"{info['load_average_start'][0]} at start, {info['load_average_end'][0]} at end "
        "(other work on the machine skews every figure)"
    )
    summary = {
        "bench": "log_throughput",
        "events": args.events,
        **info,
        "rates": {f.key: round(f.rate) for f in figures},
        "ratios": {f.key: round(f.ratio, 3) for f in figures if f.ratio is not None},
        "gc_seconds": {f.key: round(f.timer.gc_seconds, 2) for f in figures},
        "goals": {f.key: f.passed for f in figures if f.passed is not None},
        "sealing_rounds": {
            f.key: orjson.loads(f.note) for f in figures if f.key.endswith("_sealed")
        },
        "sealing_median_ratios": {
            f.key: round(
                statistics.median(orjson.loads(f.note)["sealed"]["events_per_s"])
                / statistics.median(orjson.loads(f.note)["unsealed"]["events_per_s"]),
                3,
            )
            for f in figures
            if f.key.endswith("_sealed")
        },
        "sealing_cpu_ratios": {
            f.key: round(
                statistics.median(orjson.loads(f.note)["unsealed"]["cpu_s"])
                / statistics.median(orjson.loads(f.note)["sealed"]["cpu_s"]),
                3,
            )
            for f in figures
            if f.key.endswith("_sealed")
        },
        "wall_seconds": round(total, 1),
    }
    print(orjson.dumps(summary).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
