"""Log throughput: our publish and read paths against raw kafka-python, and the embedded log.

Run: ``.venv/bin/python -m bench.log_throughput [--events 100000] [--bootstrap HOST:PORT]``.
Without ``--bootstrap`` (or KAFKA_BOOTSTRAP_SERVERS) a local broker is started in a temporary
folder and stopped at the end. Prints a table of figures, then one line of JSON. The figures
are measurements, not tests: the exit status is 0 whether or not a goal is met.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import os
import pstats
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.documents import documents
from interaction_store.catalog import StreamCatalog
from interaction_store.codec import encode
from interaction_store.events import InteractionEvent
from interaction_store.ingest import Ingest, Outcome
from interaction_store.log.embedded import EmbeddedLog
from interaction_store.settings import Settings

BATCH = 5000
"""Documents per publish call and records per read page (the CLI's default batch)."""

KAFKA_PUBLISH_GOAL = 0.8
"""Our Kafka publish path, as a fraction of the raw producer's rate."""

EMBEDDED_APPEND_GOAL = 50_000
"""Events per second appended to the embedded log."""

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


# --------------------------------------------------------------------------- figures


@dataclass
class Figure:
    """One measurement: how many events in how long, optionally against a baseline."""

    key: str
    label: str
    events: int
    seconds: float
    cpu_seconds: float
    baseline: Figure | None = None
    goal: str = ""
    passed: bool | None = None

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")

    @property
    def ratio(self) -> float | None:
        return None if self.baseline is None else self.rate / self.baseline.rate


@dataclass
class Timer:
    """Wall and process CPU time (all threads) of a block."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    _wall: float = field(default=0.0, repr=False)
    _cpu: float = field(default=0.0, repr=False)

    def __enter__(self) -> Timer:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.cpu_seconds = time.process_time() - self._cpu


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _batches(items: Sequence[Any], size: int = BATCH) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _check_outcomes(outcomes: list[Outcome], expected: int, what: str) -> None:
    accepted = sum(1 for o in outcomes if o.status == "accepted")
    if accepted != expected:
        statuses = {o.status for o in outcomes}
        raise SystemExit(f"{what}: {accepted} of {expected} accepted (statuses {statuses})")


# --------------------------------------------------------------------------- data


@dataclass
class Data:
    """The documents of one run: warm-up and measured, raw and pre-decoded."""

    warm_lines: list[bytes]
    lines: list[bytes]
    warm_events: list[InteractionEvent]
    events: list[InteractionEvent]
    origin: str

    @property
    def all_events(self) -> list[InteractionEvent]:
        return self.warm_events + self.events


def make_data(count: int, warmup: int, contacts: int, seed: int) -> Data:
    lines, events, origin = documents(warmup + count, contacts, seed)
    # Ingest stamps recorded_at; the pre-decoded events get it too so both store the same bytes.
    now = datetime.now(UTC)
    events = [e.with_recorded_at(now) for e in events]
    return Data(lines[:warmup], lines[warmup:], events[:warmup], events[warmup:], origin)


# --------------------------------------------------------------------------- Kafka


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class KafkaRun:
    bootstrap: str
    data: Data
    tmp: Path
    figures: list[Figure] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    producer_settings: dict[str, Any] = field(default_factory=dict)

    def settings(self, prefix: str, name: str) -> Settings:
        return Settings(
            backend="kafka",
            data_dir=self.tmp / name,
            kafka_bootstrap_servers=self.bootstrap,
            topic_prefix=prefix,
            kafka_client_id=f"istore-bench-{name}",
        )


def bench_kafka(run: KafkaRun) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    from interaction_store.log.kafka import TYPE_HEADER, KafkaLog

    tag = uuid.uuid4().hex[:8]
    ours_settings = run.settings(f"bench{tag}.ours.", "ours")
    raw_settings = run.settings(f"bench{tag}.raw.", "raw")
    data = run.data

    with ExitStack() as stack:
        ours = KafkaLog(ours_settings)
        stack.callback(ours.close)
        run.created += ours.ensure_topics()
        # The raw topics come from the same catalog (another prefix): same partition counts.
        raw_log = KafkaLog(raw_settings)
        run.created += raw_log.ensure_topics()
        raw_log.close()
        raw_catalog = StreamCatalog.load(raw_settings)

        # Same settings as our producer: read them off it rather than repeating them here.
        tuning = {k: ours.producer.config[k] for k in PRODUCER_TUNING if k in ours.producer.config}
        run.producer_settings = {k: _jsonable(v) for k, v in tuning.items()}
        producer = KafkaProducer(**raw_settings.kafka_client_config(), **tuning)
        stack.callback(producer.close)

        def prepared(events: Sequence[InteractionEvent]) -> list[tuple[str, bytes, bytes, Any]]:
            # What our log sends for each event: topic, key, encoded value, type header.
            return [
                (
                    raw_catalog.topic_for(e.type).name,
                    e.key.encode(),
                    encode(e),
                    [(TYPE_HEADER, e.type.encode())],
                )
                for e in events
            ]

        def raw_send(records: list[tuple[str, bytes, bytes, Any]]) -> list[Any]:
            futures = [producer.send(t, value=v, key=k, headers=h) for t, k, v, h in records]
            producer.flush()
            return futures

        def ours_publish(lines: Sequence[bytes]) -> list[Outcome]:
            ingest = Ingest(ours, batch_size=BATCH)
            out: list[Outcome] = []
            for batch in _batches(lines):
                out += ingest.publish_documents(batch, "bench")
            return out

        warm_records = prepared(data.warm_events)
        records = prepared(data.events)

        _say(f"warm-up: {len(warm_records)} events through each producer")
        raw_send(warm_records)
        _check_outcomes(ours_publish(data.warm_lines), len(data.warm_lines), "warm-up")

        _say(f"raw producer: {len(records)} events")
        with Timer() as t:
            futures = raw_send(records)
        failed = sum(1 for f in futures if f.failed())
        if failed:
            raise SystemExit(f"raw producer: {failed} of {len(futures)} sends failed")
        raw_pub = Figure(
            "kafka_raw_produce", "raw kafka-python producer", len(records), t.seconds, t.cpu_seconds
        )
        run.figures.append(raw_pub)

        _say(f"our publish path: {len(data.lines)} documents")
        with Timer() as t:
            outcomes = ours_publish(data.lines)
        _check_outcomes(outcomes, len(data.lines), "our publish path")
        ours_pub = Figure(
            "kafka_ours_publish",
            "ours: Ingest.publish_documents (KafkaLog)",
            len(data.lines),
            t.seconds,
            t.cpu_seconds,
            baseline=raw_pub,
            goal=f">= {KAFKA_PUBLISH_GOAL}x raw",
        )
        ours_pub.passed = (ours_pub.ratio or 0) >= KAFKA_PUBLISH_GOAL
        run.figures.append(ours_pub)

        # ----------------------------------------------------------- reading the interactions
        logical = "interactions"
        ours_topic = ours.catalog.by_name(logical).name
        raw_topic = raw_catalog.by_name(logical).name
        expected = sum(
            1 for e in data.all_events if ours.catalog.topic_for(e.type).logical == logical
        )

        def raw_drain(topic: str, limit: int) -> int:
            from kafka import TopicPartition

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
                topics=[ours_topic],
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
        raw_drain(raw_topic, BATCH)
        ours_drain(True, BATCH)

        _say(f"raw consumer: {expected} records of {logical}")
        with Timer() as t:
            n = raw_drain(raw_topic, expected)
        raw_read = Figure(
            "kafka_raw_consume",
            f"raw kafka-python consumer ({logical})",
            n,
            t.seconds,
            t.cpu_seconds,
        )
        run.figures.append(raw_read)

        _say("our read path: follow")
        with Timer() as t:
            n = ours_drain(False, expected)
        run.figures.append(
            Figure(
                "kafka_ours_follow",
                "ours: KafkaLog.follow (records)",
                n,
                t.seconds,
                t.cpu_seconds,
                baseline=raw_read,
            )
        )
        _say("our read path: follow + decode")
        with Timer() as t:
            n = ours_drain(True, expected)
        run.figures.append(
            Figure(
                "kafka_ours_follow_decode",
                "ours: KafkaLog.follow + record.event()",
                n,
                t.seconds,
                t.cpu_seconds,
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


# --------------------------------------------------------------------------- embedded


def bench_embedded(data: Data, tmp: Path) -> list[Figure]:
    figures: list[Figure] = []
    with ExitStack() as stack:
        full = EmbeddedLog(Settings(backend="embedded", data_dir=tmp / "embedded-full"))
        stack.callback(full.close)
        backend = EmbeddedLog(Settings(backend="embedded", data_dir=tmp / "embedded-backend"))
        stack.callback(backend.close)
        ingest = Ingest(full, batch_size=BATCH)

        _say(f"embedded warm-up: {len(data.warm_lines)} events")
        _check_outcomes(
            ingest.publish_documents(data.warm_lines, "bench"), len(data.warm_lines), "warm-up"
        )
        backend.publish(data.warm_events)

        _say(f"embedded append, full path: {len(data.lines)} documents")
        outcomes: list[Outcome] = []
        with Timer() as t:
            for batch in _batches(data.lines):
                outcomes += ingest.publish_documents(batch, "bench")
        _check_outcomes(outcomes, len(data.lines), "embedded full path")
        full_fig = Figure(
            "embedded_append_full",
            "embedded: Ingest.publish_documents",
            len(data.lines),
            t.seconds,
            t.cpu_seconds,
            goal=f">= {EMBEDDED_APPEND_GOAL:,}/s",
        )
        full_fig.passed = full_fig.rate >= EMBEDDED_APPEND_GOAL
        figures.append(full_fig)

        _say(f"embedded append, backend only: {len(data.events)} pre-decoded events")
        appended = 0
        with Timer() as t:
            for batch in _batches(data.events):
                appended += sum(1 for a in backend.publish(batch) if not a.duplicate)
        if appended != len(data.events):
            raise SystemExit(f"embedded backend: {appended} of {len(data.events)} appended")
        backend_fig = Figure(
            "embedded_append_backend",
            "embedded: EmbeddedLog.publish (pre-decoded)",
            len(data.events),
            t.seconds,
            t.cpu_seconds,
            goal=f">= {EMBEDDED_APPEND_GOAL:,}/s",
        )
        backend_fig.passed = backend_fig.rate >= EMBEDDED_APPEND_GOAL
        figures.append(backend_fig)

        topics = [spec.name for spec in full.catalog.event_topics]
        total = len(data.warm_lines) + len(data.lines)

        def read_all(log: EmbeddedLog, decode: bool, limit: int | None = None) -> int:
            n = 0
            for topic in topics:
                offset = 0
                while limit is None or n < limit:
                    page = log.read(topic, 0, offset, BATCH)
                    if not page:
                        break
                    if decode:
                        for record in page:
                            record.event()
                    n += len(page)
                    offset = page[-1].position.offset + 1
            return n

        read_all(full, True, BATCH)  # warm-up
        _say(f"embedded read: {total} records in pages of {BATCH}")
        with Timer() as t:
            n = read_all(full, False)
        read_fig = Figure(
            "embedded_read", "embedded: EmbeddedLog.read pages", n, t.seconds, t.cpu_seconds
        )
        figures.append(read_fig)
        with Timer() as t:
            n = read_all(full, True)
        figures.append(
            Figure(
                "embedded_read_decode",
                "embedded: read pages + record.event()",
                n,
                t.seconds,
                t.cpu_seconds,
                baseline=read_fig,
            )
        )
        # The full-path append relative to the backend alone: what validation costs.
        full_fig.baseline = backend_fig
        for fig in figures[-2:]:
            if fig.events != total:
                raise SystemExit(f"{fig.label}: read {fig.events} of {total} records")
    return figures


# --------------------------------------------------------------------------- profiling


def profile_paths(data: Data, tmp: Path, bootstrap: str | None, count: int, top: int) -> None:
    """cProfile of our publish paths (main thread only: the Kafka sender thread is not in it)."""
    lines = data.lines[:count]

    def report(title: str, prof: cProfile.Profile) -> None:
        for order in ("tottime", "cumulative"):
            buf = io.StringIO()
            stats = pstats.Stats(prof, stream=buf)
            stats.sort_stats(order).print_stats(top)
            print(f"\n=== profile: {title}, {len(lines)} documents, by {order} ===")
            print(buf.getvalue().split("\n\n", 1)[-1].rstrip())

    with EmbeddedLog(Settings(backend="embedded", data_dir=tmp / "profile-embedded")) as log:
        ingest = Ingest(log, batch_size=BATCH)
        ingest.publish_documents(data.warm_lines, "bench")
        prof = cProfile.Profile()
        prof.enable()
        for batch in _batches(lines):
            ingest.publish_documents(batch, "bench")
        prof.disable()
        report("embedded Ingest.publish_documents", prof)

    if bootstrap is None:
        return
    from interaction_store.log.kafka import KafkaLog

    settings = Settings(
        backend="kafka",
        data_dir=tmp / "profile-kafka",
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=f"bench{uuid.uuid4().hex[:8]}.profile.",
    )
    created: list[str] = []
    try:
        with KafkaLog(settings) as klog:
            created = klog.ensure_topics()
            ingest = Ingest(klog, batch_size=BATCH)
            ingest.publish_documents(data.warm_lines, "bench")
            prof = cProfile.Profile()
            prof.enable()
            for batch in _batches(lines):
                ingest.publish_documents(batch, "bench")
            prof.disable()
            report("Kafka Ingest.publish_documents", prof)
    finally:
        delete_topics(bootstrap, created)


# --------------------------------------------------------------------------- output


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def print_table(figures: list[Figure]) -> None:
    header = ("figure", "events", "seconds", "cpu s", "events/s", "ratio", "goal", "result")
    rows = [header]
    for f in figures:
        ratio = "" if f.ratio is None else f"{f.ratio:.2f}x"
        result = "" if f.passed is None else ("PASS" if f.passed else "FAIL")
        rows.append(
            (
                f.label,
                f"{f.events:,}",
                f"{f.seconds:.2f}",
                f"{f.cpu_seconds:.2f}",
                _fmt_rate(f.rate),
                ratio,
                f.goal,
                result,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    right = {1, 2, 3, 4, 5}

    def line(row: Sequence[str]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows[1:]:
        print(line(row))
    print("ratio = events/s over the baseline's:")
    for f in figures:
        if f.baseline is not None:
            print(f"  {f.label}  /  {f.baseline.label}")


# --------------------------------------------------------------------------- main


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.log_throughput", description=__doc__)
    p.add_argument("--events", type=int, default=100_000, help="events measured per figure")
    p.add_argument("--warmup", type=int, default=BATCH, help="events sent before measuring")
    p.add_argument("--contacts", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        or os.environ.get("ISTORE_KAFKA_BOOTSTRAP_SERVERS"),
        help="Kafka bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS, else a local broker)",
    )
    p.add_argument("--no-kafka", action="store_true", help="only the embedded figures")
    p.add_argument("--no-embedded", action="store_true", help="only the Kafka figures")
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
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    started = time.perf_counter()
    _say(f"making {args.warmup} + {args.events} documents")
    with Timer() as t:
        data = make_data(args.events, args.warmup, args.contacts, args.seed)
    sizes = [len(line) for line in data.lines]
    encoded = [len(encode(e)) for e in data.events[:10_000]]
    info: dict[str, Any] = {
        "documents": data.origin,
        "document_bytes_mean": round(sum(sizes) / len(sizes)),
        "document_bytes_min_max": [min(sizes), max(sizes)],
        "stored_bytes_mean": round(sum(encoded) / len(encoded)),
        "make_seconds": round(t.seconds, 1),
    }
    figures: list[Figure] = []
    kafka_info: dict[str, Any] = {}
    bootstrap: str | None = None

    with tempfile.TemporaryDirectory(prefix="istore-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if not args.no_embedded:
            figures += bench_embedded(data, tmp)
        broker = None
        try:
            if not args.no_kafka:
                bootstrap = args.bootstrap
                if not bootstrap:
                    from interaction_store.kafka_local import LocalKafka

                    _say("starting a local Kafka broker (use --bootstrap to bring your own)")
                    broker = LocalKafka(tmp / "kafka")
                    broker.ensure_jars()
                    with Timer() as t:
                        bootstrap = broker.start()
                    _say(f"broker at {bootstrap} after {t.seconds:.1f}s")
                run = KafkaRun(bootstrap, data, tmp)
                try:
                    bench_kafka(run)
                finally:
                    if broker is None:
                        delete_topics(bootstrap, run.created)
                figures = run.figures + figures
                kafka_info = {
                    "bootstrap": bootstrap,
                    "local_broker": broker is not None,
                    "producer": run.producer_settings,
                }
            if args.profile:
                profile_paths(data, tmp, bootstrap, args.profile, args.profile_top)
        finally:
            if broker is not None:
                broker.stop()

    total = time.perf_counter() - started
    print()
    print(
        f"log throughput: {args.events:,} events per figure (+{args.warmup:,} warm-up), "
        f"batches of {BATCH:,}; documents: {info['documents']}, "
        f"mean {info['document_bytes_mean']} B ({info['document_bytes_min_max'][0]}"
        f"-{info['document_bytes_min_max'][1]}), stored {info['stored_bytes_mean']} B"
    )
    if kafka_info:
        print(
            f"kafka: {kafka_info['bootstrap']}"
            f"{' (local broker started for this run)' if kafka_info['local_broker'] else ''}; "
            f"producer settings (ours = raw): {kafka_info['producer']}"
        )
    print()
    print_table(figures)
    print()
    print(f"peak RSS {_rss_mb():.0f} MB; wall {total:.0f}s; cpus {os.cpu_count()}")
    summary = {
        "bench": "log_throughput",
        "events": args.events,
        **info,
        **({"kafka": kafka_info} if kafka_info else {}),
        "rates": {f.key: round(f.rate) for f in figures},
        "ratios": {f.key: round(f.ratio, 3) for f in figures if f.ratio is not None},
        "goals": {f.key: f.passed for f in figures if f.passed is not None},
        "peak_rss_mb": round(_rss_mb()),
        "wall_seconds": round(total, 1),
    }
    print(orjson.dumps(summary).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
