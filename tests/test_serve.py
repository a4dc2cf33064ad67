"""`istore serve` as a user runs it, in real processes over real sockets: the zero-setup store
on the embedded log (the API and the projection worker in one process, with demo data and a
first admin key), and the production split (ingest, worker, read) on Kafka and PostgreSQL."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from interaction_store.settings import Settings
from tests.api_support import KEYS, access_toml, auth
from tests.factories import doc

ROOT = Path(__file__).resolve().parent.parent
KEY = re.compile(r"^\s+(istore_[A-Za-z0-9_-]+)\s*$", re.M)
STARTUP = 90.0
"""Bound on a process becoming ready (the demo data is published and projected first)."""
STOP = 30.0
"""Bound on a SIGTERM'd process exiting."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Served:
    """One `istore serve` process, its stderr in a file."""

    process: subprocess.Popen[bytes]
    stderr: Path
    base: str

    def text(self) -> str:
        return self.stderr.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, *helpers: Served) -> None:
        """Poll /readyz until it answers 200; fail with the output if this process (or one of
        the ``helpers`` it needs) exits, or the deadline passes."""
        deadline = time.monotonic() + STARTUP
        last = "no answer"
        while time.monotonic() < deadline:
            for served in (self, *helpers):
                if served.process.poll() is not None:
                    pytest.fail(f"exited {served.process.returncode}:\n{served.text()}")
            try:
                answer = httpx.get(self.base + "/readyz", timeout=5)
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code} {answer.text}"
            except httpx.TransportError as exc:
                last = repr(exc)
            time.sleep(0.2)
        pytest.fail(f"not ready after {STARTUP} s ({last}):\n{self.text()}")

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STOP)


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[list[Served]]:
    """Starts `istore serve` processes; whatever is still running at the end is killed."""
    started: list[Served] = []
    yield started
    for served in started:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait(timeout=STOP)


def start(
    started: list[Served], folder: Path, env: dict[str, str], name: str, *args: str
) -> Served:
    port = free_port()
    stderr = folder / f"{name}.stderr"
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "interaction_store.cli", "serve", "--port", str(port), *args],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    served = Served(process, stderr, f"http://127.0.0.1:{port}")
    started.append(served)
    return served


def clean_env(**istore: str) -> dict[str, str]:
    """This environment without any ISTORE_* / KAFKA_* setting, plus ``istore``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k == "ISTORE_MASTER_KEY" or not k.startswith(("ISTORE_", "KAFKA_"))
    }
    env["PYTHONPATH"] = str(ROOT / "src")
    env.update(istore)
    return env


def now_doc(type_: str, contact: str, **kwargs: Any) -> dict[str, Any]:
    """An event of a minute ago (inside every default timeline window)."""
    return doc(type_, contact=contact, at=datetime.now(UTC) - timedelta(minutes=1), **kwargs)


def entry_ids(answer: httpx.Response) -> list[str]:
    """The event ids a timeline answer lists."""
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return [str(e.get("event_id")) for e in body["entries"]]


def test_serve_runs_the_whole_store_in_one_process(tmp_path: Path, serving: list[Served]) -> None:
    data = tmp_path / "data"
    env = clean_env(ISTORE_DATA_DIR=str(data))
    served = start(serving, tmp_path, env, "all", "--demo", "20")
    served.wait_ready()
    out = served.text()
    (key,) = KEY.findall(out)  # the one admin key, shown once
    assert f"created {data / 'access.toml'}" in out
    assert key not in (data / "access.toml").read_text(encoding="utf-8"), "stored in clear"
    assert f"at {served.base}\n" in out and f"{served.base}/docs" in out
    assert ", rejected 0 " in out, out
    contact = re.search(r"/v1/contacts/([0-9a-f-]{36})/timeline", out)
    assert contact, out
    headers = {"Authorization": f"Bearer {key}"}

    # The docs and the OpenAPI document are served.
    assert httpx.get(served.base + "/docs", timeout=10).status_code == 200
    assert "/v1/events" in httpx.get(served.base + "/openapi.json", timeout=10).json()["paths"]

    # A new event POSTed is in the contact's timeline, read with the consistency token.
    event = now_doc("email.sent", contact.group(1))
    posted = httpx.post(served.base + "/v1/events", json=[event], headers=headers, timeout=30)
    assert posted.status_code == 200, posted.text
    body = posted.json()
    assert body["accepted"] == 1, body
    token = body["consistency_token"]
    assert token and posted.headers["X-Consistency-Token"] == token
    timeline = httpx.get(
        f"{served.base}/v1/contacts/{contact.group(1)}/timeline",
        params={"consistency": token},
        headers=headers,
        timeout=30,
    )
    assert event["event_id"] in entry_ids(timeline)
    assert httpx.get(served.base + "/v1/positions", timeout=10).status_code == 401

    # A key created while the server runs is taken up without a restart, with its role.
    created = subprocess.run(
        [sys.executable, "-m", "interaction_store.cli", "keys", "create", "crm", "--role", "sales"],
        env=env,
        capture_output=True,
        check=True,
    )
    crm = {"Authorization": f"Bearer {created.stdout.decode().strip()}"}
    deadline = time.monotonic() + STARTUP
    while (answer := httpx.get(served.base + "/v1/positions", headers=crm)).status_code == 401:
        assert time.monotonic() < deadline, f"the new key is still unknown:\n{served.text()}"
        time.sleep(0.2)
    assert answer.status_code == 200, answer.text
    refused = httpx.post(served.base + "/v1/events", json=[event], headers=crm, timeout=30)
    assert refused.status_code == 403, refused.text

    assert served.terminate() == 0, served.text()
    assert "stopping the projection worker after its batch" in served.text()
    # ... and it did: its summary, not a kill.
    assert re.search(r"applied \d+ events in \d+ batches", served.text()), served.text()
    assert "did not stop" not in served.text()

    # A second start keeps the access file and its key, and reports the demo as duplicates.
    again = start(serving, tmp_path, env, "again", "--demo", "20")
    again.wait_ready()
    out = again.text()
    assert KEY.findall(out) == [], "a key is shown only when it is created"
    assert "access.toml has 2 key(s)" in out
    assert re.search(r"accepted 0, duplicate [1-9]\d*, rejected 0", out), out
    still = httpx.get(
        f"{again.base}/v1/contacts/{contact.group(1)}/timeline", headers=headers, timeout=30
    )
    assert entry_ids(still).count(event["event_id"]) == 1
    assert again.terminate() == 0, again.text()


def test_serve_roles_split_ingest_worker_and_read_on_kafka_and_postgres(
    kafka_settings: Settings, postgres_admin: str, tmp_path: Path, serving: list[Served]
) -> None:
    from tests.postgres_server import fresh_database

    access = tmp_path / "access.toml"
    access.write_text(access_toml(), encoding="utf-8")
    assert kafka_settings.kafka_bootstrap_servers is not None
    with fresh_database(postgres_admin) as dsn:
        env = clean_env(
            ISTORE_BACKEND="kafka",
            ISTORE_KAFKA_BOOTSTRAP_SERVERS=kafka_settings.kafka_bootstrap_servers,
            ISTORE_TOPIC_PREFIX=kafka_settings.topic_prefix,
            ISTORE_POSTGRES_DSN=dsn,
            ISTORE_DATA_DIR=str(kafka_settings.data_dir),
            ISTORE_ACCESS_FILE=str(access),
            ISTORE_CONSISTENCY_TIMEOUT="45",
        )
        # Ingest and read in two server processes each (settings reach them through the
        # environment, the command line's included).
        ingest = start(serving, tmp_path, env, "ingest", "--role", "ingest", "--workers", "2")
        group = f"serve-test-{uuid.uuid4().hex[:8]}"
        worker = start(serving, tmp_path, env, "worker", "--role", "worker", "--group", group)
        read = start(
            serving,
            tmp_path,
            env,
            "read",
            "--role",
            "read",
            "--workers",
            "2",
            "--no-access-log",
        )
        ingest.wait_ready()
        read.wait_ready(worker)  # ready once the worker has registered the live views
        for served in (ingest, read):
            assert f"access.toml has {len(KEYS)} key(s)" in served.text()

        contact = str(uuid.uuid4())
        events = [now_doc("contact.created", contact), now_doc("email.sent", contact)]
        posted = httpx.post(
            ingest.base + "/v1/events", json=events, headers=auth("publisher"), timeout=30
        )
        assert posted.status_code == 200, posted.text
        assert posted.json()["accepted"] == 2, posted.text
        token = posted.json()["consistency_token"]
        # The first events after start wait for the worker to join its consumer group and
        # be given the partitions (seconds on a busy machine): a longer wait than the default.
        timeline = httpx.get(
            f"{read.base}/v1/contacts/{contact}/timeline",
            params={"wait": 45},
            headers={**auth("admin"), "X-Consistency-Token": token},
            timeout=60,
        )
        assert events[1]["event_id"] in entry_ids(timeline)

        # Each API process serves its own routes only.
        missing = httpx.get(
            f"{ingest.base}/v1/contacts/{contact}/timeline", headers=auth("admin"), timeout=10
        )
        assert missing.status_code == 404, missing.text
        assert httpx.get(f"{ingest.base}/v1/positions", timeout=10).status_code == 404
        refused = httpx.post(read.base + "/v1/events", json=events, headers=auth("admin"))
        assert refused.status_code == 404, refused.text

        for served in (ingest, worker, read):
            assert served.terminate() == 0, served.text()
        assert f"worker in consumer group {group}" in worker.text()
        assert "applied " in worker.text()


def test_serve_refuses_several_processes_for_the_projection_worker(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from interaction_store.cli import main

    for role in ("all", "worker"):
        result = CliRunner().invoke(
            main,
            ["--data-dir", str(tmp_path), "serve", "--role", role, "--workers", "2"],
        )
        assert result.exit_code == 2, result.output
        assert "--workers 2 needs --role ingest or read" in result.output


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_serve_stops_with_an_error_when_its_projection_worker_dies(
    tmp_path: Path, serving: list[Served]
) -> None:
    env = clean_env(ISTORE_DATA_DIR=str(tmp_path / "data"))
    served = start(serving, tmp_path, env, "serve")
    served.wait_ready()
    workers = [
        pid
        for pid in children_of(served.process.pid)
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert workers, "the projection worker runs in a child process"
    os.kill(workers[0], signal.SIGKILL)
    assert served.process.wait(timeout=STOP) == 1
    assert "the projection worker failed: it exited with code -9" in served.text()
