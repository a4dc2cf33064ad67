"""Erasure: ``Eraser.erase`` of one contact, to its receipt, on embedded stores of N/10 and of
N demo events (projected): whether the time grows with the log.

Run: ``.venv/bin/python -m bench.erasure [--events 1000000] [--erase 7]``. It writes N demo
events (``bench.projections.write_events``), builds two embedded stores in a temporary folder,
one of the first N/10 events and one of all N (each published sealed as ``istore publish``
does, then projected by the worker of ``istore run --once``), syncs the disk, then erases
``--erase`` contacts (drawn from those in the first N/10, seeded) from both stores, one contact
at a time, the stores in turn: the same person, with ten times the history in the larger store.
Each ``Eraser.erase`` is timed to its receipt, step by step, and says what it read: calls that
read the log (there should be none: an erasure finds the person in the views and publishes one
event), and every SQL statement it ran with SQLite's query plan, naming any full scan of a table
and the table's size. Then each store's worker applies the erasure events (the views forget):
timed too, apart.

Prints a table, the steps, the goals, then one line of JSON. A measurement, not a test: the exit
status is 0 whether or not a goal is met.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.plain import new_master_key
from bench.projections import write_events
from interaction_store.cli.views import ProjectionWorker
from interaction_store.erasure import Eraser
from interaction_store.ingest import Ingest
from interaction_store.log.base import LogRecord
from interaction_store.log.embedded import EmbeddedLog
from interaction_store.privacy import open_key_store
from interaction_store.privacy.sealing import sealer_of
from interaction_store.settings import Settings
from interaction_store.views import open_store

ERASE_GOAL_S = 1.0
"""Seconds from ``Eraser.erase`` to the receipt, at 1,000,000 events."""

GROWTH_GOAL = 2.0
"""The median erasure at N over the median at N/10: "does not grow with the log" read as
"well under the tenfold the log grew" (a scan of the log would take it near 10x)."""

PUBLISH_BATCH = 5000
WORKER_BATCH = 2000


def _say(message: str) -> None:
    print(f"[bench] {message} (load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- what it reads


class CountingLog(EmbeddedLog):
    """The embedded log, counting the calls that read it (an erasure should make none)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.reads: Counter[str] = Counter()

    def read(self, topic: str, partition: int, offset: int, limit: int = 1000) -> list[LogRecord]:
        self.reads["read"] += 1
        return super().read(topic, partition, offset, limit)

    def follow(self, *args: Any, **kwargs: Any) -> Iterator[list[LogRecord]]:
        self.reads["follow"] += 1
        return super().follow(*args, **kwargs)

    def end_offsets(self, topic: str) -> dict[int, int]:
        self.reads["end_offsets"] += 1
        return super().end_offsets(topic)


@dataclass
class Statements:
    """SQL run on the SQLite files while ``on``: (file, statement with its values)."""

    on: bool = False
    seen: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, path: str, sql: str) -> None:
        if self.on:
            with self.lock:
                self.seen.append((path, sql))


@contextmanager
def traced_sqlite(statements: Statements) -> Iterator[None]:
    """Every SQLite connection opened meanwhile reports its statements (values bound in) to
    ``statements``. The store's log, views and key store open theirs with ``sqlite3.connect``."""
    real = sqlite3.connect

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = real(database, *args, **kwargs)
        name = str(database)
        conn.set_trace_callback(lambda sql: statements.note(name, sql))
        return conn

    sqlite3.connect = connect  # type: ignore[assignment]
    try:
        yield
    finally:
        sqlite3.connect = real


_SKIP = ("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA", "SAVEPOINT", "RELEASE", "CREATE")
_NOT_TABLES = ("json_each", "CONSTANT ROW")


def full_scans(seen: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """Each statement whose query plan scans a whole table (``SCAN t``, not ``SEARCH t USING
    INDEX``), with the table's row count now. ``json_each`` (the ids a statement was given)
    does not count."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    by_file: dict[str, list[str]] = {}
    for path, sql in seen:
        head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        if head in _SKIP or path == ":memory:" or sql.rstrip().endswith("WHERE 0"):
            continue  # WHERE 0: the embedded log's write lock, which reads no row
        by_file.setdefault(path, []).append(sql)
    for path, sqls in by_file.items():
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            for sql in dict.fromkeys(sqls):
                try:
                    plan = conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
                except sqlite3.Error:
                    continue
                for row in plan:
                    detail = str(row[-1])
                    if not detail.startswith("SCAN ") or any(t in detail for t in _NOT_TABLES):
                        continue
                    table = detail.split()[1]
                    key = (Path(path).name, table, " ".join(sql.split())[:120])
                    if key not in out:
                        (rows,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
                        out[key] = {
                            "file": key[0],
                            "table": table,
                            "rows": rows,
                            "statement": key[2],
                        }
    return list(out.values())


# --------------------------------------------------------------------------- the store


@dataclass
class Erasure:
    """One contact erased: how long it took and what it touched."""

    contact: str
    events: int
    """The contact's own events in the log when it was erased."""
    seconds: float
    open_seconds: float
    steps: dict[str, float]
    statements: int
    log_reads: dict[str, int]
    scans: list[dict[str, Any]]
    receipt: Mapping[str, Any]


@dataclass
class Stage:
    """The store at one size: its events, the erasures, the views forgetting them."""

    events: int
    log_mb: float
    views_mb: float
    publish_s: float
    project_s: float
    erasures: list[Erasure]
    forget_s: float

    @property
    def median(self) -> float:
        return statistics.median(e.seconds for e in self.erasures)


def _timed(steps: dict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            steps[name] = steps.get(name, 0.0) + time.perf_counter() - started

    return wrapper


def erase_one(settings: Settings, contact: str, events: int) -> Erasure:
    """``Eraser.erase`` as ``istore erase contact`` runs it (log, key store and views opened
    first), its steps timed, its log reads counted and its SQL traced."""
    statements = Statements()
    with ExitStack() as stack:
        stack.enter_context(traced_sqlite(statements))
        started = time.perf_counter()
        log = CountingLog(settings)
        stack.callback(log.close)
        keys = stack.enter_context(open_key_store(settings))
        store = open_store(settings)
        stack.callback(store.close)
        eraser = Eraser(log, store, keys)
        open_s = time.perf_counter() - started
        steps: dict[str, float] = {}
        # Each step of Eraser.erase, timed where it is called (on this instance only).
        eraser._who = _timed(steps, "who (views)", eraser._who)  # type: ignore[method-assign]
        eraser._publish = _timed(steps, "publish contact.erased", eraser._publish)  # type: ignore[method-assign]
        eraser._drop_dead_letters = _timed(  # type: ignore[method-assign]
            steps, "dead letters", eraser._drop_dead_letters
        )
        register = eraser.register
        register.suppress = _timed(steps, "suppress", register.suppress)  # type: ignore[method-assign]
        register.save = _timed(steps, "receipt", register.save)  # type: ignore[method-assign]
        keys.destroy = _timed(steps, "destroy keys", keys.destroy)  # type: ignore[method-assign]
        statements.on = True
        started = time.perf_counter()
        receipt, new = eraser.erase(contact, "bench.erasure")
        seconds = time.perf_counter() - started
        statements.on = False
        if not new:
            raise SystemExit(f"contact {contact} was erased before")
        reads = dict(log.reads)
    return Erasure(
        contact,
        events,
        seconds,
        open_s,
        steps,
        len(statements.seen),
        reads,
        full_scans(statements.seen),
        receipt,
    )


def project(settings: Settings) -> float:
    """The worker of ``istore run --once``, in this process: the views catch up."""
    started = time.perf_counter()
    ProjectionWorker(settings, WORKER_BATCH).run(once=True)
    return time.perf_counter() - started


def lines_of(path: Path, start: int, stop: int) -> Iterator[bytes]:
    """Lines ``start`` to ``stop`` (not included) of a JSON Lines file, streamed."""
    with path.open("rb") as f:
        yield from itertools.islice(f, start, stop)


def publish(settings: Settings, path: Path, start: int, stop: int) -> float:
    """``Ingest.publish_lines`` of those lines, sealed (as ``istore publish``)."""
    started = time.perf_counter()
    sealer = sealer_of(settings)
    try:
        with EmbeddedLog(settings) as log:
            ingest = Ingest(log, PUBLISH_BATCH, sealer=sealer)
            report = ingest.publish_lines(lines_of(path, start, stop), "bench")
    finally:
        sealer.close()
    if report.accepted != stop - start:
        raise SystemExit(f"publish: {report.summary()}; expected all {stop - start} accepted")
    return time.perf_counter() - started


def _mb(folder: Path, stem: str) -> float:
    return sum(p.stat().st_size for p in folder.glob(f"{stem}*")) / 2**20


def build(settings: Settings, path: Path, events: int) -> Stage:
    """A store of the first ``events`` lines of the file: published, then projected."""
    _say(f"publishing {events:,} events into {settings.data_dir}")
    publish_s = publish(settings, path, 0, events)
    _say(f"projecting (the worker of istore run --once) after {publish_s:.0f} s of publishing")
    project_s = project(settings)
    return Stage(
        events,
        _mb(settings.data_dir, "log.sqlite"),
        _mb(settings.data_dir, "views.sqlite"),
        publish_s,
        project_s,
        [],
        0.0,
    )


def erase_in_turn(
    stores: Sequence[tuple[Settings, Stage, Counter[str]]], contacts: Sequence[str]
) -> None:
    """Each contact erased in every store, the stores in turn (the first store first for
    even contacts, last for odd ones), so that what else the machine does weighs on all
    alike; then the views of each store forget them (the worker, timed)."""
    for i, contact in enumerate(contacts):
        order = stores if i % 2 == 0 else list(reversed(stores))
        for settings, stage, per_contact in order:
            e = erase_one(settings, contact, per_contact[contact])
            _say(
                f"erased {contact} from the store of {stage.events:,} events ({e.events} of "
                f"them its own; {len(e.receipt['erased']['contacts'])} contacts, "
                f"{len(e.receipt['erased']['leads'])} leads) in {e.seconds * 1000:.0f} ms"
            )
            stage.erasures.append(e)
    for settings, stage, _ in stores:
        stage.forget_s = project(settings)


# --------------------------------------------------------------------------- output


def report(args: argparse.Namespace, stages: list[Stage], info: dict[str, Any]) -> None:
    print()
    print(f"erasure: an embedded store of {info['documents']}; {info['contacts']:,} contacts")
    print()
    header = (
        "events in the store",
        "log MB",
        "views MB",
        "publish s",
        "project s",
        "erase ms (each)",
        "median ms",
        "max ms",
        "open ms",
        "views forget s",
    )
    rows = [
        (
            f"{s.events:,}",
            f"{s.log_mb:,.0f}",
            f"{s.views_mb:,.0f}",
            f"{s.publish_s:.0f}",
            f"{s.project_s:.0f}",
            " ".join(f"{e.seconds * 1000:.0f}" for e in s.erasures),
            f"{s.median * 1000:.1f}",
            f"{max(e.seconds for e in s.erasures) * 1000:.1f}",
            f"{statistics.median(e.open_seconds for e in s.erasures) * 1000:.0f}",
            f"{s.forget_s:.1f}",
        )
        for s in stages
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(
        "\nerase ms = Eraser.erase(contact) to its receipt, one contact at a time, the same "
        "contacts in both stores, in turn (its log, key store and views opened before, as "
        "istore erase does: open ms); views forget s = the worker applying the erasure events "
        "afterwards (all of them, one run)."
    )
    print("\nsteps of each erasure (ms), its events, SQL statements, log reads, full scans:")
    for s in stages:
        for e in s.erasures:
            steps = ", ".join(f"{k} {v * 1000:.1f}" for k, v in e.steps.items())
            scans = ", ".join(f"{x['file']}:{x['table']} ({x['rows']:,} rows)" for x in e.scans)
            keys = sum(int(d.get("keys_destroyed", 0)) for d in e.receipt["destroyed"])
            print(
                f"  at {s.events:,}: {e.contact} ({e.events} events, {keys} keys destroyed): "
                f"{steps}; {e.statements} statements; log reads {e.log_reads or 'none'}; "
                f"full scans: {scans or 'none'}"
            )
    scans_seen = {(x["file"], x["table"]): x for s in stages for e in s.erasures for x in e.scans}
    for x in scans_seen.values():
        print(f"  full scan of {x['file']}:{x['table']} ({x['rows']:,} rows): {x['statement']}")

    small, large = stages[0], stages[-1]
    growth = large.median / small.median if small.median > 0 else math.inf
    worst = max(e.seconds for e in large.erasures)
    log_reads = sum(sum(e.log_reads.values()) for s in stages for e in s.erasures)
    log_scans = [x for x in scans_seen.values() if x["file"].startswith("log.sqlite")]
    at_goal = large.events >= 1_000_000
    print()
    print(f"goals (stated for 1,000,000 events; the large store has {large.events:,}):")
    goals = [
        (
            f"erasure < {ERASE_GOAL_S:g} s to the receipt (slowest at {large.events:,})",
            f"{worst * 1000:.0f} ms",
            worst < ERASE_GOAL_S,
        ),
        (
            "no log scan (log reads and full scans of log.sqlite during the erasures)",
            f"{log_reads} reads, {len(log_scans)} scans",
            log_reads == 0 and not log_scans,
        ),
        (
            f"erasure time does not grow with the log: median at {large.events:,} / at "
            f"{small.events:,} < {GROWTH_GOAL:g}",
            f"{large.median * 1000:.1f} / {small.median * 1000:.1f} ms = {growth:.2f}x "
            f"(the log grew {large.events / small.events:.0f}x)",
            growth < GROWTH_GOAL,
        ),
    ]
    goal_rows = [
        (text, measured, ("PASS" if ok else "FAIL") + ("" if at_goal else " (at this scale)"))
        for text, measured, ok in goals
    ]
    widths = [max(len(r[i]) for r in goal_rows) for i in range(3)]
    for row in goal_rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(
        f"\nwall {info['wall_seconds']:.0f}s; {os.cpu_count()} CPUs; Python "
        f"{sys.version.split()[0]}; load average {info['load_average_start'][0]} at start, "
        f"{info['load_average_end'][0]} at end (other work on the machine skews every figure)"
    )
    summary = {
        "bench": "erasure",
        **info,
        "stages": [
            {
                "events": s.events,
                "log_mb": round(s.log_mb, 1),
                "views_mb": round(s.views_mb, 1),
                "publish_s": round(s.publish_s, 1),
                "project_s": round(s.project_s, 1),
                "forget_s": round(s.forget_s, 2),
                "erase_ms": [round(e.seconds * 1000, 1) for e in s.erasures],
                "open_ms": [round(e.open_seconds * 1000, 1) for e in s.erasures],
                "median_ms": round(s.median * 1000, 1),
                "steps_ms": [
                    {k: round(v * 1000, 1) for k, v in e.steps.items()} for e in s.erasures
                ],
                "contact_events": [e.events for e in s.erasures],
                "statements": [e.statements for e in s.erasures],
                "log_reads": [e.log_reads for e in s.erasures],
                "full_scans": sorted(
                    {f"{x['file']}:{x['table']}" for e in s.erasures for x in e.scans}
                ),
            }
            for s in stages
        ],
        "growth": round(growth, 3),
        "goals": {
            "erase_under_1s": goals[0][2],
            "no_log_scan": goals[1][2],
            "flat_with_log_size": goals[2][2],
        },
    }
    print(orjson.dumps(summary).decode())


# --------------------------------------------------------------------------- main


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.erasure", description=__doc__)
    p.add_argument("--events", type=int, default=1_000_000, help="demo events in the store")
    p.add_argument(
        "--small",
        type=int,
        help="events in the smaller store (default: --events / 10)",
    )
    p.add_argument("--erase", type=int, default=7, help="contacts erased from each store")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if args.small is None:
        args.small = max(1, args.events // 10)
    if args.events < 2 or not 0 < args.small < args.events or args.erase < 1:
        p.error("need --events >= 2, 0 < --small < --events and --erase >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    started = time.perf_counter()
    info: dict[str, Any] = {
        "events": args.events,
        "small": args.small,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory(prefix="istore-bench-erasure-") as tmp_name:
        tmp = Path(tmp_name)
        events_file = tmp / "events.jsonl"
        _say(f"generating {args.events:,} demo events")
        contacts, _, origin = write_events(events_file, args.events, args.seed)
        info |= {"documents": origin, "contacts": contacts}
        # Each contact's own events, and who has any in the first part (a candidate there).
        first: Counter[str] = Counter()
        every: Counter[str] = Counter()
        for i, line in enumerate(lines_of(events_file, 0, args.events)):
            contact = orjson.loads(line)["subject"].get("contact_id")
            if contact is not None:
                every[contact] += 1
                if i < args.small:
                    first[contact] += 1
        candidates = sorted(first)
        random.Random(args.seed).shuffle(candidates)
        key = new_master_key()
        stores = []
        for name, events, counts in (("small", args.small, first), ("large", args.events, every)):
            settings = Settings(backend="embedded", data_dir=tmp / name, master_key=key)
            stores.append((settings, build(settings, events_file, events), counts))
        events_file.unlink()
        # Erasures measure the store at rest, not the disk writing back what the loads left
        # in the page cache (a commit's fsync waits behind it; see bench/README.md).
        _say("sync: the loads' dirty pages to disk")
        os.sync()
        erase_in_turn(stores, candidates[: args.erase])
        stages = [stage for _, stage, _ in stores]
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    info["wall_seconds"] = round(time.perf_counter() - started, 1)
    report(args, stages, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
