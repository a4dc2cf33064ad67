"""Processes that `istore` starts end with it: SIGKILL of `istore serve` or `istore publish`
(which no handler can catch) leaves no projection worker, validation process, multiprocessing
resource tracker or uvicorn worker behind. Checked with /proc, on real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import orjson
import pytest

from tests.factories import doc

STARTUP = 90.0
GONE = 10.0
"""Bound on the children of a killed process ending (they get a few seconds' grace)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that may never come has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children(pid: int) -> dict[int, str]:
    """Child pids of ``pid`` and their command lines, from /proc."""
    out: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and _alive(int(entry)):
            out[int(entry)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return out


def _wait_for_children(proc: subprocess.Popen[bytes], want: int, log: Path) -> dict[int, str]:
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode}:\n{log.read_text(errors='replace')}")
        found = _children(proc.pid)
        if len(found) >= want:
            return found
        time.sleep(0.2)
    pytest.fail(f"{want} children not started: {_children(proc.pid)}\n{log.read_text()}")


def _kill_and_check(proc: subprocess.Popen[bytes], children: dict[int, str]) -> None:
    """SIGKILL the parent; every child must be gone within GONE seconds."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + GONE
    left = dict(children)
    while left and time.monotonic() < deadline:
        left = {pid: cmd for pid, cmd in left.items() if _alive(pid)}
        time.sleep(0.1)
    for pid in left:  # do not leave them running for the next test
        os.kill(pid, signal.SIGKILL)
    assert not left, f"still running {GONE:g} s after SIGKILL of their parent: {left}"


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k == "ISTORE_MASTER_KEY" or not k.startswith("ISTORE_")
    }
    return env | {"ISTORE_BACKEND": "embedded", "ISTORE_DATA_DIR": str(tmp_path / "data")} | extra


def _start(
    argv: list[str], env: dict[str, str], log: Path, started: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "interaction_store.cli", *argv],
            env=env,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    started.append(proc)
    return proc


def _ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(base + "/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"not ready:\n{log.read_text(errors='replace')}")


def test_serve_killed_leaves_no_worker(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port = _free_port()
    log = tmp_path / "serve.log"
    proc = _start(["serve", "--port", str(port)], _env(tmp_path), log, processes)
    _ready(f"http://127.0.0.1:{port}", proc, log)
    # The projection worker and multiprocessing's resource tracker.
    children = _wait_for_children(proc, 2, log)
    assert any("spawn_main" in cmd for cmd in children.values()), children
    _kill_and_check(proc, children)


def test_serve_workers_killed_leave_no_server_process(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port = _free_port()
    log = tmp_path / "serve.log"
    argv = ["serve", "--role", "ingest", "--workers", "2", "--port", str(port)]
    proc = _start(argv, _env(tmp_path), log, processes)
    _ready(f"http://127.0.0.1:{port}", proc, log)
    children = _wait_for_children(proc, 2, log)
    _kill_and_check(proc, children)


def test_publish_killed_leaves_no_validation_process(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """Two batches in, the input kept open: publish has started its validation process (and
    the resource tracker) and waits for more lines when it is killed."""
    log = tmp_path / "publish.log"
    env = _env(tmp_path, ISTORE_PUBLISH_BATCH_SIZE="5")
    proc = _start(["publish", "-"], env, log, processes)
    assert proc.stdin is not None
    proc.stdin.write(b"".join(orjson.dumps(doc()) + b"\n" for _ in range(12)))
    proc.stdin.flush()
    children = _wait_for_children(proc, 2, log)
    _kill_and_check(proc, children)
    proc.stdin.close()


def test_a_child_whose_parent_died_before_it_watched_ends() -> None:
    """The parent may die between the child's start and its call: the watch sees that its
    parent is no longer the one it was given, and stops it as the parent's death would."""
    code = (
        "import time; from interaction_store.lifeline import die_with_parent; "
        "die_with_parent(-1, grace=1.0, every=0.05); time.sleep(30)"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], timeout=20, check=False)
    assert done.returncode == -signal.SIGTERM
    assert time.monotonic() - started < 15
