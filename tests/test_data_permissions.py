"""The data folder holds personal data and API key hashes: it is the owner's only (0700), and
so is every file the store writes in it (0600: the log, the views, their -wal and -shm files,
lock files, access.toml, demo.json), whatever the umask. A folder an older version left open
is tightened, with a message."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from interaction_store.cli import main
from interaction_store.cli.serve import _demo_end, ensure_access
from interaction_store.ingest import Ingest
from interaction_store.log import open_log
from interaction_store.settings import Settings
from interaction_store.views.sqlite import SQLiteViewStore
from tests.factories import doc


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The loosest umask: nothing the store creates may rely on the caller's."""
    saved = os.umask(0)
    yield
    os.umask(saved)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _modes(folder: Path) -> dict[str, str]:
    return {p.name: f"{_mode(p):04o}" for p in sorted(folder.iterdir()) if p.is_file()}


def _use_the_store(settings: Settings) -> None:
    """Log, views (with their write-ahead logs still there), the access file, demo marker."""
    with open_log(settings) as log:
        Ingest(log, parallel=False).publish_documents([orjson.dumps(doc())], "test")
        views = SQLiteViewStore.from_settings(settings)
        try:
            with views.transaction() as c:
                c.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
                c.execute("INSERT INTO t VALUES (%s)", (1,))
            files = {p.name for p in settings.data_dir.iterdir()}
            assert {"log.sqlite-wal", "log.sqlite-shm", "views.sqlite-wal"} <= files, files
            ensure_access(settings)
            _demo_end(settings)
            # Checked while the connections are open: SQLite removes -wal and -shm on close.
            assert _mode(settings.data_dir) == 0o700
            modes = _modes(settings.data_dir)
            assert {"access.toml", "demo.json", "log.sqlite", "views.sqlite"} <= set(modes)
            assert modes == dict.fromkeys(modes, "0600")
        finally:
            views.close()


def test_a_new_data_folder_is_private_whatever_the_umask(tmp_path: Path, open_umask: None) -> None:
    _use_the_store(Settings(backend="embedded", data_dir=tmp_path / "new" / "data"))


def test_an_open_folder_of_an_older_version_is_tightened_with_a_message(
    tmp_path: Path, open_umask: None, capfd: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "data"
    settings = Settings(backend="embedded", data_dir=folder)
    with open_log(settings):
        pass
    (folder / "access.toml").write_text("")
    os.chmod(folder, 0o755)
    for path in folder.iterdir():
        os.chmod(path, 0o644)
    capfd.readouterr()
    with open_log(settings):
        pass
    err = capfd.readouterr().err
    assert f"{folder}" in err and "0755" in err and "0700" in err, err
    assert _mode(folder) == 0o700
    modes = _modes(folder)
    assert modes == dict.fromkeys(modes, "0600")


def test_keys_created_from_the_command_line_are_private(tmp_path: Path, open_umask: None) -> None:
    folder = tmp_path / "data"
    result = CliRunner().invoke(
        main, ["--data-dir", str(folder), "keys", "create", "ops", "--role", "admin"]
    )
    assert result.exit_code == 0, result.output
    assert _mode(folder) == 0o700
    assert _mode(folder / "access.toml") == 0o600


def test_a_data_dir_that_is_a_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_text("")
    with pytest.raises(NotADirectoryError, match=r"data_dir='.*/data' is a file"):
        open_log(Settings(backend="embedded", data_dir=path))
