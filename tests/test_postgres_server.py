"""Tests for tests.postgres_server: the PostgreSQL the fixtures hand out is real, isolated, and
cleaned up (databases dropped, no server process left behind)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from tests.postgres_server import (
    ENV_DSN,
    INSTALL_HINT,
    TEST_DATABASE,
    find_postgres_bindir,
    fresh_database,
    local_postgres,
    postgres_dsn,
)


def _dbname(dsn: str) -> str:
    return str(conninfo_to_dict(dsn)["dbname"])


def _data_dir_and_pid(dsn: str) -> tuple[Path, int]:
    """The server's data folder and its postmaster pid (first line of postmaster.pid)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("show data_directory").fetchone()
    assert row is not None
    data_dir = Path(str(row[0]))
    return data_dir, int((data_dir / "postmaster.pid").read_text().splitlines()[0])


class _TestFailure(Exception):
    """Stands for whatever a test body might raise."""


def _database_exists(admin_dsn: str, name: str) -> bool:
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute("select count(*) from pg_database where datname = %s", [name]).fetchone()
    return row is not None and row[0] == 1


def _process_state(pid: int) -> str | None:
    """The /proc state letter of ``pid`` (R, S, Z...), or None once it no longer exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rpartition(")")[2].split()[0]


def _children(pid: int) -> set[int]:
    children = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue  # the process ended while we looked
        if fields.get("PPid", "").strip() == str(pid):
            children.add(int(status.parent.name))
    return children


def _gone(pid: int) -> bool:
    # A zombie has exited; it lingers only when the init process (pid 1) does not reap orphans.
    return _process_state(pid) in (None, "Z")


def test_server_answers(postgres_admin: str) -> None:
    with psycopg.connect(postgres_admin) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        row = conn.execute("select current_setting('server_version_num')::int").fetchone()
        assert row is not None
        assert row[0] >= 130000  # DROP DATABASE ... WITH (FORCE) needs 13
        assert conn.execute("select current_database()").fetchone() == (_dbname(postgres_admin),)
        assert conn.execute("show server_encoding").fetchone() == ("UTF8",)


def test_table_written_then_read_from_another_connection(postgres_admin: str) -> None:
    table = f"roundtrip_{uuid.uuid4().hex[:8]}"
    occurred = datetime(2024, 5, 17, 9, 30, tzinfo=UTC)
    with psycopg.connect(postgres_admin) as conn:
        conn.execute(
            f"create table {table} (id bigint primary key, who text, at timestamptz, doc jsonb)"
        )
        conn.execute(
            f"insert into {table} values (%s, %s, %s, %s)",
            [1, "Zoë Ångström", occurred, Jsonb({"channel": "email", "score": 7})],
        )
    try:
        with psycopg.connect(postgres_admin) as conn:
            rows = conn.execute(f"select id, who, at, doc from {table}").fetchall()
        assert rows == [(1, "Zoë Ångström", occurred, {"channel": "email", "score": 7})]
    finally:
        with psycopg.connect(postgres_admin) as conn:
            conn.execute(f"drop table {table}")


def test_fresh_database_is_isolated_and_dropped_even_with_open_sessions(
    postgres_admin: str,
) -> None:
    with fresh_database(postgres_admin) as dsn:
        name = _dbname(dsn)
        assert name.startswith(f"{TEST_DATABASE}_")
        assert name != _dbname(postgres_admin)
        assert _database_exists(postgres_admin, name)
        # Left open on purpose: the drop must end it (WITH (FORCE)) rather than fail.
        lingering = psycopg.connect(dsn, autocommit=True)
        lingering.execute("create table consent (customer text primary key, granted boolean)")
        lingering.execute("insert into consent values ('c-1', true)")
        assert lingering.execute("select count(*) from consent").fetchone() == (1,)
        with psycopg.connect(postgres_admin) as admin:
            row = admin.execute("select to_regclass('consent') is null").fetchone()
        assert row == (True,)  # the table is in the fresh database only
    try:
        assert not _database_exists(postgres_admin, name)
        with pytest.raises(psycopg.OperationalError):
            lingering.execute("select 1")
    finally:
        lingering.close()


def test_env_dsn_gets_its_own_database_dropped_afterwards(
    postgres_admin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The session's server stands in for an externally run one.
    monkeypatch.setenv(ENV_DSN, postgres_admin)
    with postgres_dsn(tmp_path) as dsn:
        name = _dbname(dsn)
        assert name.startswith(f"{TEST_DATABASE}_")
        with psycopg.connect(dsn) as conn:
            assert conn.execute("select current_database()").fetchone() == (name,)
    assert not _database_exists(postgres_admin, name)


def test_local_server_stops_without_leaving_processes_even_on_errors(tmp_path: Path) -> None:
    with pytest.raises(_TestFailure), local_postgres(tmp_path / "pg") as dsn:
        assert dsn.endswith(f"/{TEST_DATABASE}")
        data_dir, pid = _data_dir_and_pid(dsn)
        assert _process_state(pid) not in (None, "Z")
        assert Path(f"/proc/{pid}/exe").resolve().name == "postgres"
        workers = _children(pid)
        assert workers  # checkpointer, walwriter...: they must go too
        raise _TestFailure  # the context must stop the server on errors as well
    assert _gone(pid)
    assert all(_gone(worker) for worker in workers)
    assert not (data_dir / "postmaster.pid").exists()
    assert (tmp_path / "pg" / "postgres.log").read_text().count("database system is shut down")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)


def test_local_server_stops_on_normal_exit(tmp_path: Path) -> None:
    with local_postgres(tmp_path / "pg") as dsn:
        data_dir, pid = _data_dir_and_pid(dsn)
        assert _process_state(pid) not in (None, "Z")
    assert _gone(pid)
    assert not (data_dir / "postmaster.pid").exists()


def test_missing_binaries_say_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as error:
        find_postgres_bindir(debian_root=tmp_path, pg_config=None)
    assert "bash scripts/postgres.sh" in str(error.value)
    assert "apt-get install postgresql" in str(error.value)
    assert INSTALL_HINT in str(error.value)
