"""Projection throughput: the worker (`istore run --once`) from Kafka into SQLite and PostgreSQL
views against a bare kafka-python drain of the same topics, replays, and timeline latency.

Run: ``.venv/bin/python -m bench.projections [--events 1000000] [--bootstrap HOST:PORT]
[--postgres-dsn DSN] [--only sqlite|postgres]``. Without ``--bootstrap`` a local broker, and
without ``--postgres-dsn`` a local PostgreSQL cluster, is started in a temporary folder and
stopped at the end. Prints a table of figures, the goals, then one line of JSON. The figures
are measurements, not tests: the exit status is 0 whether or not a goal is met.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import os
import pstats
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import SecretStr

from bench.plain import PlainSealer, new_master_key
from interaction_store import demo
from interaction_store.catalog import StreamCatalog
from interaction_store.codec import collector_paused, encode
from interaction_store.ingest import Ingest
from interaction_store.log.base import EventLog
from interaction_store.log.embedded import EmbeddedLog
from interaction_store.log.kafka import KafkaLog
from interaction_store.privacy import open_key_store
from interaction_store.privacy.sealing import Sealer, sealer_of
from interaction_store.projection.registry import KINDS
from interaction_store.read import ReadAPI
from interaction_store.settings import Settings

PUBLISH_BATCH = 5000
"""Documents per publish batch (``istore publish``'s default)."""

WORKER_BATCH = 2000
"""Records per worker batch (``istore run``'s default); the bare drain polls as many."""

SQLITE_VS_DRAIN_GOAL = 0.5
"""Kafka -> SQLite projection (all views), as a fraction of the bare drain's rate."""

REPLAY_GOAL_S = 60.0
"""Seconds for an ``istore replay`` of 1,000,000 events (SQLite)."""

POSTGRES_GOAL = 10_000
"""Kafka -> PostgreSQL projection (all views), events per second."""

TIMELINE_P99_GOAL_MS = 5.0
"""99th percentile of one timeline page through the Python read API."""

RSS_GOAL_MB = 400.0
"""Peak resident memory of the projection worker."""

SEALED_WORKER_GOAL = 0.9
"""The worker opening sealed fields (events published sealed), as a fraction of the same
worker with an opener that does nothing (the same events published unsealed)."""

GOAL_SCALE = 1_000_000
"""The events the goals are stated for."""

MASTER_KEY = new_master_key()
"""The master key of this run's stores (on Kafka and PostgreSQL there is no default)."""

DRAIN_TIMEOUT_S = 600.0
RSS_POLL_S = 0.05
EVENTS_PER_CONTACT = demo.estimate_events(1000) / 1000
"""A year of demo data per contact (about 93 events)."""

_CLI = ("-m", "interaction_store.cli")
_WORKER = ("-m", "bench.worker")


# --------------------------------------------------------------------------- helpers


def _say(message: str) -> None:
    load = os.getloadavg()[0]
    print(f"[bench] {message} (load {load:.2f})", file=sys.stderr, flush=True)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Figure:
    """One measured step: records in so many wall seconds, optionally against a baseline."""

    key: str
    label: str
    records: int
    seconds: float
    cpu_seconds: float | None = None
    rss_mb: float | None = None
    baseline: Figure | None = None
    load: float = field(default_factory=_load)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else math.inf

    @property
    def ratio(self) -> float | None:
        return None if self.baseline is None else self.rate / self.baseline.rate


@dataclass
class Goal:
    key: str
    text: str
    measured: str
    passed: bool
    scaled: bool = False
    """The figure is extrapolated to GOAL_SCALE events (the run had fewer)."""


@dataclass
class Latency:
    backend: str
    queries: int
    ms: list[float]
    entries_mean: float
    empty: int
    load: float = field(default_factory=_load)

    def at(self, q: float) -> float:
        return _percentile(self.ms, q)

    def summary(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "p50_ms": round(self.at(0.50), 3),
            "p90_ms": round(self.at(0.90), 3),
            "p99_ms": round(self.at(0.99), 3),
            "p999_ms": round(self.at(0.999), 3),
            "max_ms": round(self.ms[-1], 3) if self.ms else None,
            "mean_ms": round(sum(self.ms) / len(self.ms), 3) if self.ms else None,
            "entries_per_page": round(self.entries_mean, 1),
            "empty_pages": self.empty,
            "load": self.load,
        }


# --------------------------------------------------------------------------- subprocesses


@dataclass
class ChildRun:
    """What one ``istore`` subprocess did: its own wall clock, CPU and peak RSS (wait4)."""

    argv: list[str]
    seconds: float
    cpu_seconds: float
    rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    first_output_s: float | None
    """Seconds from launch to the worker's first line (start-up: imports, schema, registry)."""


def _vm_hwm_mb(pid: int) -> float | None:
    """The process's own peak resident set (VmHWM), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        return None
    return None


def run_child(argv: list[str], env: dict[str, str], cwd: Path) -> ChildRun:
    """Run ``python ...argv`` and measure it: wall clock, CPU from ``os.wait4`` (this child's
    own rusage), peak RSS by polling /proc/<pid>/status VmHWM every 50 ms (a high-water mark,
    so only growth in the last 50 ms before exit can be missed). Not ru_maxrss: Linux carries
    the forking parent's high-water mark over the exec, so every child would report at least
    this process's size."""
    command = [sys.executable, *argv]
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out: list[bytes] = []
    err: list[bytes] = []
    first: list[float] = []
    peak = [0.0]
    done = threading.Event()

    def pump(stream: IO[bytes], into: list[bytes], stamp: bool) -> None:
        while chunk := os.read(stream.fileno(), 65536):
            if stamp and not first:
                first.append(time.perf_counter() - started)
            into.append(chunk)

    def watch() -> None:
        while not done.is_set():
            hwm = _vm_hwm_mb(proc.pid)
            if hwm is not None:
                peak[0] = max(peak[0], hwm)
            done.wait(RSS_POLL_S)

    assert proc.stdout is not None and proc.stderr is not None
    threads = [
        threading.Thread(target=pump, args=(proc.stdout, out, False), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, err, True), daemon=True),
        threading.Thread(target=watch, daemon=True),
    ]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait for it again
    done.set()
    for t in threads:
        t.join()
    return ChildRun(
        command,
        seconds,
        usage.ru_utime + usage.ru_stime,
        peak[0],
        proc.returncode,
        b"".join(out).decode(errors="replace"),
        b"".join(err).decode(errors="replace"),
        first[0] if first else None,
    )


def _checked(child: ChildRun, what: str) -> ChildRun:
    if child.returncode != 0:
        tail = "\n".join(child.stderr.replace("\r", "\n").splitlines()[-30:])
        raise SystemExit(f"{what} failed ({child.returncode}): {' '.join(child.argv)}\n{tail}")
    return child


# --------------------------------------------------------------------------- the run


@dataclass
class Backend:
    """One view store: where the worker writes and how to reach it, and the log it reads (the
    run's Kafka topics, those of another prefix, or an embedded log in ``data_dir``)."""

    name: str  # "sqlite" | "postgres"
    data_dir: Path
    postgres_dsn: str | None = None
    prefix: str | None = None
    """The topics' prefix, when not the run's (the unsealed copy of the events)."""
    embedded: bool = False
    """The log is the embedded one in ``data_dir`` (views beside it), not Kafka."""

    def settings(self, base: Settings) -> Settings:
        return base.model_copy(
            update={
                "data_dir": self.data_dir,
                "postgres_dsn": None if self.postgres_dsn is None else SecretStr(self.postgres_dsn),
            }
        )


@dataclass
class Run:
    args: argparse.Namespace
    tmp: Path
    bootstrap: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    figures: list[Figure] = field(default_factory=list)
    latencies: list[Latency] = field(default_factory=list)
    created_topics: list[str] = field(default_factory=list)
    contacts: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    profiles: list[tuple[str, str]] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"bench{self.tag}.proj."

    @property
    def plain_prefix(self) -> str:
        """The topics of the same events published unsealed."""
        return f"bench{self.tag}.plain."

    @property
    def keys_dir(self) -> Path:
        """The data folder of the sealed publish, whose key store every worker needs."""
        return self.tmp / "publisher"

    def settings(self, data_dir: Path, prefix: str | None = None) -> Settings:
        return Settings(
            backend="kafka",
            data_dir=data_dir,
            kafka_bootstrap_servers=self.bootstrap,
            topic_prefix=self.prefix if prefix is None else prefix,
            kafka_client_id=f"istore-bench-{self.tag}",
            postgres_dsn=None,
            master_key=MASTER_KEY,
        )

    def env(self, backend: Backend) -> dict[str, str]:
        unset = ("ISTORE_POSTGRES_DSN", "ISTORE_MASTER_KEY_FILE")
        env = {k: v for k, v in os.environ.items() if k not in unset}
        env.update(
            ISTORE_DATA_DIR=str(backend.data_dir),
            ISTORE_MASTER_KEY=MASTER_KEY.get_secret_value(),
        )
        if backend.embedded:
            env["ISTORE_BACKEND"] = "embedded"
        else:
            env.update(
                ISTORE_BACKEND="kafka",
                ISTORE_KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
                ISTORE_TOPIC_PREFIX=self.prefix if backend.prefix is None else backend.prefix,
            )
        if backend.postgres_dsn is not None:
            env["ISTORE_POSTGRES_DSN"] = backend.postgres_dsn
        return env

    def log_records(self, backend: Backend | None = None) -> int:
        """Records on the event topics now (what a ``run --once`` starting now applies)."""
        log: EventLog
        if backend is not None and backend.embedded:
            log = EmbeddedLog(Settings(data_dir=backend.data_dir, master_key=MASTER_KEY))
        else:
            prefix = None if backend is None else backend.prefix
            log = KafkaLog(self.settings(self.tmp / "probe", prefix))
        with log:
            return sum(sum(log.end_offsets(t.name).values()) for t in log.catalog.event_topics)


# --------------------------------------------------------------------------- data


def write_events(path: Path, count: int, seed: int) -> tuple[int, list[str], str]:
    """``count`` demo events as JSON Lines (streamed: never more than one batch in memory);
    returns the contacts used, the contact ids that occur, and where the events came from."""
    contacts = max(1, math.ceil(count * 1.05 / EVENTS_PER_CONTACT))
    while True:
        ids: set[str] = set()
        written = 0
        chunk: list[bytes] = []
        with path.open("wb") as out:
            for event in demo.generate(contacts, seed):
                chunk.append(encode(event))
                contact = event.subject.contact_id
                if contact is not None:
                    ids.add(str(contact))
                written += 1
                if len(chunk) >= 1000 or written == count:
                    out.write(b"\n".join(chunk) + b"\n")
                    chunk.clear()
                if written == count:
                    break
            if chunk:
                out.write(b"\n".join(chunk) + b"\n")
        if written == count:
            origin = (
                f"interaction_store.demo.generate(contacts={contacts}, seed={seed}), "
                f"the first {count:,} in time order"
            )
            return contacts, sorted(ids), origin
        contacts = math.ceil(contacts * count / max(written, 1) * 1.05)  # a year was too short


def _lines(path: Path, limit: int | None = None) -> Iterator[bytes]:
    with path.open("rb") as f:
        for n, line in enumerate(f):
            if limit is not None and n >= limit:
                return
            yield line


def publish(run: Run, events_file: Path) -> None:
    """The events, sealed as the store publishes them, to the run's topics (the key store in
    :attr:`Run.keys_dir`), after warming the broker up."""
    args = run.args
    if args.broker_warmup:
        # A fresh broker runs at a fraction of its speed for its first ~20k records (JIT):
        # get that over with on throwaway topics.
        prefix = f"bench{run.tag}.warm."
        with KafkaLog(run.settings(run.tmp / "warm", prefix)) as log:
            run.created_topics += log.ensure_topics()
            _say(f"broker warm-up: {args.broker_warmup:,} events to {prefix}*")
            Ingest(log, PUBLISH_BATCH).publish_lines(
                _lines(events_file, args.broker_warmup), "warm"
            )
    with KafkaLog(run.settings(run.keys_dir)) as log:
        run.created_topics += log.ensure_topics()
        _say(f"publishing {args.events:,} events to {run.prefix}* (Ingest.publish_lines)")
        figure = publish_to(
            run,
            events_file,
            log,
            sealer_of(log.settings),
            "publish",
            "Ingest.publish_lines -> Kafka (as istore publish)",
        )
        run.info["per_topic"] = {
            t.logical: sum(log.end_offsets(t.name).values()) for t in log.catalog.event_topics
        }
    run.figures.append(figure)


def publish_unsealed(run: Run, events_file: Path) -> Figure:
    """The same events to other topics (:attr:`Run.plain_prefix`) with a sealer that does
    nothing: the log of the worker without encryption."""
    with KafkaLog(run.settings(run.tmp / "publisher-plain", run.plain_prefix)) as log:
        run.created_topics += log.ensure_topics()
        _say(f"publishing {run.args.events:,} events unsealed to {run.plain_prefix}*")
        figure = publish_to(
            run,
            events_file,
            log,
            PlainSealer(),
            "publish_unsealed",
            "  Ingest.publish_lines -> Kafka, unsealed (no-op Sealer)",
        )
    run.figures.append(figure)
    return figure


def publish_embedded(run: Run, events_file: Path, sealed: bool) -> Backend:
    """The events into an embedded log of their own, sealed or not; the store (SQLite views
    beside the log) a worker of the encryption figure projects."""
    what = "sealed" if sealed else "unsealed"
    folder = run.tmp / f"embedded-{what}"
    settings = Settings(backend="embedded", data_dir=folder, master_key=MASTER_KEY)
    with EmbeddedLog(settings) as log:
        _say(f"publishing {run.args.events:,} events {what} to an embedded log in {folder}")
        label = "Ingest.publish_lines -> embedded log"
        run.figures.append(
            publish_to(
                run,
                events_file,
                log,
                sealer_of(settings) if sealed else PlainSealer(),
                f"publish_embedded_{what}",
                f"  {label}, {what}" + ("" if sealed else " (no-op Sealer)"),
            )
        )
    return Backend("sqlite", folder, embedded=True)


def publish_to(
    run: Run, events_file: Path, log: EventLog, sealer: Sealer, key: str, label: str
) -> Figure:
    """``Ingest.publish_lines`` of the events file, timed (the validation worker included)."""
    started, cpu = time.perf_counter(), time.process_time()
    try:
        report = Ingest(log, PUBLISH_BATCH, sealer=sealer).publish_lines(
            _lines(events_file), "bench"
        )
    finally:
        sealer.close()
    seconds = time.perf_counter() - started
    if report.accepted != run.args.events:
        raise SystemExit(f"{label.strip()}: {report.summary()}; expected all accepted")
    return Figure(
        key,
        label,
        run.args.events,
        seconds,
        time.process_time() - cpu,
        extra={"note": "cpu s: this process only, not the validation worker"},
    )


def install_keys(run: Run, backend: Backend) -> None:
    """The sealed publish's data keys in the key store the backend's workers open: a copy of
    its SQLite key store in their data folder, or its rows in their PostgreSQL database (the
    wrapped keys as they are: same master key). In a deployment publisher and worker share
    one key store; here the publish ran once, before any view store existed."""
    source = run.keys_dir / "keys.sqlite"
    backend.data_dir.mkdir(parents=True, exist_ok=True)
    if backend.postgres_dsn is None:
        target = backend.data_dir / "keys.sqlite"
        with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
        target.chmod(0o600)
        return
    import psycopg

    from interaction_store.privacy.postgres import KEYS_TABLE

    open_key_store(backend.settings(run.settings(backend.data_dir))).close()  # its tables
    with closing(sqlite3.connect(source)) as src:
        rows = src.execute(
            "SELECT subject, wrapped FROM data_keys WHERE wrapped IS NOT NULL"
        ).fetchall()
    with psycopg.connect(backend.postgres_dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {KEYS_TABLE} (subject, wrapped) VALUES (%s, %s) "
            "ON CONFLICT (subject) DO NOTHING",
            rows,
        )


def bare_drain(run: Run, limit: int) -> tuple[int, float, float]:
    """A bare kafka-python consumer reading every event topic from the beginning (assign,
    seek_to_beginning, poll as many records as the worker's batch); consumer creation timed."""
    from kafka import KafkaConsumer, TopicPartition

    settings = run.settings(run.tmp / "drain")
    topics = [t.name for t in StreamCatalog.load(settings).event_topics]
    started, cpu = time.perf_counter(), time.process_time()
    consumer = KafkaConsumer(
        **settings.kafka_client_config(), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    try:
        tps = [
            TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t))
        ]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        # Done at the end offsets, not at a count: offsets also number the transactions' commit
        # markers, which a consumer never returns (the count of records stays below them).
        ends = consumer.end_offsets(tps)
        n = 0
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while n < limit and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200, max_records=WORKER_BATCH).values():
                n += len(records)
            if all(consumer.position(tp) >= ends[tp] for tp in tps):
                break
    finally:
        consumer.close()
    return n, time.perf_counter() - started, time.process_time() - cpu


def drain(run: Run) -> Figure:
    total = run.log_records()
    warm = min(total, run.args.drain_warmup)
    if warm:
        _say(f"drain warm-up: {warm:,} records")
        bare_drain(run, warm)
    _say(f"bare drain: {total:,} records")
    n, seconds, cpu = bare_drain(run, total)
    if n == 0 or seconds >= DRAIN_TIMEOUT_S:
        raise SystemExit(f"bare drain: read {n} of {total} offsets in {DRAIN_TIMEOUT_S:.0f}s")
    figure = Figure("drain", "bare kafka-python drain, all event topics", n, seconds, cpu)
    run.figures.append(figure)
    if run.args.decode_figure:
        run.figures.append(follow_decode(run, n, figure))
    return figure


def follow_decode(run: Run, total: int, baseline: Figure) -> Figure:
    """Diagnostic: what the worker does before any view sees an event, in this process:
    ``KafkaLog.follow`` (records) in worker-sized batches, then ``record.event()`` for each,
    with the collector paused per batch as the runner does. The ceiling of the worker."""
    _say(f"KafkaLog.follow + decode: {total:,} records")
    read = [0]
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    with KafkaLog(run.settings(run.tmp / "follow")) as log:
        started, cpu = time.perf_counter(), time.process_time()
        for batch in log.follow(
            batch_size=run.args.batch_size,
            until=lambda: read[0] >= total or time.monotonic() > deadline,
        ):
            with collector_paused():
                for record in batch:
                    record.event()
            read[0] += len(batch)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if read[0] < total:
        raise SystemExit(f"follow + decode: read {read[0]} of {total} records")
    return Figure(
        "follow_decode",
        "  KafkaLog.follow + record.event() (diagnostic)",
        read[0],
        seconds,
        cpu,
        baseline=baseline,
    )


# --------------------------------------------------------------------------- worker, replay

_APPLIED = re.compile(r"applied (\d+) events in (\d+) batches")
_BUILT = re.compile(r"from (\d+) log records in ([\d.]+) s \((\d+) applied\)")


def project(run: Run, backend: Backend, drain_figure: Figure | None) -> Figure:
    records = run.log_records()
    label = "SQLite" if backend.name == "sqlite" else "PostgreSQL"
    _say(f"worker: Kafka -> {label}, istore run --once over {records:,} records")
    argv = [*_CLI, "run", "--once", "--batch-size", str(run.args.batch_size)]
    child = _checked(run_child(argv, run.env(backend), Path.cwd()), f"worker ({label})")
    match = _APPLIED.search(child.stdout)
    figure = Figure(
        f"project_{backend.name}",
        f"worker: Kafka -> {label}, all views (run --once)",
        records,
        child.seconds,
        child.cpu_seconds,
        child.rss_mb,
        baseline=drain_figure,
        extra={
            "applied": int(match.group(1)) if match else None,
            "batches": int(match.group(2)) if match else None,
            "startup_s": None if child.first_output_s is None else round(child.first_output_s, 2),
        },
    )
    run.figures.append(figure)
    _say(f"worker ({label}): {figure.rate:,.0f} events/s, peak RSS {child.rss_mb:.0f} MB")
    return figure


def replay(run: Run, backend: Backend, kind: str, drain_figure: Figure | None) -> Figure:
    label = "SQLite" if backend.name == "sqlite" else "PostgreSQL"
    name = f"{kind}_bench{run.tag}"
    _say(f"replay {kind} ({label})")
    argv = [*_CLI, "replay", kind, "--as", name]
    child = _checked(run_child(argv, run.env(backend), Path.cwd()), f"replay {kind} ({label})")
    match = _BUILT.search(child.stdout)
    if match is None:
        raise SystemExit(f"replay {kind} ({label}): unexpected output {child.stdout!r}")
    records = int(match.group(1))
    figure = Figure(
        f"replay_{backend.name}_{kind}",
        f"  replay {kind} ({label})",
        records,
        child.seconds,
        child.cpu_seconds,
        child.rss_mb,
        baseline=drain_figure,
        extra={"runner_s": float(match.group(2)), "applied": int(match.group(3))},
    )
    run.figures.append(figure)
    return figure


def worker(run: Run, backend: Backend, sealed: bool, key: str, label: str) -> Figure:
    """``python -m bench.worker``: the worker of ``istore run --once`` opening sealed fields
    (``sealed``) or with a no-op opener, over the backend's log into its (fresh) views."""
    records = run.log_records(backend)
    what = "sealed" if sealed else "unsealed"
    _say(f"worker, {what}: {label.strip()} over {records:,} records")
    argv = [*_WORKER, "--batch-size", str(run.args.batch_size)]
    if not sealed:
        argv.append("--unsealed")
    child = _checked(run_child(argv, run.env(backend), Path.cwd()), f"worker ({label})")
    match = _APPLIED.search(child.stdout)
    unreadable = child.stderr.count("unreadable")
    if unreadable:  # the keys did not reach the worker: every field would cost a warning
        raise SystemExit(f"worker ({label}): {unreadable} fields did not open")
    return Figure(
        key,
        label,
        records,
        child.seconds,
        child.cpu_seconds,
        child.rss_mb,
        extra={
            "applied": int(match.group(1)) if match else None,
            "startup_s": None if child.first_output_s is None else round(child.first_output_s, 2),
        },
    )


def compare_workers(
    run: Run,
    name: str,
    fresh: Callable[[bool, int], Backend],
    where: str,
) -> None:
    """The worker with and without encryption, ``--sealing-rounds`` times each (alternating,
    a fresh view store each time): the sealed events with the store's opener against the
    unsealed events with a no-op one. Keeps the best of each and their ratio."""
    rounds = run.args.sealing_rounds
    timings: dict[bool, list[Figure]] = {True: [], False: []}
    log = "embedded log" if where == "embedded" else "Kafka"
    label = f"worker: {log} -> {'SQLite' if name == 'sqlite' else 'PostgreSQL'}"
    for r in range(rounds):
        for flag in (False, True) if r % 2 == 0 else (True, False):
            what = "sealed" if flag else "unsealed"
            timings[flag].append(
                worker(run, fresh(flag, r), flag, f"{what}_{r}", f"{label}, {what}")
            )
    key = f"worker_{'embedded' if where == 'embedded' else 'kafka'}_{name}"
    best = {flag: max(figs, key=lambda f: f.rate) for flag, figs in timings.items()}
    unsealed = best[False]
    unsealed.key, unsealed.label = f"{key}_unsealed", f"{label}, unsealed (no-op Opener)"
    sealed = best[True]
    sealed.key, sealed.label = f"{key}_sealed", f"{label}, sealed (Opener)"
    sealed.baseline = unsealed
    for flag, figure in best.items():
        figure.extra["rounds_events_per_s"] = [round(f.rate) for f in timings[flag]]
        figure.extra["rounds_cpu_s"] = [
            None if f.cpu_seconds is None else round(f.cpu_seconds, 1) for f in timings[flag]
        ]
    run.figures += [unsealed, sealed]
    median = {f: statistics.median(x.rate for x in figs) for f, figs in timings.items()}
    cpu = {f: statistics.median(x.cpu_seconds or 0.0 for x in figs) for f, figs in timings.items()}
    sealed.extra["median_ratio"] = round(median[True] / median[False], 3)
    sealed.extra["cpu_ratio"] = round(cpu[False] / cpu[True], 3) if cpu[True] else None
    _say(f"{label}: sealed {sealed.rate:,.0f}/s vs unsealed {unsealed.rate:,.0f}/s")


def timeline_latency(run: Run, backend: Backend) -> Latency:
    """``ReadAPI.timeline(contact_id=...)``, first page, over random contacts of the data."""
    args = run.args
    rng = random.Random(args.seed)
    ids = run.contacts
    sample = (
        rng.sample(ids, args.queries)
        if len(ids) >= args.queries
        else rng.choices(ids, k=args.queries)
    )
    warm = rng.choices(ids, k=min(200, args.queries))
    label = "SQLite" if backend.name == "sqlite" else "PostgreSQL"
    _say(f"timeline latency ({label}): {len(sample):,} contacts, limit {args.page}")
    times: list[float] = []
    entries = empty = 0
    with ReadAPI(backend.settings(run.settings(backend.data_dir))) as api:
        for contact in warm:
            api.timeline(contact_id=contact, limit=args.page)
        for contact in sample:
            started = time.perf_counter()
            page = api.timeline(contact_id=contact, limit=args.page)
            times.append((time.perf_counter() - started) * 1000)
            entries += len(page.entries)
            empty += not page.entries
        if args.profile:
            profile_queries(run, api, sample[:500], label)
    times.sort()
    latency = Latency(backend.name, len(times), times, entries / len(times), empty)
    run.latencies.append(latency)
    return latency


def profile_queries(run: Run, api: ReadAPI, contacts: Sequence[str], label: str) -> None:
    """The same timeline reads again under cProfile, in this process (after measuring)."""
    prof = cProfile.Profile()
    started = time.perf_counter()
    prof.enable()
    for contact in contacts:
        api.timeline(contact_id=contact, limit=run.args.page)
    prof.disable()
    seconds = time.perf_counter() - started
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(run.args.profile_top)
    run.profiles.append(
        (
            f"=== profile: ReadAPI.timeline ({label}), {len(contacts)} contacts, by tottime "
            f"(wall {seconds:.2f}s under the profiler) ===",
            _short_paths(buf.getvalue().split("\n\n", 1)[-1].rstrip()),
        )
    )


def profile_worker(run: Run, backend: Backend, top: int) -> None:
    """The worker again under cProfile (main thread: kafka-python's consumer has no IO
    thread), on a fresh store over the same topics."""
    label = "SQLite" if backend.name == "sqlite" else "PostgreSQL"
    folder = run.args.profile_dir or run.tmp
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"worker-{backend.name}-{run.args.events}.prof"
    _say(f"profiling the worker ({label}) into {out}")
    argv = ["-m", "cProfile", "-o", str(out), *_CLI, "run", "--once"]
    argv += ["--batch-size", str(run.args.batch_size)]
    child = _checked(run_child(argv, run.env(backend), Path.cwd()), f"profiled worker ({label})")
    for order in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(str(out), stream=buf).sort_stats(order).print_stats(top)
        body = _short_paths(buf.getvalue().split("\n\n", 1)[-1].rstrip())
        title = (
            f"=== profile: worker Kafka -> {label}, {run.args.events:,} events, by {order} "
            f"(wall {child.seconds:.1f}s under the profiler) ==="
        )
        run.profiles.append((title, body))


def _short_paths(text: str) -> str:
    """Profile rows with paths from the package or site-packages on (``view.py`` alone would
    not say which view)."""
    import site
    import sysconfig

    roots = {str(Path.cwd() / "src"), sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    roots |= {sysconfig.get_paths()["stdlib"]}
    for root in sorted(roots, key=len, reverse=True):
        text = text.replace(root.rstrip("/") + "/", "")
    return text


# --------------------------------------------------------------------------- PostgreSQL


@contextmanager
def postgres_server(args: argparse.Namespace, tmp: Path) -> Iterator[tuple[str, bool]]:
    """(DSN of a server we may create databases on, whether we started it)."""
    if args.postgres_dsn:
        yield args.postgres_dsn, False
        return
    from tests.postgres_server import local_postgres

    _say("starting a local PostgreSQL (use --postgres-dsn to bring your own)")
    with local_postgres(tmp / "postgres") as dsn:
        yield dsn, True


@contextmanager
def fresh_database(server_dsn: str) -> Iterator[str]:
    """A new empty database on the server, dropped afterwards; the DSN itself when we may not
    create databases there (then it should be empty)."""
    import psycopg
    from tests.postgres_server import fresh_database as create

    with ExitStack() as stack:
        try:
            dsn = stack.enter_context(create(server_dsn))
        except psycopg.Error as exc:
            _say(f"cannot create a database ({exc}); using the DSN's own database as it is")
            dsn = server_dsn
        yield dsn


# --------------------------------------------------------------------------- Kafka


@contextmanager
def kafka_broker(args: argparse.Namespace, tmp: Path) -> Iterator[tuple[str, bool]]:
    if args.bootstrap:
        yield args.bootstrap, False
        return
    from interaction_store.kafka_local import LocalKafka

    _say("starting a local Kafka broker (use --bootstrap to bring your own)")
    broker = LocalKafka(tmp / "kafka")
    broker.ensure_jars()
    bootstrap = broker.start()
    try:
        yield bootstrap, True
    finally:
        broker.stop()


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


# --------------------------------------------------------------------------- measuring


def code_state() -> str:
    """The commit measured, and how many files under src/ differ from it (others may be
    editing the working tree while a long run goes on: each subprocess imports it afresh)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], capture_output=True, text=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return head + (f" + {len(dirty)} changed paths under src/" if dirty else "")


def measure(args: argparse.Namespace, tmp: Path) -> Run:
    started = time.perf_counter()
    events_file = tmp / "events.jsonl"
    _say(f"generating {args.events:,} demo events")
    t = time.perf_counter()
    contacts, ids, origin = write_events(events_file, args.events, args.seed)
    generated_s = time.perf_counter() - t
    backends = ["sqlite", "postgres"] if args.only is None else [args.only]
    sealing = args.sealing != "skip"
    on_kafka = args.sealing != "only" or args.sealing_log == "kafka"
    # An embedded log has its views in SQLite beside it.
    backends_sealing = ["sqlite"] if args.sealing_log == "embedded" else backends
    with ExitStack() as stack:
        bootstrap, local_broker = ("", False)
        if on_kafka:
            bootstrap, local_broker = stack.enter_context(kafka_broker(args, tmp))
        run = Run(args, tmp, bootstrap)
        run.contacts = ids
        run.info |= {
            "code": code_state(),
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
            "documents": origin,
            "contacts": contacts,
            "contacts_in_data": len(ids),
            "generate_seconds": round(generated_s, 1),
            "events_file_mb": round(events_file.stat().st_size / 2**20, 1),
            "kafka": {"bootstrap": bootstrap, "local_broker": local_broker} if on_kafka else None,
            "sealing": args.sealing,
            "sealing_log": args.sealing_log if sealing else None,
        }
        if on_kafka and not local_broker:  # someone else's broker: leave no bench topics
            stack.callback(lambda: delete_topics(bootstrap, run.created_topics))
        server_dsn, local_pg = (None, False)
        if "postgres" in backends and (args.sealing != "only" or "postgres" in backends_sealing):
            server_dsn, local_pg = stack.enter_context(postgres_server(args, tmp))
            run.info["postgres"] = {"local_server": local_pg}

        embedded: dict[bool, Backend] = {}
        if on_kafka:
            publish(run, events_file)
        if sealing and args.sealing_log == "kafka":
            unsealed_pub = publish_unsealed(run, events_file)
            sealed_pub = next(f for f in run.figures if f.key == "publish")
            sealed_pub.baseline = unsealed_pub
        if sealing and args.sealing_log == "embedded":
            embedded = {flag: publish_embedded(run, events_file, flag) for flag in (False, True)}
            run.figures[-1].baseline = run.figures[-2]  # sealed over unsealed
        events_file.unlink()
        drain_figure = drain(run) if args.sealing != "only" else None

        def fresh_backend(name: str) -> Callable[[bool, int], Backend]:
            """A fresh view store for one worker of the encryption figure."""

            def make(sealed: bool, r: int) -> Backend:
                what = "sealed" if sealed else "unsealed"
                if args.sealing_log == "embedded":
                    # The log is the store's: start its views afresh each round.
                    backend = embedded[sealed]
                    for old in backend.data_dir.glob("views.sqlite*"):
                        old.unlink()
                    return backend
                prefix = None if sealed else run.plain_prefix
                folder = tmp / f"views-{name}-{what}-{r}"
                dsn = None
                if name == "postgres":
                    assert server_dsn is not None
                    dsn = stack.enter_context(fresh_database(server_dsn))
                backend = Backend(name, folder, dsn, prefix)
                if sealed:
                    install_keys(run, backend)
                return backend

            return make

        for name in backends:
            if args.sealing != "only":
                if name == "sqlite":
                    backend = Backend("sqlite", tmp / "views-sqlite")
                else:
                    assert server_dsn is not None
                    dsn = stack.enter_context(fresh_database(server_dsn))
                    backend = Backend("postgres", tmp / "views-postgres", dsn)
                install_keys(run, backend)
                project(run, backend, drain_figure)
                timeline_latency(run, backend)
                for kind in args.replay:
                    replay(run, backend, kind, drain_figure)
            if sealing and name in backends_sealing:
                compare_workers(run, name, fresh_backend(name), args.sealing_log)

        run.info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        run.info["measure_seconds"] = round(time.perf_counter() - started, 1)
        if args.profile and args.sealing != "only":
            for name in backends:
                if name == "sqlite":
                    backend = Backend("sqlite", tmp / "profile-sqlite")
                else:
                    assert server_dsn is not None
                    dsn = stack.enter_context(fresh_database(server_dsn))
                    backend = Backend("postgres", tmp / "profile-postgres", dsn)
                install_keys(run, backend)
                profile_worker(run, backend, args.profile_top)
    return run


# --------------------------------------------------------------------------- goals, output


def goals(run: Run) -> list[Goal]:
    figs = {f.key: f for f in run.figures}
    n = run.args.events
    scale = GOAL_SCALE / n
    out: list[Goal] = []
    sqlite = figs.get("project_sqlite")
    if sqlite is not None and sqlite.ratio is not None:
        out.append(
            Goal(
                "sqlite_vs_drain",
                f"Kafka -> SQLite (all views) >= {SQLITE_VS_DRAIN_GOAL}x the bare drain",
                f"{sqlite.ratio:.2f}x ({sqlite.rate:,.0f} vs {sqlite.baseline.rate:,.0f} events/s)"
                if sqlite.baseline is not None
                else "",
                sqlite.ratio >= SQLITE_VS_DRAIN_GOAL,
            )
        )
    replays = [f for k, f in figs.items() if k.startswith("replay_sqlite_")]
    if replays:
        slowest = max(replays, key=lambda f: f.seconds)
        scaled = slowest.records < GOAL_SCALE  # only ever scaled up, never down
        at_goal = slowest.seconds * GOAL_SCALE / slowest.records if scaled else slowest.seconds
        how = f"{at_goal:.1f} s" + (
            f" (extrapolated from {slowest.seconds:.1f} s at {slowest.records:,})" if scaled else ""
        )
        out.append(
            Goal(
                "replay_1m",
                f"istore replay of 1M events < {REPLAY_GOAL_S:.0f} s (SQLite, slowest kind)",
                f"{how}; slowest {slowest.label.strip()}",
                at_goal < REPLAY_GOAL_S,
                scaled,
            )
        )
    postgres = figs.get("project_postgres")
    if postgres is not None:
        out.append(
            Goal(
                "postgres_rate",
                f"Kafka -> PostgreSQL (all views) >= {POSTGRES_GOAL:,} events/s",
                f"{postgres.rate:,.0f} events/s",
                postgres.rate >= POSTGRES_GOAL,
            )
        )
    for fig in run.figures:
        if fig.key.startswith("worker_") and fig.key.endswith("_sealed") and fig.baseline:
            where = fig.label.split(",")[0].removeprefix("worker: ")
            out.append(
                Goal(
                    fig.key.removesuffix("_sealed") + "_sealed_vs_unsealed",
                    f"worker with encryption >= {SEALED_WORKER_GOAL}x without ({where})",
                    f"{fig.ratio:.2f}x ({fig.rate:,.0f} vs {fig.baseline.rate:,.0f} events/s)",
                    (fig.ratio or 0) >= SEALED_WORKER_GOAL,
                )
            )
    for lat in run.latencies:
        p99 = lat.at(0.99)
        out.append(
            Goal(
                f"timeline_p99_{lat.backend}",
                f"timeline p99 <= {TIMELINE_P99_GOAL_MS:g} ms ({lat.backend})",
                f"{p99:.2f} ms at {n:,} events",
                p99 <= TIMELINE_P99_GOAL_MS,
                scale > 1,
            )
        )
    for key in ("project_sqlite", "project_postgres"):
        f = figs.get(key)
        if f is not None and f.rss_mb is not None:
            backend = key.split("_", 1)[1]
            out.append(
                Goal(
                    f"worker_rss_{backend}",
                    f"worker peak RSS <= {RSS_GOAL_MB:.0f} MB ({backend})",
                    f"{f.rss_mb:.0f} MB at {n:,} events",
                    f.rss_mb <= RSS_GOAL_MB,
                    scale > 1,
                )
            )
    return out


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def report(run: Run, total_s: float) -> None:
    args = run.args
    info = run.info
    print()
    print(
        f"projections: {args.events:,} demo events ({info['documents']}; "
        f"{len(run.contacts):,} contacts); worker batches of {args.batch_size:,}"
    )
    print(f"per topic: {info.get('per_topic', '(no Kafka)')}; code {info['code']}")
    kafka = info["kafka"]
    where = []
    if kafka is not None:
        where.append(
            f"kafka: {kafka['bootstrap']}"
            + (" (local broker started for this run)" if kafka["local_broker"] else "")
        )
    if "postgres" in info:
        where.append(
            "postgres: "
            + (
                "local cluster started for this run (fsync off)"
                if info["postgres"]["local_server"]
                else "--postgres-dsn, fresh database"
            )
        )
    if where:
        print("; ".join(where))
    print()
    header = ("figure", "records", "s", "cpu s", "events/s", "ratio", "peak RSS MB", "load")
    rows = [
        (
            f.label,
            f"{f.records:,}",
            f"{f.seconds:.1f}",
            "" if f.cpu_seconds is None else f"{f.cpu_seconds:.1f}",
            f"{f.rate:,.0f}",
            "" if f.ratio is None else f"{f.ratio:.2f}x",
            "" if f.rss_mb is None else f"{f.rss_mb:.0f}",
            f"{f.load:.2f}",
        )
        for f in run.figures
    ]
    print(_table(header, rows))
    print(
        "\nratio = events/s over the bare drain's (a sealed figure: over the unsealed one "
        "above it). s = wall seconds of the whole subprocess "
        "(start-up included); cpu s = its user+system CPU (wait4); peak RSS = its VmHWM; "
        "load = 1-min load average when the figure finished."
    )
    startups = {
        f.key: f.extra["startup_s"] for f in run.figures if f.extra.get("startup_s") is not None
    }
    if startups:
        print(
            "worker start-up (launch to first line): "
            + ", ".join(f"{k.removeprefix('project_')} {v:.1f} s" for k, v in startups.items())
        )
    if run.latencies:
        print()
        lat_header = (
            "timeline, first page",
            "queries",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p999 ms",
            "max ms",
            "entries/page",
            "empty",
            "load",
        )
        lat_rows: list[tuple[str, ...]] = []
        for lat in run.latencies:
            s = lat.summary()
            lat_rows.append(
                (
                    f"ReadAPI.timeline(contact_id) {lat.backend}, limit {args.page}",
                    f"{s['queries']:,}",
                    f"{s['p50_ms']:.2f}",
                    f"{s['p90_ms']:.2f}",
                    f"{s['p99_ms']:.2f}",
                    f"{s['p999_ms']:.2f}",
                    f"{s['max_ms']:.2f}",
                    f"{s['entries_per_page']:.1f}",
                    str(s["empty_pages"]),
                    f"{s['load']:.2f}",
                )
            )
        print(_table(lat_header, lat_rows))
    for f in run.figures:
        if f.key.startswith("worker_") and f.key.endswith("_sealed") and f.baseline:
            rounds = (f.baseline.extra["rounds_events_per_s"], f.extra["rounds_events_per_s"])
            print(
                f"{f.label.rsplit(',', 1)[0]}, rounds: unsealed {rounds[0]}, sealed {rounds[1]} "
                f"events/s; medians {f.extra['median_ratio']:.2f}x, CPU (medians) "
                f"{f.extra['cpu_ratio'] or 0:.2f}x"
            )
    checks = goals(run)
    print()
    if args.events != GOAL_SCALE:
        print(f"goals (stated for {GOAL_SCALE:,} events; this run has {args.events:,}):")
    else:
        print("goals:")
    print(
        _table(
            ("goal", "measured", "result"),
            [
                (
                    g.text,
                    g.measured,
                    ("PASS" if g.passed else "FAIL") + (" (at this scale)" if g.scaled else ""),
                )
                for g in checks
            ],
            left=3,
        )
    )
    print()
    print(
        f"wall {total_s:.0f}s; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}; "
        f"load average {info['load_average_start'][0]} at start, "
        f"{info['load_average_end'][0]} at end (other work on the machine skews every figure)"
    )
    for title, body in run.profiles:
        print(f"\n{title}\n{body}")
    summary = {
        "bench": "projections",
        "events": args.events,
        "batch_size": args.batch_size,
        **info,
        "rates": {f.key: round(f.rate) for f in run.figures},
        "seconds": {f.key: round(f.seconds, 2) for f in run.figures},
        "cpu_seconds": {
            f.key: round(f.cpu_seconds, 2) for f in run.figures if f.cpu_seconds is not None
        },
        "ratios": {f.key: round(f.ratio, 3) for f in run.figures if f.ratio is not None},
        "peak_rss_mb": {f.key: round(f.rss_mb) for f in run.figures if f.rss_mb is not None},
        "figure_load": {f.key: f.load for f in run.figures},
        "extra": {f.key: f.extra for f in run.figures if f.extra},
        "timeline": {lat.backend: lat.summary() for lat in run.latencies},
        "goals": {g.key: g.passed for g in checks},
        "goals_scaled": [g.key for g in checks if g.scaled],
        "wall_seconds": round(total_s, 1),
    }
    print(orjson.dumps(summary).decode())


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.projections", description=__doc__)
    p.add_argument("--events", type=int, default=1_000_000, help="demo events in the log")
    p.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        or os.environ.get("ISTORE_KAFKA_BOOTSTRAP_SERVERS"),
        help="Kafka bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS, else a local broker)",
    )
    p.add_argument(
        "--postgres-dsn",
        help="a PostgreSQL server to create a fresh database on (default: a local cluster)",
    )
    p.add_argument("--only", choices=("sqlite", "postgres"), help="one view backend only")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=WORKER_BATCH, help="worker batch size")
    p.add_argument(
        "--replay",
        default=",".join(KINDS),
        type=lambda s: [k for k in s.split(",") if k],
        help=f"view kinds to replay, comma-separated (default all: {','.join(KINDS)}; '' none)",
    )
    p.add_argument(
        "--sealing",
        choices=("with", "only", "skip"),
        default="with",
        help="the worker with and without encryption: besides the other figures (with), "
        "alone (only: no drain, replays or timeline reads), or not at all (skip)",
    )
    p.add_argument(
        "--sealing-log",
        choices=("kafka", "embedded"),
        default="kafka",
        help="the log of the encryption figure: Kafka topics (the events published again, "
        "unsealed, under another prefix), or two embedded logs (SQLite views only; with "
        "--sealing only, no broker is started)",
    )
    p.add_argument(
        "--sealing-rounds",
        type=int,
        default=1,
        help="workers run per side of the encryption figure (alternating; best kept)",
    )
    p.add_argument("--queries", type=int, default=2000, help="timeline queries per backend")
    p.add_argument("--page", type=int, default=50, help="timeline page size")
    p.add_argument(
        "--broker-warmup", type=int, default=20_000, help="events published to warm the broker"
    )
    p.add_argument(
        "--drain-warmup", type=int, default=100_000, help="records drained before measuring"
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="after measuring, run the worker again under cProfile (per backend) and print "
        "its top entries",
    )
    p.add_argument("--profile-top", type=int, default=30, help="profile rows shown")
    p.add_argument(
        "--profile-dir", type=Path, help="keep the .prof files here (default: thrown away)"
    )
    p.add_argument(
        "--no-decode-figure",
        dest="decode_figure",
        action="store_false",
        help="skip the KafkaLog.follow + decode diagnostic",
    )
    args = p.parse_args(argv)
    if args.events < 1 or args.queries < 1 or args.batch_size < 1 or args.sealing_rounds < 1:
        p.error("--events, --queries, --batch-size and --sealing-rounds must be >= 1")
    unknown = [k for k in args.replay if k not in KINDS]
    if unknown:
        p.error(f"unknown view kinds {unknown}; the kinds are {', '.join(KINDS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="istore-bench-proj-") as tmp:
        run = measure(args, Path(tmp))
    report(run, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
