"""Profile reads and contact lookups: p50/p99 latency in the library (``ReadAPI.profile``,
``ReadAPI.find_contacts``) and over HTTP (``GET /v1/contacts/{id}``, ``GET /v1/contacts?email=``
on uvicorn, one keep-alive connection), on views built from the demo data set.

Run: ``.venv/bin/python -m bench.profiles [--events 1000000] [--reads 2000]
[--postgres [--postgres-dsn DSN]]``. ``--postgres`` puts the views in PostgreSQL (a local
server started in a temporary folder unless a DSN is given); SQLite by default. The views are
filled by applying the events straight to the live views (no log: it is the reads that are
measured). Prints a table against the issue's goals (5 ms in the library, 20 ms over HTTP),
then one line of JSON. A measurement, not a test: the exit status is 0 whether or not a goal
is met.
"""

from __future__ import annotations

import argparse
import base64
import gc
import http.client
import math
import random
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import uvicorn
from pydantic import SecretStr

from bench.projections import fresh_database, postgres_server
from interaction_store import demo
from interaction_store.api import create_app
from interaction_store.api.access import DEFAULT_ROLES, AccessConfig, hash_key
from interaction_store.api.services import Services
from interaction_store.log.base import Position
from interaction_store.projection.registry import ViewRegistry, build
from interaction_store.read import ReadAPI
from interaction_store.settings import Settings
from interaction_store.views import open_store

LIBRARY_GOAL_MS = 5.0
HTTP_GOAL_MS = 20.0
KEY = "istore_bench_key_not_secret_0123456789"
END = datetime(2026, 10, 1, tzinfo=UTC)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def fill(settings: Settings, events: int) -> tuple[list[str], list[str], list[str], int]:
    """Apply about ``events`` demo events to the live views; the contact ids, e-mails and
    visitor ids seen, and how many events were applied."""
    contacts = max(50, round(events * 1000 / demo.estimate_events(1000)))
    contact_ids: set[str] = set()
    emails: list[str] = []
    visitors: list[str] = []
    applied = 0
    with open_store(settings) as store:
        views = [build(i, settings) for i in ViewRegistry(store).ensure_defaults(settings)]
        store.ensure([s for v in views for s in v.schema(store.dialect)])
        batch: list[Any] = []

        def flush() -> None:
            with store.transaction() as c:
                for view in views:
                    view.apply_records(c, [r for r in batch if view.wants(r[1])])
            batch.clear()

        for n, event in enumerate(demo.generate(contacts, seed=1, end=END)):
            s, p = event.subject, event.payload
            if s.contact_id is not None:
                contact_ids.add(str(s.contact_id))
            if event.type == "contact.created" and getattr(p, "email", None):
                emails.append(str(p.email))
            if event.type == "identity.linked":
                visitors.append(str(p.anonymous_id))
            batch.append((Position("bench", 0, n), event))
            applied += 1
            if len(batch) >= 5000:
                flush()
        if batch:
            flush()
    return sorted(contact_ids), emails, visitors, applied


def known(settings: Settings) -> tuple[list[str], list[str], list[str], int]:
    """What :func:`fill` returns, read back from views it filled before."""
    with open_store(settings) as store, store.reading() as c:
        c.execute("SELECT contact_id, email FROM profiles__contacts ORDER BY contact_id")
        rows = c.fetchall()
        c.execute("SELECT anonymous_id FROM profiles__identities ORDER BY anonymous_id")
        visitors = [str(r[0]) for r in c.fetchall()]
        c.execute("SELECT COUNT(DISTINCT event_id) FROM subjects__events")
        count = c.fetchone()
    emails = [str(r[1]) for r in rows if r[1]]
    return [str(r[0]) for r in rows], emails, visitors, int(count[0]) if count else 0


def timed(calls: list[Callable[[], Any]]) -> list[float]:
    out = []
    for call in calls:
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def serve(settings: Settings) -> tuple[uvicorn.Server, int]:
    access = AccessConfig.from_toml(
        DEFAULT_ROLES + f'\n[keys.bench]\nrole = "admin"\nsha256 = "{hash_key(KEY)}"\n'
    )
    app = create_app(settings, Services(settings, access), role="read")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="data folder (SQLite views): filled the first time, read again by later runs",
    )
    parser.add_argument("--postgres", action="store_true", help="views in PostgreSQL")
    parser.add_argument("--postgres-dsn", default=None)
    args = parser.parse_args()
    with ExitStack() as stack:
        dsn = None
        if args.postgres or args.postgres_dsn:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pg-")))
            server, _ = stack.enter_context(postgres_server(args, tmp))
            dsn = stack.enter_context(fresh_database(server))
        measure(args, dsn)


def measure(args: argparse.Namespace, dsn: str | None) -> None:
    folder = args.data or Path(tempfile.mkdtemp(prefix="bench-profiles-"))
    again = dsn is None and (folder / "views.sqlite").exists()
    key = SecretStr(base64.b64encode(bytes(range(32))).decode())
    settings = Settings(backend="embedded", data_dir=folder, master_key=key)
    if dsn is not None:
        settings = settings.model_copy(update={"postgres_dsn": SecretStr(dsn)})
    started = time.perf_counter()
    if again:
        contacts, emails, visitors, applied = known(settings)
    else:
        contacts, emails, visitors, applied = fill(settings, args.events)
    load_s = time.perf_counter() - started
    if dsn is not None:
        # As autovacuum would soon after a bulk load: the planner needs the tables' statistics.
        with open_store(settings) as store, store.transaction() as c:
            c.execute("ANALYZE")
    gc.collect()
    gc.freeze()  # the bench's own lists are not a reader's: collections cost what they would
    rng = random.Random(7)
    picks = [rng.choice(contacts) for _ in range(args.reads)]
    mails = [rng.choice(emails) for _ in range(args.reads)]
    figures: dict[str, list[float]] = {}
    with ReadAPI(settings) as api:
        for c in picks[:200]:  # warm the caches (views, the database's pages)
            api.profile("contact", c)
        figures["library profile"] = timed(
            [lambda c=c: api.profile("contact", c) for c in picks]  # type: ignore[misc]
        )
        figures["library lookup email"] = timed(
            [lambda m=m: api.find_contacts("email", m) for m in mails]  # type: ignore[misc]
        )
        if visitors:
            anon = [rng.choice(visitors) for _ in range(args.reads)]
            figures["library lookup anonymous_id"] = timed(
                [lambda a=a: api.find_contacts("anonymous_id", a) for a in anon]  # type: ignore[misc]
            )
    server, port = serve(settings)
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Authorization": f"Bearer {KEY}"}

    def get(path: str) -> None:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        r.read()
        assert r.status == 200, (path, r.status)

    get(f"/v1/contacts/{picks[0]}")
    figures["http profile"] = timed([lambda c=c: get(f"/v1/contacts/{c}") for c in picks])  # type: ignore[misc]
    figures["http lookup email"] = timed(
        [lambda m=m: get(f"/v1/contacts?email={quote(m)}") for m in mails]  # type: ignore[misc]
    )
    server.should_exit = True
    rows = []
    summary: dict[str, Any] = {"events": applied, "load_s": round(load_s, 1)}
    for name, values in figures.items():
        goal = HTTP_GOAL_MS if name.startswith("http") else LIBRARY_GOAL_MS
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        rows.append((name, f"{p50:.2f}", f"{p99:.2f}", f"{goal:g}", "yes" if p99 <= goal else "no"))
        summary[name.replace(" ", "_") + "_p99_ms"] = round(p99, 3)
    store = "PostgreSQL" if dsn else "SQLite"
    how = "views filled before" if again else f"applied in {load_s:.0f} s"
    print(f"{applied} events ({how}); views in {store}; {args.reads} reads each")
    print(f"{'figure':30} {'p50 ms':>8} {'p99 ms':>8} {'goal':>6} {'met':>4}")
    for row in rows:
        print(f"{row[0]:30} {row[1]:>8} {row[2]:>8} {row[3]:>6} {row[4]:>4}")
    print(orjson.dumps(summary).decode())


if __name__ == "__main__":
    main()
