"""``istore serve``: the HTTP API on uvicorn and the projection worker, with one command (the
embedded zero-setup store: the worker in a child process) or one role per process (ingest,
worker, read) on Kafka and PostgreSQL."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime
from multiprocessing import get_context
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click
import orjson
from pydantic import SecretStr
from tqdm import tqdm

from interaction_store.api.access import AccessConfig, AccessError, add_key, known_categories
from interaction_store.api.services import Services
from interaction_store.cli import main, settings_of
from interaction_store.cli.views import ERRORS, ProjectionWorker, summary
from interaction_store.codec import encode
from interaction_store.events import InteractionEvent
from interaction_store.lifeline import die_with_parent
from interaction_store.privacy.keystore import open_key_store
from interaction_store.privacy.sealing import sealer_of
from interaction_store.settings import Settings, private_file

if TYPE_CHECKING:
    from interaction_store.api.app import Role as AppRole

ROLES = ("all", "ingest", "worker", "read")
_APP_ROLES: dict[str, AppRole] = {"all": "all", "ingest": "ingest", "read": "read"}
DEFAULT_GROUP = "istore-views"
DEMO_MARKER = "demo.json"
"""Remembers the day the first ``--demo`` data ended, so a later start publishes the same
events again (reported as duplicates) rather than a second, shifted year."""


@main.command()
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="all",
    show_default=True,
    help="all: the API and the projection worker in one process (the embedded default); "
    "ingest / read: that half of the API; worker: the projection worker only",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8000,
    show_default=True,
    envvar="ISTORE_HTTP_PORT",
    show_envvar=True,
    help="Port to listen on",
)
@click.option(
    "--demo",
    "demo_contacts",
    type=click.IntRange(1),
    metavar="CONTACTS",
    help="First publish a year of demo data for this many contacts (again on a later start: "
    "reported as duplicates, not stored twice)",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the demo data")
@click.option(
    "--group",
    help=f"Kafka consumer group of the worker (replicas share partitions) [default on Kafka: "
    f"{DEFAULT_GROUP}]",
)
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=2000, show_default=True)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
    help="Of the HTTP server (requests are logged at info)",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="HTTP server processes (--role ingest or read): one core each",
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="Log each request (at info)",
)
@click.pass_context
def serve(
    ctx: click.Context,
    role: str,
    host: str,
    port: int,
    demo_contacts: int | None,
    seed: int,
    group: str | None,
    batch_size: int,
    log_level: str,
    workers: int,
    access_log: bool,
) -> None:
    """Run the HTTP API (docs at /docs) and the projection worker.

    With --role all (the default) one process serves ingest and reads and keeps the views up
    to date, so an event POSTed is readable moments later. SIGTERM or Ctrl-C stops the server;
    the worker finishes its batch.
    """
    settings = settings_of(ctx)
    if demo_contacts is not None and role not in ("all", "ingest"):
        raise click.UsageError("--demo publishes events: use it with --role all or ingest")
    if group is not None and settings.backend != "kafka":
        raise click.UsageError("--group needs the Kafka log (--backend kafka)")
    if workers > 1 and role not in ("ingest", "read"):
        raise click.UsageError(
            f"--workers {workers} needs --role ingest or read: --role {role} runs the "
            "projection worker, which is one process (run more `--role worker` for more)"
        )
    try:
        # Every role seals or opens personal fields (ingest, the worker, the export): without
        # the master key, or with another than the key store's, the server does not start.
        open_key_store(settings).close()
        contact = publish_demo(settings, demo_contacts, seed) if demo_contacts else None
        if role == "worker":
            _work(settings, batch_size, group or _default_group(settings))
            return
        key = ensure_access(settings)
    except ERRORS as exc:
        raise click.ClickException(str(exc)) from exc
    if workers > 1:
        _announce(settings, role, host, port, key, contact)
        _serve_processes(settings, role, host, port, log_level, workers, access_log)
        return
    _serve(settings, role, host, port, log_level, batch_size, key, contact, access_log)


def _default_group(settings: Settings) -> str | None:
    return DEFAULT_GROUP if settings.backend == "kafka" else None


# --------------------------------------------------------------------------- access


def ensure_access(settings: Settings) -> str | None:
    """Create the access file with the default roles and one admin key when it is missing,
    and return that key (shown once, never stored); else say how many keys the file holds."""
    path = settings.access_path
    if path.parent == settings.data_dir:
        settings.private_data_dir()
    known = known_categories(settings)
    if path.exists():
        config = AccessConfig.load(path, known)
        click.echo(f"access: {path} has {len(config.keys)} key(s)", err=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    # Built aside, then linked into place: two services starting at once (ingest and read on
    # one volume) cannot both create the file and each announce a key the other overwrote.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".access-") as folder:
        draft = Path(folder) / path.name
        key = add_key(draft, "admin", "admin", known)
        try:
            os.link(draft, path)
        except FileExistsError:
            config = AccessConfig.load(path, known)
            click.echo(f"access: {path} has {len(config.keys)} key(s)", err=True)
            return None
    click.echo(
        f"access: created {path} with the default roles and one admin key, shown only now:\n"
        f"\n    {key}\n\n"
        "  More keys: istore keys create NAME --role admin|marketing|sales|service|publisher",
        err=True,
    )
    return key


# --------------------------------------------------------------------------- demo data


def publish_demo(settings: Settings, contacts: int, seed: int) -> str | None:
    """Publish the demo year as `istore demo-data | istore publish -` does; return the id of
    a contact of it (for the examples printed on start)."""
    from interaction_store import demo
    from interaction_store.ingest import Ingest
    from interaction_store.log import open_log

    end = _demo_end(settings)
    first: list[str] = []

    def lines(events: Iterator[InteractionEvent]) -> Iterator[bytes]:
        for event in events:
            if not first and event.subject.contact_id is not None:
                first.append(str(event.subject.contact_id))
            yield encode(event)

    with (
        open_log(settings) as log,
        tqdm(
            total=demo.estimate_events(contacts),
            unit=" events",
            desc=f"demo data ({contacts} contacts, seed {seed})",
            file=sys.stderr,
            disable=None,
        ) as bar,
    ):
        sealer = sealer_of(settings)
        try:
            ingest = Ingest(log, settings.publish_batch_size, sealer=sealer)
            report = ingest.publish_lines(
                lines(demo.generate(contacts, seed, end)), "demo", bar.update
            )
        finally:
            sealer.keys.close()
    click.echo(f"demo data up to {end:%Y-%m-%d}: {report.summary()}", err=True)
    return first[0] if first else None


def _demo_end(settings: Settings) -> datetime:
    """The end of the demo year: today on the first start, the same day on later ones."""
    marker = settings.data_dir / DEMO_MARKER
    try:
        saved: Any = orjson.loads(marker.read_bytes())
        return datetime.fromisoformat(str(saved["end"])).replace(tzinfo=UTC)
    except (FileNotFoundError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        settings.private_data_dir()
        private_file(marker).write_bytes(orjson.dumps({"end": end.date().isoformat()}))
        return end


# --------------------------------------------------------------------------- running


def _work(settings: Settings, batch_size: int, group: str | None) -> None:
    """--role worker: what `istore run` does (in a consumer group on Kafka)."""
    worker = ProjectionWorker(settings, batch_size)

    def stop(signum: int, frame: FrameType | None) -> None:
        click.echo("stopping after this batch", err=True)
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if group:
        click.echo(f"worker in consumer group {group}", err=True)
    stats = worker.run(group=group)
    click.echo(summary(stats), err=True)


def _serve(
    settings: Settings,
    role: str,
    host: str,
    port: int,
    log_level: str,
    batch_size: int,
    key: str | None,
    contact: str | None,
    access_log: bool = True,
) -> None:
    """Run uvicorn in this (main) thread and, for --role all, the worker in another.

    1. Our own SIGTERM/SIGINT handlers go in first: uvicorn swaps in its own while it runs,
       and re-raises the signal into ours once it has shut down, so the process exits 0.
    2. The worker thread starts, then uvicorn serves until a signal (or the worker failing).
    3. Then the worker is told to stop; it finishes its batch and the thread is joined.
    """
    import uvicorn

    from interaction_store.api import create_app

    app = create_app(settings, role=_APP_ROLES[role])
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            access_log=access_log,
            timeout_graceful_shutdown=10,
        )
    )
    child: BaseProcess | None = None
    watcher: threading.Thread | None = None
    failures: list[str] = []

    def signal_worker(signum: int) -> None:
        # Only the watcher thread waits for (and so reaps) the child: while it runs, the pid
        # is the child's. (Two threads waiting on one process race to reap it.)
        if child is not None and watcher is not None and watcher.is_alive():
            with suppress(ProcessLookupError):
                os.kill(child.pid or 0, signum)

    def stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True
        signal_worker(signal.SIGTERM)  # it finishes its batch

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if role == "all":
        # The worker runs in a process of its own: projecting is CPU work that would
        # otherwise hold this process's interpreter lock while requests wait.
        # Started from this (main) thread, which outlives it: the child's parent-death
        # signal is tied to the thread that started it.
        child = get_context("spawn").Process(
            target=_work_in_child,
            args=(settings, batch_size, os.getpid()),
            name="projection-worker",
        )
        child.start()
        running = child

        def watch() -> None:
            running.join()
            if not server.should_exit:  # it ended on its own: a failure
                failures.append(f"it exited with code {running.exitcode}")
                server.should_exit = True

        watcher = threading.Thread(target=watch, name="worker-watch", daemon=True)
        watcher.start()
    watching = threading.Event()
    threading.Thread(
        target=_watch_access, args=(app.state.services, watching), name="access", daemon=True
    ).start()
    _announce(settings, role, host, port, key, contact)
    try:
        server.run()
    finally:
        watching.set()
        if watcher is not None:
            click.echo("stopping the projection worker after its batch", err=True)
            signal_worker(signal.SIGTERM)
            watcher.join(WORKER_STOP)
            if watcher.is_alive():
                click.echo(f"the worker did not stop in {WORKER_STOP:g} s: killed", err=True)
                signal_worker(signal.SIGKILL)
                watcher.join()
        app.state.services.close()
    if failures:
        raise click.ClickException(f"the projection worker failed: {failures[0]}")
    if not server.started:
        sys.exit(1)  # uvicorn has said why (the port is taken, say)


WORKER_STOP = 60.0
"""Seconds the projection worker has to finish its batch after the server stopped."""


def _work_in_child(settings: Settings, batch_size: int, parent: int) -> None:
    """The projection worker of `serve --role all`, in its own process. It stops (after its
    batch) when the server does, even a server killed with SIGKILL: a restart would otherwise
    run a second worker beside the orphan."""
    worker = ProjectionWorker(settings, batch_size)

    def stop(signum: int, frame: FrameType | None) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    die_with_parent(parent)
    click.echo(summary(worker.run(group=None)), err=True)


SETTINGS_ENV = "ISTORE_SERVE_SETTINGS"
ROLE_ENV = "ISTORE_SERVE_ROLE"
PARENT_ENV = "ISTORE_SERVE_PARENT"


def _serve_processes(
    settings: Settings,
    role: str,
    host: str,
    port: int,
    log_level: str,
    workers: int,
    access_log: bool,
) -> None:
    """Several uvicorn processes on one port (uvicorn's supervisor restarts one that dies).
    Each builds its app with :func:`process_app` from the settings passed in the environment:
    the command line's options included, secrets too (the environment is the process's own)."""
    import uvicorn

    data = settings.model_dump(mode="json")
    for name, value in settings:
        if isinstance(value, SecretStr):
            data[name] = value.get_secret_value()
    os.environ[SETTINGS_ENV] = orjson.dumps(data).decode()
    os.environ[ROLE_ENV] = role
    os.environ[PARENT_ENV] = str(os.getpid())
    uvicorn.run(
        f"{__name__}:process_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=10,
    )


def process_app() -> Any:
    """The app of one of several server processes (see :func:`_serve_processes`). The
    process ends with uvicorn's supervisor (SIGTERM: a graceful shutdown), even one killed
    with SIGKILL, which would otherwise leave it serving the port alone."""
    from interaction_store.api import create_app

    die_with_parent(int(os.environ[PARENT_ENV]))
    settings = Settings.model_validate_json(os.environ[SETTINGS_ENV])
    app = create_app(settings, role=_APP_ROLES[os.environ[ROLE_ENV]])
    threading.Thread(
        target=_watch_access,
        args=(app.state.services, threading.Event()),
        name="access",
        daemon=True,
    ).start()
    return app


def _watch_access(services: Services, done: threading.Event, every: float = 1.0) -> None:
    """Read the access file again when it changes (`istore keys create|revoke` while the
    server runs); a file broken mid-edit leaves the keys as they were, and says why."""
    path = services.settings.access_path

    def stamp() -> tuple[int, int] | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    seen = stamp()
    while not done.wait(every):
        now = stamp()
        if now == seen or now is None:
            continue
        seen = now
        try:
            services.reload_access()
        except (AccessError, OSError) as exc:
            click.echo(f"access: keeping the keys as they were: {exc}", err=True)
        else:
            click.echo(f"access: {path} read again ({len(services.access.keys)} key(s))", err=True)


def _announce(
    settings: Settings, role: str, host: str, port: int, key: str | None, contact: str | None
) -> None:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base = f"http://{shown}:{port}" if ":" not in shown else f"http://[{shown}]:{port}"
    what = {
        "all": "ingest and read API, projection worker",
        "ingest": "ingest API",
        "read": "read API",
    }[role]
    click.echo(
        f"serving {what} ({settings.backend} log) at {base}\n"
        f"  API docs: {base}/docs   OpenAPI: {base}/openapi.json   health: {base}/readyz",
        err=True,
    )
    auth = f"Authorization: Bearer {key}" if key else "Authorization: Bearer $ISTORE_KEY"
    if role in ("all", "read"):
        who = contact or "CONTACT_ID"
        click.echo(f"  try: curl -H '{auth}' '{base}/v1/contacts/{who}/timeline?limit=5'", err=True)
    if role in ("all", "ingest"):
        event = {
            "event_id": str(uuid.uuid4()),
            "type": "web.page_viewed",
            "schema_version": 1,
            "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": "curl",
            "subject": {"contact_id": contact or "CONTACT_ID"},
            "payload": {"url": "https://example.com/pricing"},
        }
        body = orjson.dumps([event]).decode()
        click.echo(
            f"  publish: curl -H '{auth}' -H 'Content-Type: application/json' -d '{body}' "
            f"{base}/v1/events",
            err=True,
        )
