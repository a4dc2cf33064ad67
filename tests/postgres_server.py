"""Give tests a real PostgreSQL: ISTORE_TEST_POSTGRES_DSN, else Docker, else Debian's binaries."""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.docker_engine import docker_available

ENV_DSN = "ISTORE_TEST_POSTGRES_DSN"
POSTGRES_IMAGE = "postgres:16"
TEST_DATABASE = "istore_test"
INSTALL_HINT = "run `bash scripts/postgres.sh` as root, or `apt-get install postgresql`"
# Debian's package creates this system user; PostgreSQL refuses to run initdb/postgres as root.
SERVER_USER = "postgres"
_DEBIAN_ROOT = Path("/usr/lib/postgresql")
# Durability is worthless for a throwaway test cluster; turning it off makes writes cheap.
_SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "256MB",
}
_START_TIMEOUT_S = 60
_START_ATTEMPTS = 3


def _log(message: str) -> None:
    print(f"[postgres fixture] {message}", file=sys.stderr, flush=True)


def _is_url(dsn: str) -> bool:
    return dsn.startswith(("postgresql://", "postgres://"))


def redact(dsn: str) -> str:
    """The DSN without its password, for logs."""
    if _is_url(dsn):
        parts = urlsplit(dsn)
        userinfo, at, hostinfo = parts.netloc.rpartition("@")
        if at and ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))
        return dsn
    params = conninfo_to_dict(dsn)
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **params)


def with_dbname(dsn: str, dbname: str) -> str:
    """The same connection settings, pointed at another database (keeps URL or key=value form)."""
    if _is_url(dsn):
        return urlunsplit(urlsplit(dsn)._replace(path=f"/{dbname}"))
    return make_conninfo(dsn, dbname=dbname)


def _wait_until_answers(dsn: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=5) as conn:
                conn.execute("select 1").fetchone()
                return
        except psycopg.OperationalError as error:
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"PostgreSQL at {redact(dsn)} does not answer: {error}"
                ) from error
            time.sleep(0.1)


def _create_database(admin_dsn: str, name: str) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction block.
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _drop_database(admin_dsn: str, name: str) -> None:
    # FORCE ends sessions a test left open (pools, forgotten connections) instead of failing.
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextmanager
def fresh_database(admin_dsn: str) -> Iterator[str]:
    """Create a uniquely named database, yield its DSN, drop it afterwards (even on errors)."""
    name = f"{TEST_DATABASE}_{uuid.uuid4().hex[:12]}"
    _create_database(admin_dsn, name)
    try:
        yield with_dbname(admin_dsn, name)
    finally:
        _drop_database(admin_dsn, name)


@contextmanager
def _docker_postgres() -> Iterator[str]:
    from testcontainers.community.postgres import PostgresContainer

    settings = " ".join(
        f"-c {key}={value}" for key, value in _SERVER_SETTINGS.items() if key != "listen_addresses"
    )
    container = PostgresContainer(POSTGRES_IMAGE, dbname=TEST_DATABASE, driver=None)
    container.with_command(f"postgres {settings}")
    container.start()
    try:
        dsn: str = container.get_connection_url()
        _wait_until_answers(dsn, timeout=60.0)
        yield dsn
    finally:
        container.stop()


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.name)) or (-1,)


def find_postgres_bindir(
    debian_root: Path = _DEBIAN_ROOT, pg_config: str | None = "pg_config"
) -> Path:
    """Debian's newest /usr/lib/postgresql/<version>/bin, else ``pg_config --bindir``."""
    candidates = sorted(
        (path.parent for path in debian_root.glob("*/bin/initdb")),
        key=lambda bindir: _version_key(bindir.parent),
        reverse=True,
    )
    if not candidates and pg_config and (pg_config_path := shutil.which(pg_config)):
        try:
            output = subprocess.run(
                [pg_config_path, "--bindir"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            output = ""
        if output:
            candidates.append(Path(output))
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise RuntimeError(
        f"no PostgreSQL server binaries (initdb, pg_ctl) in {debian_root}/*/bin or from "
        f"`pg_config --bindir`, no {ENV_DSN} and no Docker: {INSTALL_HINT}"
    )


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    if runuser := shutil.which("runuser"):
        return [runuser, "-u", SERVER_USER, "--", *command]
    if setpriv := shutil.which("setpriv"):
        ids = [f"--reuid={SERVER_USER}", f"--regid={SERVER_USER}", "--init-groups"]
        return [setpriv, *ids, "--", *command]
    raise RuntimeError("running as root needs runuser or setpriv (util-linux) to drop to postgres")


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an unreaped orphan has stopped running)."""
    if Path("/proc/self/stat").exists():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return False
        # The state follows the parenthesised command name, which may itself hold spaces.
        return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
    try:  # no /proc (macOS): signal 0 only tells whether the pid exists
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _initdb(bindir: Path, data_dir: Path, cwd: Path, log_path: Path) -> None:
    # C.UTF-8 classifies non-ASCII letters (lower(), ILIKE) yet sorts by code point on every
    # machine; plain C is the fallback where glibc lacks it.
    locale = "C.UTF-8" if Path("/usr/lib/locale/C.utf8").exists() else "C"
    command = [
        str(bindir / "initdb"),
        "-D",
        str(data_dir),
        "-U",
        SERVER_USER,
        "--auth=trust",
        "--no-sync",
        "-E",
        "UTF8",
        f"--locale={locale}",
    ]
    with log_path.open("ab") as log:
        result = subprocess.run(
            _as_server_user(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            timeout=120,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed ({result.returncode}):\n{_log_tail(log_path)}")


def _start(bindir: Path, data_dir: Path, socket_dir: Path, cwd: Path, log_path: Path) -> int:
    """Start the cluster on a free port and return the port; retries when the port was taken."""
    settings = " ".join(f"-c {key}={value}" for key, value in _SERVER_SETTINGS.items())
    for attempt in range(1, _START_ATTEMPTS + 1):
        port = _free_port()
        # pg_ctl hands -o to /bin/sh, so the socket path is shell-quoted.
        options = f"-k {shlex.quote(str(socket_dir))} -p {port} {settings}"
        command = [str(bindir / "pg_ctl"), "start", "-D", str(data_dir), "-w"]
        command += ["-t", str(_START_TIMEOUT_S), "-o", options]
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        # No -l: the server inherits this file as stdout/stderr, so root can keep the log in
        # a folder the postgres user cannot reach (pytest's tmp folders are 0700).
        with log_path.open("ab") as log:
            result = subprocess.run(
                _as_server_user(command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                timeout=_START_TIMEOUT_S + 30,
                check=False,
            )
        if result.returncode == 0:
            return port
        with log_path.open("rb") as log:
            log.seek(log_offset)
            new_output = log.read().decode(errors="replace")
        if "Address already in use" not in new_output or attempt == _START_ATTEMPTS:
            raise RuntimeError(f"pg_ctl start failed ({result.returncode}):\n{new_output[-4000:]}")
        _log(f"port {port} was taken before the server bound it; trying another")
    raise AssertionError("unreachable")


def _stop(bindir: Path, data_dir: Path, cwd: Path, log_path: Path) -> None:
    """Stop the cluster for sure: fast, else immediate shutdown, else SIGKILL."""
    pid = _postmaster_pid(data_dir)
    if pid is None:
        return  # never started, or already stopped
    for mode in ("fast", "immediate"):
        command = [str(bindir / "pg_ctl"), "stop", "-D", str(data_dir), "-m", mode, "-w"]
        with log_path.open("ab") as log, suppress(subprocess.TimeoutExpired):
            subprocess.run(
                _as_server_user([*command, "-t", "30"]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                timeout=60,
                check=False,
            )
        if not _running(pid):
            return
    _log(f"server {pid} ignored pg_ctl stop; killing it")
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


@contextmanager
def local_postgres(tmp_home: Path, bindir: Path | None = None) -> Iterator[str]:
    """initdb and start a throwaway cluster from local binaries; yield its ``istore_test`` DSN.

    As root the server runs as the ``postgres`` user, and its data folder lives in a private
    folder under the system temp dir owned by that user (it cannot enter pytest's 0700 tmp
    folders); otherwise the cluster lives in ``tmp_home/data``. Logs always go to tmp_home.
    """
    bindir = bindir or find_postgres_bindir()
    tmp_home.mkdir(parents=True, exist_ok=True)
    as_root = os.geteuid() == 0
    if as_root:
        try:
            server_user = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise RuntimeError(
                f"running as root needs the `{SERVER_USER}` system user to run the server: "
                f"{INSTALL_HINT} (the Debian package creates it)"
            ) from None
    # A short private folder for the Unix socket: socket paths must stay under ~107 bytes.
    run_dir = Path(tempfile.mkdtemp(prefix="istore-pg-"))
    try:
        if as_root:
            os.chown(run_dir, server_user.pw_uid, server_user.pw_gid)
        data_dir = run_dir / "data" if as_root else tmp_home / "data"
        initdb_log, server_log = tmp_home / "initdb.log", tmp_home / "postgres.log"
        started = time.monotonic()
        _initdb(bindir, data_dir, run_dir, initdb_log)
        initialised = time.monotonic()
        try:
            port = _start(bindir, data_dir, run_dir, run_dir, server_log)
            admin_dsn = f"postgresql://{SERVER_USER}@127.0.0.1:{port}/postgres"
            _wait_until_answers(admin_dsn, timeout=30.0)
            _create_database(admin_dsn, TEST_DATABASE)
            ready = time.monotonic()
            _log(
                f"local PostgreSQL ({bindir}) ready: initdb {initialised - started:.1f}s, "
                f"start {ready - initialised:.1f}s; data {data_dir}, log {server_log}"
            )
            yield with_dbname(admin_dsn, TEST_DATABASE)
        finally:
            _stop(bindir, data_dir, run_dir, server_log)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


@contextmanager
def postgres_dsn(tmp_home: Path) -> Iterator[str]:
    """Yield the DSN of an empty database on a real server the caller may also administer.

    Order: ISTORE_TEST_POSTGRES_DSN (a fresh ``istore_test_<hex>`` database on that server,
    dropped afterwards), else Docker (testcontainers, postgres:16), else local binaries.
    """
    external = os.environ.get(ENV_DSN)
    if external:
        _log(f"using {ENV_DSN}={redact(external)}")
        _wait_until_answers(external, timeout=30.0)
        with fresh_database(external) as dsn:
            _log(f"fresh database: {redact(dsn)}")
            yield dsn
        return
    if docker_available():
        _log(f"Docker answers: starting {POSTGRES_IMAGE} with testcontainers")
        with _docker_postgres() as dsn:
            _log(f"Docker PostgreSQL ready: {redact(dsn)}")
            yield dsn
        return
    _log(f"no {ENV_DSN} and no Docker: starting a local cluster in {tmp_home}")
    with local_postgres(tmp_home) as dsn:
        _log(f"local PostgreSQL DSN: {redact(dsn)}")
        yield dsn
