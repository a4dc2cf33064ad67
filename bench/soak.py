"""Soak: ``istore serve`` (embedded default) under mixed ingest and reads for N minutes, its
RSS and its projection worker's sampled every 10 s, to tell a leak from a warm-up.

Run: ``.venv/bin/python -m bench.soak [--minutes 10] [--contacts 200] [--tracemalloc]``.
It publishes a demo year for ``--contacts`` into a temporary data folder, starts
``istore serve`` on it, waits for the worker to catch up, then drives a bounded loop: one
writer POSTing batches of new events (``--batch`` every ``--write-every`` seconds: demo events
of further seeds and page views of known contacts) and ``--readers`` threads reading
timelines, consent, send decisions and lead scores (one read in ``--token-share`` passes the
writer's last consistency token). It prints the RSS series, then each process's growth over
the first and the last half of the run and whether it plateaus (the last half grew less than
a quarter of the first, or under 2 MB). With ``--tracemalloc`` both processes trace Python
allocations from ``--trace-warmup`` seconds after their start and write, every ``--sample``
seconds, the 25 biggest increases since the first sample; the last of those is printed at
the end. A measurement, not a test: exit status 0 whatever the result.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import orjson

from bench.http import (
    Client,
    _base_env,
    _page_view,
    _say,
    _token,
    access_file,
    start_service,
)
from bench.projections import _table
from interaction_store import demo
from interaction_store.codec import encode
from interaction_store.ingest import Ingest
from interaction_store.log import open_log
from interaction_store.settings import Settings

PLATEAU_SHARE = 0.25
"""The last half may grow at most this share of the first half's growth to count as flat."""
PLATEAU_FLOOR_MB = 2.0
"""Growth under this many MB over the last half is flat whatever the first half did."""
CATCH_UP_TIMEOUT_S = 300.0
MODEL = "marketing-engagement"

# Loaded by every Python process of the server (the data folder's sitecustomize on
# PYTHONPATH) when --tracemalloc is on: the API process and the spawned worker alike.
_TRACER = """
import os, threading, time, tracemalloc

def _trace(folder, every, warmup):
    # Tracing from the start would slow the imports and the catch-up several times over;
    # growth is what matters, and only blocks allocated after start() are compared.
    time.sleep(warmup)
    tracemalloc.start(12)
    time.sleep(every)
    # Not the tracer's own work (formatting tracebacks fills linecache).
    skip = [tracemalloc.Filter(False, __file__, all_frames=True)]
    base = tracemalloc.take_snapshot().filter_traces(skip)
    path = os.path.join(folder, f"trace-{os.getpid()}.txt")
    while True:
        time.sleep(every)
        now = tracemalloc.take_snapshot().filter_traces(skip)
        current, peak = tracemalloc.get_traced_memory()
        lines = [f"pid {os.getpid()} traced {current / 1e6:.1f} MB (peak {peak / 1e6:.1f})"]
        for stat in now.compare_to(base, "traceback")[:25]:
            lines.append(f"{stat.size_diff / 1e3:+10.1f} kB {stat.count_diff:+8d} blocks")
            lines += ["      " + line for line in stat.traceback.format(limit=6)]
        tmp = path + ".tmp"
        with open(tmp, "w") as out:
            out.write("\\n".join(lines) + "\\n")
        os.replace(tmp, path)

if os.environ.get("ISTORE_SOAK_TRACE"):
    threading.Thread(
        target=_trace,
        args=(os.environ["ISTORE_SOAK_TRACE"], float(os.environ["ISTORE_SOAK_TRACE_EVERY"]),
              float(os.environ["ISTORE_SOAK_TRACE_WARMUP"])),
        daemon=True,
    ).start()
"""


def rss_kb(pid: int) -> int | None:
    """VmRSS of a process in kB (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def children(pid: int) -> dict[int, str]:
    """The live child processes of ``pid`` and their command lines (from /proc)."""
    out: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out[int(entry)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return out


@dataclass
class Sample:
    at: float
    server_kb: int
    children_kb: dict[str, int]
    posted: int
    reads: int


@dataclass
class Load:
    """What the writer and readers did, shared between their threads."""

    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[str] = field(default_factory=Counter)
    posted: int = 0
    reads: int = 0
    token: str | None = None
    failures: list[str] = field(default_factory=list)

    def count(self, what: str, status: int, body: bytes) -> None:
        with self.lock:
            self.statuses[f"{what} {status}"] += 1
            if status >= 500 and status != 504 and len(self.failures) < 5:
                self.failures.append(f"{what}: {status} {body[:200]!r}")


def demo_lines(contacts: int, seed: int, end: datetime) -> Iterator[bytes]:
    for event in demo.generate(contacts, seed, end):
        yield encode(event)


def known_ids(folder: Path, contacts: int, seed: int, end: datetime) -> tuple[list[str], list[str]]:
    """Publish the demo year (as ``istore publish``); the contact and lead ids in it."""
    people: set[str] = set()
    leads: set[str] = set()

    def lines() -> Iterator[bytes]:
        for event in demo.generate(contacts, seed, end):
            if event.subject.contact_id is not None:
                people.add(str(event.subject.contact_id))
            if event.subject.lead_id is not None:
                leads.add(str(event.subject.lead_id))
            yield encode(event)

    with open_log(Settings(backend="embedded", data_dir=folder)) as log:
        report = Ingest(log).publish_lines(lines(), "soak")
    _say(f"demo year for {contacts} contacts: {report.summary()}")
    return sorted(people), sorted(leads)


def writer(url: str, args: argparse.Namespace, contacts: Sequence[str], load: Load) -> None:
    """A batch every ``--write-every`` s: demo events of the next seeds (new contacts, their
    emails, visits, consent) with page views of known contacts mixed in."""
    rng = random.Random(args.seed + 7)
    end = datetime.now(UTC).replace(microsecond=0)
    more = itertools.chain.from_iterable(
        demo_lines(args.contacts, args.seed + n, end) for n in itertools.count(1)
    )
    client = Client(url)
    try:
        while not load.stop.wait(args.write_every):
            docs = [next(more) for _ in range(args.batch - args.batch // 5)]
            docs += [orjson.dumps(_page_view(rng.choice(contacts))) for _ in range(args.batch // 5)]
            status, body = client.post_json("/v1/events", b"[" + b",".join(docs) + b"]")
            load.count("POST /v1/events", status, body)
            if status == 200:
                with load.lock:
                    load.posted += len(docs)
                    load.token = _token(body)
    except Exception as exc:  # the run reports it: a soak that stopped writing says why
        load.failures.append(f"writer: {exc!r}")
    finally:
        client.close()


def reader(
    url: str, n: int, args: argparse.Namespace, contacts: Sequence[str], leads: Sequence[str],
    load: Load,
) -> None:  # fmt: skip
    rng = random.Random(args.seed * 100 + n)
    client = Client(url)
    try:
        while not load.stop.is_set():
            contact, lead = rng.choice(contacts), rng.choice(leads) if leads else None
            what, path = rng.choice(
                [
                    ("timeline", f"/v1/contacts/{contact}/timeline?limit=20"),
                    ("timeline email", f"/v1/contacts/{contact}/timeline?limit=50&channel=email"),
                    ("consent", f"/v1/contacts/{contact}/consent"),
                    (
                        "decision",
                        f"/v1/contacts/{contact}/consent/decision?channel=email&purpose=commercial",
                    ),
                    ("scores", f"/v1/leads/{lead}/scores"),
                    ("explain", f"/v1/leads/{lead}/scores/{MODEL}?explain=true"),
                ]
            )
            token = load.token
            if token and rng.random() < args.token_share:
                path += ("&" if "?" in path else "?") + f"consistency={quote(token)}"
                what += " +token"
            status, body = client.get(path)
            load.count(what, status, body)
            with load.lock:
                load.reads += 1
            if args.read_gap > 0:
                time.sleep(args.read_gap)
    except Exception as exc:  # as the writer
        load.failures.append(f"reader {n}: {exc!r}")
    finally:
        client.close()


def catch_up(url: str) -> None:
    """Wait until every live view has applied the whole log (the demo year)."""
    client = Client(url)
    started = time.monotonic()
    try:
        while time.monotonic() - started < CATCH_UP_TIMEOUT_S:
            status, body = client.get("/v1/positions")
            if status == 200:
                doc = orjson.loads(body)
                lags = [int(view["lag"]) for view in doc["views"]]
                if lags and not any(lags):
                    _say(f"views caught up in {time.monotonic() - started:.0f}s")
                    return
            time.sleep(1)
    finally:
        client.close()
    raise SystemExit(f"the views did not catch up in {CATCH_UP_TIMEOUT_S:.0f}s")


def growth(series: Sequence[int]) -> tuple[float, float]:
    """MB grown over the first and over the last half of a series."""
    mid = len(series) // 2
    return (series[mid] - series[0]) / 1024, (series[-1] - series[mid]) / 1024


def verdict(first: float, last: float) -> str:
    if last <= PLATEAU_FLOOR_MB or last <= PLATEAU_SHARE * max(first, 0.0):
        return "plateau"
    return "STILL GROWING"


def report(samples: Sequence[Sample], load: Load, folder: Path, trace: Path | None) -> None:
    names = sorted({name for s in samples for name in s.children_kb})
    header = ["t s", "server MB", *[f"{n} MB" for n in names], "events posted", "reads"]
    rows = [
        [
            f"{s.at:.0f}",
            f"{s.server_kb / 1024:.1f}",
            *[f"{s.children_kb.get(n, 0) / 1024:.1f}" for n in names],
            f"{s.posted:,}",
            f"{s.reads:,}",
        ]
        for s in samples
    ]
    print(_table(header, rows))
    print()
    summary: dict[str, object] = {}
    for name, series in [("server", [s.server_kb for s in samples])] + [
        (n, [s.children_kb.get(n, 0) for s in samples]) for n in names
    ]:
        first, last = growth(series)
        result = verdict(first, last)
        print(
            f"{name}: {series[0] / 1024:.1f} -> {series[len(series) // 2] / 1024:.1f} -> "
            f"{series[-1] / 1024:.1f} MB; first half {first:+.1f} MB, last half {last:+.1f} MB: "
            f"{result}"
        )
        summary[name] = {
            "start_mb": round(series[0] / 1024, 1),
            "end_mb": round(series[-1] / 1024, 1),
            "first_half_mb": round(first, 1),
            "last_half_mb": round(last, 1),
            "verdict": result,
        }
    sizes = {p.name: round(p.stat().st_size / 1e6, 1) for p in sorted(folder.glob("*.sqlite*"))}
    print(f"data files (MB): {sizes}")
    print(f"requests: {dict(sorted(load.statuses.items()))}")
    for failure in load.failures:
        print(f"failure: {failure}")
    if trace is not None:
        for path in sorted(trace.glob("trace-*.txt")):
            print(f"\n--- tracemalloc, growth since warm-up ({path.name}) ---")
            print(path.read_text())
    summary |= {"posted": load.posted, "reads": load.reads, "files_mb": sizes}
    print(orjson.dumps(summary).decode())


def soak(args: argparse.Namespace, tmp: Path) -> None:
    folder = tmp / "data"
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    contacts, leads = known_ids(folder, args.contacts, args.seed, end)
    env = _base_env() | {
        "ISTORE_BACKEND": "embedded",
        "ISTORE_DATA_DIR": str(folder),
        "ISTORE_ACCESS_FILE": str(access_file(tmp / "access.toml")),
    }
    trace = None
    if args.tracemalloc:
        trace = tmp / "trace"
        trace.mkdir()
        (trace / "sitecustomize.py").write_text(_TRACER)
        env |= {
            "PYTHONPATH": os.pathsep.join([str(trace), os.environ.get("PYTHONPATH", "")]),
            "ISTORE_SOAK_TRACE": str(trace),
            "ISTORE_SOAK_TRACE_EVERY": str(args.sample),
            "ISTORE_SOAK_TRACE_WARMUP": str(args.trace_warmup),
        }
    service = start_service("soak", "all", env, tmp / "logs")
    load = Load()
    samples: list[Sample] = []
    try:
        catch_up(service.url)
        threads = [threading.Thread(target=writer, args=(service.url, args, contacts, load))]
        threads += [
            threading.Thread(target=reader, args=(service.url, n, args, contacts, leads, load))
            for n in range(args.readers)
        ]
        for t in threads:
            t.start()
        started = time.monotonic()
        until = started + args.minutes * 60
        while True:
            now = time.monotonic()
            kids = children(service.proc.pid)
            sizes: dict[str, int] = {}
            for pid, cmdline in kids.items():
                kb = rss_kb(pid)
                name = (
                    "tracker"
                    if "resource_tracker" in cmdline
                    else "worker"
                    if "spawn_main" in cmdline
                    else "child"
                )
                sizes[name] = sizes.get(name, 0) + (kb or 0)
            server = rss_kb(service.proc.pid)
            if server is None:
                raise SystemExit(f"the server exited:\n{service.tail()}")
            samples.append(Sample(now - started, server, sizes, load.posted, load.reads))
            _say(
                f"t={now - started:4.0f}s server {server / 1024:.1f} MB, "
                + ", ".join(f"{k} {v / 1024:.1f} MB" for k, v in sizes.items())
                + f", {load.posted:,} events posted, {load.reads:,} reads"
            )
            if now >= until or load.failures:
                break
            time.sleep(min(args.sample, max(until - time.monotonic(), 0.0)))
        load.stop.set()
        for t in threads:
            t.join()
    finally:
        load.stop.set()
        service.stop()
    report(samples, load, folder, trace)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to drive load")
    parser.add_argument("--contacts", type=int, default=200, help="demo contacts loaded first")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=50, help="events per POST")
    parser.add_argument("--write-every", type=float, default=0.25, help="seconds between POSTs")
    parser.add_argument("--readers", type=int, default=2, help="reading threads")
    parser.add_argument("--read-gap", type=float, default=0.0, help="seconds between reads")
    parser.add_argument("--token-share", type=float, default=0.1, help="reads with a token")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--tracemalloc", action="store_true", help="trace Python allocations")
    parser.add_argument(
        "--trace-warmup", type=float, default=60.0, help="seconds before the base snapshot"
    )
    args = parser.parse_args(argv)
    if args.batch < 5:
        parser.error(f"--batch must be at least 5, got {args.batch}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    with tempfile.TemporaryDirectory(prefix="istore-soak-") as tmp:
        soak(args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
