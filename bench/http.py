"""HTTP API: ingest throughput, timeline reads under a load generator, publish-to-visible
freshness, against the embedded default (``istore serve``) and against Kafka + PostgreSQL
(``istore serve --role ingest|worker|read``), every service a real process.

Run: ``.venv/bin/python -m bench.http [--events 1000000] [--only embedded|kafka]
[--data DIR]``. Without ``--bootstrap`` a local broker, and without ``--postgres-dsn`` a local
PostgreSQL cluster, is started in a temporary folder and stopped at the end. Needs ``wrk``
(Debian package; installed with apt-get when missing and run as root). Prints a table of
figures against the issue's goals, then one line of JSON. The figures are measurements, not
tests: the exit status is 0 whether or not a goal is met.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from bench.log_throughput import PRODUCER_TUNING, Data, make_data
from bench.projections import (
    _CLI,
    _checked,
    _percentile,
    _table,
    code_state,
    delete_topics,
    fresh_database,
    kafka_broker,
    postgres_server,
    run_child,
    write_events,
)
from interaction_store.api.access import DEFAULT_ROLES, hash_key
from interaction_store.ingest import Ingest
from interaction_store.log import open_log
from interaction_store.settings import Settings

BATCH = 500
"""Events per ingest request (the issue's figure)."""

LOAD_BATCH = 5000
"""Documents per publish batch when loading the read data (``istore publish``'s default)."""

INGEST_GOAL = 0.6
"""HTTP ingest, as a fraction of the raw kafka-python producer's events/s."""

READ_P99_GOAL_MS = 20.0
READ_RATE_GOAL = 1000.0
FRESHNESS_P99_GOAL_S = 1.0

GOAL_SCALE = 1_000_000
"""The events the read goals are stated for."""

KEY = "istore_bench_key_not_secret_0123456789"
"""The API key the harness uses (role admin): known, written hashed to the access file."""

LUA = Path(__file__).with_name("timeline.lua")
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
FRESHNESS_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------- helpers


def _say(message: str) -> None:
    print(f"[bench] {message} (load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def access_file(path: Path) -> Path:
    """The default roles and one key, ``bench`` (role admin: reads every category)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = f'\n[keys.bench]\nrole = "admin"\nsha256 = "{hash_key(KEY)}"\n'
    path.write_text(DEFAULT_ROLES + entry, encoding="utf-8")
    return path


def _base_env() -> dict[str, str]:
    """This environment without any ISTORE_* setting (each service gets exactly its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ISTORE_")}


def ensure_wrk() -> str:
    """The wrk binary; installs Debian's package when missing and run as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        _say("wrk is missing: apt-get install -y wrk")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "wrk"]
        if subprocess.run(install, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
            subprocess.run(install, env=env, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit(
        "the read figures need wrk (https://github.com/wg/wrk): `sudo apt-get install wrk`, "
        "or pass --no-reads"
    )


# --------------------------------------------------------------------------- services


@dataclass
class Service:
    """One ``istore serve`` process (its own process group, so uvicorn's workers stop too)."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _say(f"{self.name} did not stop in {STOP_TIMEOUT_S:.0f}s: SIGKILL")
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated whole numbers") from None
    if not counts:
        raise argparse.ArgumentTypeError(f"{text!r}: at least one number")
    return counts


def start_service(
    name: str,
    role: str,
    env: dict[str, str],
    logs: Path,
    *,
    listens: bool = True,
    workers: int = 1,
) -> Service:
    """``istore serve --role ROLE`` on a free port; returns once /readyz answers 200 (HTTP
    roles) or the process has been up for a second (the worker)."""
    port = _free_port() if listens else None
    argv = [sys.executable, *_CLI, "serve", "--role", role, "--log-level", "warning"]
    if port is not None:
        argv += ["--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        if role not in ("ingest", "read"):
            raise SystemExit(f"{name}: several server processes only for the ingest and read roles")
        argv += ["--workers", str(workers), "--no-access-log"]
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    service = Service(name, proc, log_path, port)
    _say(f"started {name}: {' '.join(argv[1:])} (pid {proc.pid}, log {log_path})")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited ({proc.returncode}):\n{service.tail()}")
        if port is None:
            if time.monotonic() > deadline - READY_TIMEOUT_S + 1.0:
                return service
        else:
            with suppress(OSError, http.client.HTTPException):
                status, _ = Client(service.url).get("/readyz")
                if status == 200:
                    return service
        if time.monotonic() > deadline:
            service.stop()
            raise SystemExit(f"{name} not ready in {READY_TIMEOUT_S:.0f}s:\n{service.tail()}")
        time.sleep(0.2)


class Client:
    """A keep-alive HTTP/1.1 connection with the bench key (one per thread)."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        self.headers = {"Authorization": f"Bearer {KEY}"}

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> tuple[int, bytes]:
        headers = dict(self.headers)
        if content_type:
            headers["Content-Type"] = content_type
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # reconnect on the next request
            raise

    def get(self, path: str) -> tuple[int, bytes]:
        return self.request("GET", path)

    def post_json(self, path: str, body: bytes) -> tuple[int, bytes]:
        return self.request("POST", path, body, "application/json")

    def close(self) -> None:
        self.conn.close()


# --------------------------------------------------------------------------- figures


@dataclass
class Row:
    """One line of the summary: a figure, its value, the goal and whether it was met."""

    key: str
    figure: str
    value: str
    goal: str = ""
    met: bool | None = None
    load: float = field(default_factory=_load)


@dataclass
class Run:
    args: argparse.Namespace
    tmp: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    bootstrap: str | None = None
    rows: list[Row] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    json: dict[str, Any] = field(default_factory=dict)
    created_topics: list[str] = field(default_factory=list)
    access: Path = Path()

    def kafka_settings(self, name: str, data_dir: Path | None = None) -> Settings:
        assert self.bootstrap is not None
        return Settings(
            backend="kafka",
            data_dir=data_dir or self.tmp / f"kafka-{name}",
            kafka_bootstrap_servers=self.bootstrap,
            topic_prefix=self.prefix(name),
            kafka_client_id=f"istore-bench-{name}",
        )

    def prefix(self, name: str) -> str:
        return f"bench{self.tag}.{name}."

    def env_kafka(self, name: str, data_dir: Path, dsn: str | None = None) -> dict[str, str]:
        assert self.bootstrap is not None
        env = _base_env() | {
            "ISTORE_BACKEND": "kafka",
            "ISTORE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "ISTORE_TOPIC_PREFIX": self.prefix(name),
            "ISTORE_DATA_DIR": str(data_dir),
            "ISTORE_ACCESS_FILE": str(self.access),
        }
        if dsn is not None:
            env["ISTORE_POSTGRES_DSN"] = dsn
        return env

    def env_embedded(self, data_dir: Path) -> dict[str, str]:
        return _base_env() | {
            "ISTORE_BACKEND": "embedded",
            "ISTORE_DATA_DIR": str(data_dir),
            "ISTORE_ACCESS_FILE": str(self.access),
        }


# --------------------------------------------------------------------------- ingest


def _bodies(lines: Sequence[bytes]) -> list[bytes]:
    """JSON arrays of BATCH documents: what an upstream system POSTs."""
    return [b"[" + b",".join(lines[i : i + BATCH]) + b"]" for i in range(0, len(lines), BATCH)]


def _accepted(body: bytes) -> Counter[str]:
    """Outcomes by status in an ingest answer."""
    return Counter(str(r.get("status")) for r in orjson.loads(body)["events"])


def post_batches(url: str, bodies: Sequence[bytes], clients: int) -> tuple[float, Counter[str]]:
    """POST every body to /v1/events over ``clients`` keep-alive connections at once; wall
    seconds from the first request to the last answer, and the outcomes."""
    queue = iter(range(len(bodies)))
    lock = threading.Lock()
    outcomes: Counter[str] = Counter()
    failures: list[str] = []

    def worker() -> None:
        client = Client(url)
        try:
            while True:
                with lock:
                    i = next(queue, None)
                if i is None or failures:
                    return
                status, body = client.post_json("/v1/events", bodies[i])
                if status != 200:
                    failures.append(f"POST /v1/events: {status} {body[:300]!r}")
                    return
                counted = _accepted(body)
                with lock:
                    outcomes.update(counted)
        except Exception as exc:  # reported below: a failed run must say why
            failures.append(repr(exc))
        finally:
            client.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    if failures:
        raise SystemExit(f"ingest over HTTP failed: {failures[0]}")
    return seconds, outcomes


def http_ingest(run: Run, what: str, service: Service, data: Data) -> tuple[float, float]:
    """Warm-up, then the measured documents; events/s and seconds."""
    clients = run.args.ingest_clients
    bodies = _bodies(data.lines)
    try:
        post_batches(service.url, _bodies(data.warm_lines), clients)
        _say(f"{what}: {len(data.lines):,} events in {len(bodies)} POSTs, {clients} connections")
        seconds, outcomes = post_batches(service.url, bodies, clients)
    except SystemExit as exc:
        tail = service.tail(200).splitlines()
        cause = next((ln for ln in reversed(tail) if "Error" in ln), "")
        state = "running" if service.proc.poll() is None else f"exited {service.proc.returncode}"
        raise SystemExit(f"{exc} [server {state}: {cause}]\n" + "\n".join(tail[-40:])) from None
    if outcomes["accepted"] != len(data.lines):
        raise SystemExit(f"{what}: outcomes {dict(outcomes)}, expected all accepted")
    return len(data.lines) / seconds, seconds


def raw_producer(run: Run, data: Data) -> float:
    """Baseline: a kafka-python ``KafkaProducer`` with our producer's settings sending the
    exact records our log would (bytes, keys, topics, type header), one flush at the end.
    Events per second."""
    from kafka import KafkaProducer

    from interaction_store.log.kafka import TYPE_HEADER, KafkaLog

    with ExitStack() as stack:
        logs = {}
        for name in ("warm", "raw"):
            log = KafkaLog(run.kafka_settings(name))
            stack.callback(log.close)
            run.created_topics += log.ensure_topics()
            logs[name] = log
        config = logs["raw"].producer.config
        tuning = {k: config[k] for k in PRODUCER_TUNING if k in config}
        run.info["producer"] = {k: str(v) for k, v in tuning.items()}
        producer = KafkaProducer(**run.kafka_settings("raw").kafka_client_config(), **tuning)
        stack.callback(producer.close)

        def send(name: str, records: Sequence[tuple[str, bytes, bytes, bytes]]) -> None:
            topics = {t.logical: t.name for t in logs[name].catalog.topics.values()}
            for logical, key, value, kind in records:
                producer.send(topics[logical], value=value, key=key, headers=[(TYPE_HEADER, kind)])
            producer.flush()

        # A fresh broker runs at a fraction of its speed for its first ~20k records (JIT).
        warm = list(itertools.islice(itertools.cycle(data.records), run.args.broker_warmup))
        _say(f"broker warm-up: {len(warm):,} records")
        send("warm", warm)
        send("raw", data.warm_records)
        _say(f"raw producer: {len(data.records):,} records")
        started = time.perf_counter()
        send("raw", data.records)
        seconds = time.perf_counter() - started
    return len(data.records) / seconds


def bench_ingest(run: Run, backends: list[str]) -> None:
    args = run.args
    _say(f"making {args.ingest_events:,} ingest documents (+{BATCH * 10} warm-up)")
    data = make_data(args.ingest_events, BATCH * 10, 1000, args.seed, run.tmp)
    raw_rate = raw_producer(run, data)
    run.rows.append(
        Row(
            "raw_producer",
            "raw kafka-python producer (baseline of both ingest ratios)",
            f"{raw_rate:,.0f} events/s",
        )
    )
    run.json["ingest"] = {"raw_producer_events_s": round(raw_rate)}
    for backend in backends:
        if backend == "kafka":
            env = run.env_kafka("ingest", run.tmp / "svc-ingest")
            ensure_topics(run, "ingest")
            service = start_service(
                "ingest-kafka", "ingest", env, run.tmp / "logs", workers=args.ingest_workers
            )
            label = "HTTP ingest, Kafka (istore serve --role ingest)"
        else:
            env = run.env_embedded(run.tmp / "ingest-embedded")
            service = start_service("ingest-embedded", args.embedded_role, env, run.tmp / "logs")
            label = f"HTTP ingest, embedded (istore serve --role {args.embedded_role})"
        try:
            rate, seconds = http_ingest(run, label, service, data)
        except SystemExit as exc:  # a failed figure is a result too: say so, go on
            first = str(exc).splitlines()[0]
            _say(f"{label} FAILED: {exc}")
            run.rows.append(Row(f"ingest_{backend}", label, f"FAILED: {first[:90]}", "", False))
            run.json["ingest"][backend] = {"error": str(exc)[-2000:]}
            continue
        finally:
            service.stop()
        ratio = rate / raw_rate
        run.rows.append(
            Row(
                f"ingest_{backend}",
                f"{label}, batches of {BATCH}",
                f"{rate:,.0f} events/s = {ratio:.2f}x raw",
                f">= {INGEST_GOAL}x raw producer",
                ratio >= INGEST_GOAL,
            )
        )
        run.json["ingest"][backend] = {
            "events_s": round(rate),
            "seconds": round(seconds, 2),
            "ratio": round(ratio, 3),
        }


def ensure_topics(run: Run, name: str) -> None:
    """The catalog's topics under one bench prefix (remembered, to delete them afterwards)."""
    from interaction_store.log.kafka import KafkaLog

    with KafkaLog(run.kafka_settings(name)) as log:
        run.created_topics += log.ensure_topics()


# --------------------------------------------------------------------------- read data


@dataclass
class Loaded:
    events_file: Path
    contacts_file: Path
    contacts: list[str]


def events_data(run: Run) -> Loaded:
    """N demo events as JSON Lines and the contact ids in them; kept in ``--data`` if given."""
    args = run.args
    folder = (args.data or run.tmp / "data") / f"events-{args.events}-seed{args.seed}"
    folder.mkdir(parents=True, exist_ok=True)
    events_file, contacts_file = folder / "events.jsonl", folder / "contacts.txt"
    if not contacts_file.exists():
        _say(f"generating {args.events:,} demo events into {folder}")
        started = time.perf_counter()
        _, ids, origin = write_events(events_file, args.events, args.seed)
        contacts_file.write_text("".join(f"{i}\n" for i in ids))
        (folder / "origin.txt").write_text(origin + "\n")
        _say(f"generated in {time.perf_counter() - started:.0f}s")
    else:
        _say(f"reusing the demo events in {folder}")
    run.info["documents"] = (folder / "origin.txt").read_text().strip()
    contacts = contacts_file.read_text().split()
    return Loaded(events_file, contacts_file, contacts)


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        yield from f


def load(run: Run, loaded: Loaded, settings: Settings, env: dict[str, str], what: str) -> None:
    """Publish the events (as ``istore publish``) and project them (``istore run --once``)."""
    from interaction_store.log.kafka import KafkaLog

    _say(f"{what}: publishing {run.args.events:,} events")
    started = time.perf_counter()
    with open_log(settings) as log:
        if isinstance(log, KafkaLog):
            run.created_topics += log.ensure_topics()
        report = Ingest(log, LOAD_BATCH).publish_lines(_lines(loaded.events_file), "bench")
    if report.accepted != run.args.events:
        raise SystemExit(f"{what}: {report.summary()}; expected {run.args.events} accepted")
    published = time.perf_counter() - started
    _say(f"{what}: published in {published:.0f}s; projecting (istore run --once)")
    child = _checked(run_child([*_CLI, "run", "--once"], env, Path.cwd()), f"{what} worker")
    _say(f"{what}: projected in {child.seconds:.0f}s")
    run.json.setdefault("load", {})[what] = {
        "publish_s": round(published, 1),
        "project_s": round(child.seconds, 1),
    }


def embedded_data(run: Run, loaded: Loaded) -> Path:
    """The embedded data folder holding the loaded log and its views (cached with --data)."""
    folder = loaded.events_file.parent / "embedded"
    marker = folder / "bench-loaded.txt"
    if marker.exists():
        _say(f"reusing the loaded embedded store in {folder}")
        run.json.setdefault("load", {})["embedded"] = {"cached": True}
        return folder
    if folder.exists():
        shutil.rmtree(folder)  # a load that did not finish
    settings = Settings(backend="embedded", data_dir=folder)
    load(run, loaded, settings, run.env_embedded(folder), "embedded")
    marker.write_text(f"{run.args.events} events, {code_state()}\n")
    return folder


# --------------------------------------------------------------------------- reads


@dataclass
class WrkResult:
    requests: int
    seconds: float
    errors: dict[str, int]
    latency_ms: dict[str, float]
    connections: int
    threads: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def run_wrk(
    wrk: str, url: str, ids: Path, seconds: float, connections: int, threads: int
) -> WrkResult:
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA),
        url,
        "--",
        str(ids),
        KEY,
        "50",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    doc = orjson.loads(line.removeprefix("WRK_JSON "))
    return WrkResult(
        doc["requests"],
        doc["duration_us"] / 1e6,
        doc["errors"],
        {k: v / 1000 for k, v in doc["latency_us"].items()},
        connections,
        threads,
    )


def sample_reads(url: str, contacts: Sequence[str], count: int, seed: int) -> dict[str, Any]:
    """A few timeline pages through Python first: the statuses and entries per page, so the
    wrk figures are known to be about real pages (not 404s or empty ones)."""
    rng = random.Random(seed)
    client = Client(url)
    statuses: Counter[int] = Counter()
    entries = empty = 0
    try:
        for contact in rng.choices(contacts, k=count):
            status, body = client.get(f"/v1/contacts/{contact}/timeline?limit=50")
            statuses[status] += 1
            if status == 200:
                n = len(orjson.loads(body).get("entries", []))
                entries += n
                empty += n == 0
    finally:
        client.close()
    ok = statuses[200]
    return {
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "entries_per_page": round(entries / ok, 1) if ok else 0,
        "empty_pages": empty,
    }


def bench_reads(run: Run, wrk: str, service: Service, loaded: Loaded, label: str, key: str) -> None:
    args = run.args
    sample = sample_reads(service.url, loaded.contacts, 200, args.seed)
    _say(f"{label}: sample of 200 timeline reads: {sample}")
    if sample["statuses"].get("200", 0) < 100:
        raise SystemExit(f"{label}: timeline reads mostly fail: {sample} ({service.tail()})")
    run_wrk(wrk, service.url, loaded.contacts_file, args.wrk_warmup, args.connections[-1], 1)
    for connections in args.connections:
        _wrk_figures(run, wrk, service, loaded, f"{label}, {connections} conn.", key, connections)
        run.json["reads"][key][f"c{connections}"]["sample"] = sample


def _wrk_figures(
    run: Run, wrk: str, service: Service, loaded: Loaded, label: str, key: str, connections: int
) -> None:
    args = run.args
    _say(f"{label}: wrk {args.duration:g}s, {connections} connections")
    result = run_wrk(
        wrk,
        service.url,
        loaded.contacts_file,
        args.duration,
        connections,
        min(args.wrk_threads, connections),
    )
    lat = result.latency_ms
    errors = sum(result.errors.values())
    scaled = args.events != GOAL_SCALE
    at = f" at {args.events:,} events" if scaled else ""
    run.rows.append(
        Row(
            f"read_p99_{key}_c{connections}",
            f"{label}: timeline p50 / p99",
            f"{lat['p50']:.1f} / {lat['p99']:.1f} ms{at}",
            f"p99 <= {READ_P99_GOAL_MS:g} ms",
            lat["p99"] <= READ_P99_GOAL_MS and errors == 0,
        )
    )
    run.rows.append(
        Row(
            f"read_rate_{key}_c{connections}",
            f"{label}: timeline requests/s",
            f"{result.rate:,.0f}/s" + (f" ({errors} errors: {result.errors})" if errors else ""),
            f">= {READ_RATE_GOAL:,.0f}/s",
            result.rate >= READ_RATE_GOAL and errors == 0,
        )
    )
    run.json.setdefault("reads", {}).setdefault(key, {})[f"c{connections}"] = {
        "requests": result.requests,
        "seconds": round(result.seconds, 1),
        "requests_s": round(result.rate),
        "latency_ms": {k: round(v, 2) for k, v in lat.items()},
        "errors": result.errors,
        "connections": result.connections,
        "wrk_threads": result.threads,
        "load": _load(),
    }


# --------------------------------------------------------------------------- freshness


def _page_view(contact: str) -> dict[str, Any]:
    """A new web page view of a known contact, happening now (so first on its timeline)."""
    return {
        "event_id": str(uuid.uuid4()),
        "type": "web.page_viewed",
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "source": "bench",
        "subject": {"contact_id": contact},
        "payload": {"url": "https://example.com/bench/freshness", "seconds_on_page": 1},
    }


def _token(body: bytes) -> str | None:
    token = orjson.loads(body).get("consistency_token")
    return str(token) if token else None


def freshness(
    run: Run, ingest_url: str, read_url: str, contacts: Sequence[str], label: str, key: str
) -> None:
    """Per event: POST it, then read the contact's timeline until the event is on it (polling
    every ``--poll-ms``; or with ``--freshness-mode token``, one read passing the consistency
    token, which waits server-side). Seconds from sending the POST to the answer holding it."""
    args = run.args
    rng = random.Random(args.seed + 1)
    writer, reader = Client(ingest_url), Client(read_url)
    times: list[float] = []
    polls = 0
    try:
        for i in range(args.freshness + 5):  # the first 5 warm both paths up
            contact = rng.choice(contacts)
            doc = _page_view(contact)
            path = f"/v1/contacts/{contact}/timeline?limit=5"
            started = time.perf_counter()
            status, body = writer.post_json("/v1/events", orjson.dumps([doc]))
            if status != 200 or _accepted(body)["accepted"] != 1:
                raise SystemExit(f"{label}: POST {status} {body[:300]!r}")
            token = _token(body) if args.freshness_mode == "token" else None
            query = path + (f"&consistency={quote(token)}" if token else "")
            deadline = started + FRESHNESS_TIMEOUT_S
            while True:
                status, body = reader.get(query)
                polls += 1
                if status == 200 and doc["event_id"] in {
                    e.get("event_id") for e in orjson.loads(body).get("entries", [])
                }:
                    break
                if time.perf_counter() > deadline:
                    raise SystemExit(
                        f"{label}: event {doc['event_id']} not visible after "
                        f"{FRESHNESS_TIMEOUT_S:.0f}s (last answer {status} {body[:300]!r})"
                    )
                query = path  # the token answered without it: poll from here on
                time.sleep(args.poll_ms / 1000)
            if i >= 5:
                times.append(time.perf_counter() - started)
            time.sleep(rng.uniform(0, 2 * args.freshness_gap_ms) / 1000)
    finally:
        writer.close()
        reader.close()
    times.sort()
    p50, p99 = _percentile(times, 0.5), _percentile(times, 0.99)
    run.rows.append(
        Row(
            f"freshness_{key}",
            f"{label}: publish-to-visible p50 / p99",
            f"{p50 * 1000:.0f} / {p99 * 1000:.0f} ms",
            f"p99 <= {FRESHNESS_P99_GOAL_S:g} s",
            p99 <= FRESHNESS_P99_GOAL_S,
        )
    )
    run.json.setdefault("freshness", {})[key] = {
        "events": len(times),
        "mode": args.freshness_mode,
        "poll_ms": args.poll_ms,
        "reads": polls,
        "p50_ms": round(p50 * 1000, 1),
        "p90_ms": round(_percentile(times, 0.9) * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(times[-1] * 1000, 1),
        "load": _load(),
    }


# --------------------------------------------------------------------------- the run


def bench_embedded_reads(run: Run, wrk: str | None, loaded: Loaded) -> None:
    """1. ``istore serve`` as it comes (role all: one process, the worker in a thread):
    reads, then freshness. 2. With ``--workers`` > 1, reads again from the read role in that
    many uvicorn processes over the same data folder (what more processes buy on SQLite)."""
    folder = embedded_data(run, loaded)
    args = run.args
    env = run.env_embedded(folder)
    service = start_service("embedded-all", "all", env, run.tmp / "logs")
    label = "embedded: istore serve (role all, 1 process)"
    try:
        if wrk is not None:
            bench_reads(run, wrk, service, loaded, label, "embedded")
        if args.freshness:
            _say(f"{label}: freshness of {args.freshness} events")
            freshness(run, service.url, service.url, loaded.contacts, label, "embedded")
    finally:
        service.stop()
    if wrk is None or args.workers < 2:
        return
    service = start_service("embedded-read", "read", env, run.tmp / "logs", workers=args.workers)
    label = f"embedded: role read, {args.workers} uvicorn workers"
    try:
        bench_reads(run, wrk, service, loaded, label, "embedded_read_workers")
    finally:
        service.stop()


def bench_kafka_reads(run: Run, wrk: str | None, loaded: Loaded, dsn: str) -> None:
    args = run.args
    name = "data"
    settings = run.kafka_settings(name, run.tmp / "kafka-load")
    env = run.env_kafka(name, run.tmp / "kafka-load", dsn)
    load(run, loaded, settings, env, "kafka+postgres")
    services: list[Service] = []
    try:
        read = start_service(
            "read",
            "read",
            run.env_kafka(name, run.tmp / "svc-read", dsn),
            run.tmp / "logs",
            workers=args.workers,
        )
        services.append(read)
        label = f"kafka+postgres: role read, {args.workers} uvicorn worker(s)"
        if wrk is not None:
            bench_reads(run, wrk, read, loaded, label, "kafka_postgres")
        if args.freshness:
            services.append(
                start_service(
                    "worker",
                    "worker",
                    run.env_kafka(name, run.tmp / "svc-worker", dsn),
                    run.tmp / "logs",
                    listens=False,
                )
            )
            ingest = start_service(
                "ingest",
                "ingest",
                run.env_kafka(name, run.tmp / "svc-ingest-data"),
                run.tmp / "logs",
            )
            services.append(ingest)
            label = "kafka+postgres: split roles (ingest, worker, read)"
            _say(f"{label}: freshness of {args.freshness} events")
            freshness(run, ingest.url, read.url, loaded.contacts, label, "kafka_postgres")
    finally:
        for service in reversed(services):
            service.stop()


def measure(args: argparse.Namespace, tmp: Path) -> Run:
    run = Run(args, tmp)
    run.access = access_file(tmp / "access.toml")
    run.info |= {
        "code": code_state(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    backends = ["embedded", "kafka"] if args.only is None else [args.only]
    wrk = None if args.no_reads else ensure_wrk()
    with ExitStack() as stack:
        if not args.no_ingest or "kafka" in backends:  # the ingest baseline is on Kafka too
            bootstrap, local_broker = stack.enter_context(kafka_broker(args, tmp))
            run.bootstrap = bootstrap
            run.info["kafka"] = {"bootstrap": bootstrap, "local_broker": local_broker}
            if not local_broker:  # someone else's broker: leave no bench topics behind
                stack.callback(lambda: delete_topics(bootstrap, run.created_topics))
        if not args.no_ingest:
            bench_ingest(run, backends)
        if wrk is None and not args.freshness:
            return run
        loaded = events_data(run)
        if "embedded" in backends:
            bench_embedded_reads(run, wrk, loaded)
        if "kafka" in backends:
            server_dsn, local_pg = stack.enter_context(postgres_server(args, tmp))
            run.info["postgres"] = {"local_server": local_pg}
            dsn = stack.enter_context(fresh_database(server_dsn))
            bench_kafka_reads(run, wrk, loaded, dsn)
    run.info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return run


def report(run: Run, total_s: float) -> None:
    args = run.args
    info = run.info
    print()
    print(
        f"HTTP API bench: ingest {args.ingest_events:,} events in POSTs of {BATCH} over "
        f"{args.ingest_clients} connection(s); reads and freshness over {args.events:,} demo "
        f"events ({len(run.json.get('reads', {}))} read setups); code {info['code']}"
    )
    if "documents" in info:
        print(f"documents: {info['documents']}")
    kafka = info.get("kafka", {"bootstrap": "(not used)", "local_broker": False})
    print(
        f"kafka: {kafka['bootstrap']}"
        + (" (local broker started for this run)" if kafka["local_broker"] else "")
        + (
            "; postgres: local cluster started for this run (fsync off)"
            if info.get("postgres", {}).get("local_server")
            else ("; postgres: --postgres-dsn, fresh database" if "postgres" in info else "")
        )
    )
    print(
        f"reads: wrk -t{args.wrk_threads} -c{','.join(map(str, args.connections))} "
        f"-d{args.duration:g}s "
        f"(after a {args.wrk_warmup:g}s warm-up), first page (limit 50) of a random contact "
        f"per request, key of role admin; uvicorn workers {args.workers}"
    )
    print()
    rows = [
        (
            r.figure,
            r.value,
            r.goal,
            "" if r.met is None else ("met" if r.met else "NOT met"),
            f"{r.load:.2f}",
        )
        for r in run.rows
    ]
    print(_table(("figure", "value", "goal", "result", "load"), rows, left=5))
    if args.events != GOAL_SCALE and run.json.get("reads"):
        print(
            f"\nthe read goals are stated for {GOAL_SCALE:,} events; this run has {args.events:,}"
        )
    print(
        "\nload = 1-min load average when the figure finished; the machine has "
        f"{os.cpu_count()} CPUs, shared by the services, the load generator, the broker, "
        "PostgreSQL and anything else running."
    )
    print(
        f"wall {total_s:.0f}s; load average {info['load_average_start'][0]} at start, "
        f"{info.get('load_average_end', [math.nan])[0]} at end"
    )
    summary = {
        "bench": "http",
        "events": args.events,
        "ingest_events": args.ingest_events,
        **info,
        **run.json,
        "goals": {r.key: r.met for r in run.rows if r.met is not None},
        "wall_seconds": round(total_s, 1),
    }
    print(orjson.dumps(summary).decode())


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.http", description=__doc__)
    p.add_argument("--events", type=int, default=1_000_000, help="demo events behind the reads")
    p.add_argument(
        "--ingest-events", type=int, default=100_000, help="events POSTed per ingest figure"
    )
    p.add_argument(
        "--ingest-clients", type=int, default=4, help="concurrent connections POSTing batches"
    )
    p.add_argument(
        "--embedded-role",
        choices=("all", "ingest"),
        default="all",
        help="role of the embedded server measured for ingest (default all: the worker runs "
        "beside it, as with a plain `istore serve`)",
    )
    p.add_argument("--only", choices=("embedded", "kafka"), help="one backend only")
    p.add_argument(
        "--data",
        type=Path,
        help="keep the generated events and the loaded embedded store here between runs",
    )
    p.add_argument("--seed", type=int, default=1)
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
    p.add_argument(
        "--broker-warmup", type=int, default=30_000, help="records sent to warm the broker"
    )
    p.add_argument("--workers", type=int, default=2, help="uvicorn workers of the read services")
    p.add_argument(
        "--ingest-workers",
        type=int,
        default=2,
        help="uvicorn workers of the Kafka ingest service (`istore serve --role ingest --workers`)",
    )
    p.add_argument("--duration", type=float, default=20.0, help="seconds of wrk per read figure")
    p.add_argument("--wrk-warmup", type=float, default=3.0, help="seconds of wrk before it")
    p.add_argument(
        "--connections",
        type=_counts,
        default=[4, 8],
        help="wrk connections, comma-separated: one read figure each (default 4,8: a load "
        "near the goal's rate, and saturation, where queueing sets the tail)",
    )
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk threads")
    p.add_argument("--freshness", type=int, default=200, help="events timed for freshness")
    p.add_argument(
        "--freshness-mode",
        choices=("poll", "token"),
        default="poll",
        help="poll: read the timeline until the event is there; token: one read passing the "
        "consistency token (the server waits)",
    )
    p.add_argument("--poll-ms", type=float, default=5.0, help="pause between polls")
    p.add_argument("--freshness-gap-ms", type=float, default=50.0, help="mean pause between events")
    p.add_argument("--no-ingest", action="store_true", help="skip the ingest figures")
    p.add_argument("--no-reads", action="store_true", help="skip the wrk figures")
    args = p.parse_args(argv)
    if args.events < 1 or args.ingest_events < BATCH or args.ingest_clients < 1:
        p.error(f"--events must be >= 1, --ingest-events >= {BATCH}, --ingest-clients >= 1")
    if min(args.connections) < 1:
        p.error("--connections must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="istore-bench-http-") as tmp:
        run = measure(args, Path(tmp))
    report(run, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
