"""The master key: from the settings, or made in the data folder on the embedded store, with
errors that name the setting to fix."""

from __future__ import annotations

import base64
import secrets
import stat
import threading
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from interaction_store.privacy import MasterKeyError, load_master_key, open_key_store
from interaction_store.privacy.master import MASTER_KEY_FILE
from interaction_store.settings import Settings

pytestmark = pytest.mark.embedded_master_key


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_the_embedded_store_makes_a_private_key_file_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(backend="embedded", data_dir=tmp_path / "data")
    first = load_master_key(settings)
    path = settings.data_dir / MASTER_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert base64.b64decode(path.read_text()) == first.secret
    assert len(first.secret) == 32
    said = capsys.readouterr().err
    assert str(path) in said and "unreadable" in said
    assert load_master_key(settings) == first
    assert capsys.readouterr().err == ""  # said once, when it was made
    assert str(path) in first.origin


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    settings = Settings(backend="embedded", data_dir=tmp_path / "data")
    start = threading.Barrier(4)
    keys: list[bytes] = []

    def load() -> None:
        start.wait()
        keys.append(load_master_key(settings).secret)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and len(keys) == 4
    assert [p.name for p in settings.data_dir.iterdir()] == [MASTER_KEY_FILE]


def test_the_key_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = secrets.token_bytes(32)
    monkeypatch.setenv("ISTORE_MASTER_KEY", b64(raw))
    key = load_master_key(Settings(backend="kafka", data_dir=tmp_path / "data"))
    assert key.secret == raw and key.origin == "ISTORE_MASTER_KEY"
    assert not (tmp_path / "data").exists()  # no default file made
    assert b64(raw) not in repr(key)


def test_the_url_safe_alphabet_is_taken_too(tmp_path: Path) -> None:
    raw = bytes([0xFB, 0xFF]) * 16
    settings = Settings(master_key=SecretStr(base64.urlsafe_b64encode(raw).decode()))
    assert load_master_key(settings).secret == raw


def test_the_key_from_a_file(tmp_path: Path) -> None:
    raw = secrets.token_bytes(32)
    path = tmp_path / "kek"
    path.write_text(b64(raw) + "\n")
    path.chmod(0o600)
    settings = Settings(backend="kafka", data_dir=tmp_path / "data", master_key_file=path)
    key = load_master_key(settings)
    assert key.secret == raw and key.origin == f"ISTORE_MASTER_KEY_FILE={path}"


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"backend": "kafka"}, "backend=kafka"),
        ({"postgres_dsn": SecretStr("postgresql://u:p@h/d")}, "postgres_dsn"),
    ],
)
def test_shared_deployments_need_a_key(
    tmp_path: Path, settings: dict[str, object], named: str
) -> None:
    with pytest.raises(MasterKeyError) as missing:
        load_master_key(Settings(data_dir=tmp_path / "data", **settings))
    message = str(missing.value)
    assert named in message
    assert "ISTORE_MASTER_KEY" in message and "ISTORE_MASTER_KEY_FILE" in message
    assert not (tmp_path / "data" / MASTER_KEY_FILE).exists()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not base64 at all!", "is not base64"),
        (b64(secrets.token_bytes(16)), "decodes to 16 bytes, not 32"),
        ("", "decodes to 0 bytes, not 32"),
    ],
)
def test_a_malformed_key_names_the_setting(text: str, says: str) -> None:
    with pytest.raises(ValidationError) as bad:
        Settings(master_key=SecretStr(text))
    message = str(bad.value)
    assert "ISTORE_MASTER_KEY" in message and says in message
    assert "32 random bytes in base64" in message
    assert not text or text not in message  # a secret is never echoed


def test_a_malformed_key_file_names_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    path.write_text(b64(secrets.token_bytes(31)))
    with pytest.raises(MasterKeyError, match=r"ISTORE_MASTER_KEY_FILE=.*kek decodes to 31 bytes"):
        load_master_key(Settings(master_key_file=path))


def test_a_missing_key_file_says_how_to_make_one(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.key"
    with pytest.raises(MasterKeyError) as missing:
        load_master_key(Settings(master_key_file=path))
    message = str(missing.value)
    assert f"ISTORE_MASTER_KEY_FILE={path}: no such file" in message
    assert "/dev/urandom" in message


def test_a_key_file_open_to_others_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kek"
    path.write_text(b64(secrets.token_bytes(32)))
    path.chmod(0o644)
    load_master_key(Settings(master_key_file=path))
    assert f"chmod 600 {path}" in capsys.readouterr().err


def test_both_settings_at_once_is_an_error(tmp_path: Path) -> None:
    settings = Settings(
        master_key=SecretStr(b64(secrets.token_bytes(32))), master_key_file=tmp_path / "k"
    )
    with pytest.raises(MasterKeyError, match="set only one"):
        load_master_key(settings)


def test_the_wrong_key_names_the_setting_to_fix(tmp_path: Path) -> None:
    settings = Settings(backend="embedded", data_dir=tmp_path / "data")
    with open_key_store(settings) as store:  # made with the default file's key
        store.get_or_create("c1")
    other = settings.model_copy(update={"master_key": SecretStr(b64(secrets.token_bytes(32)))})
    with pytest.raises(MasterKeyError) as refused:
        open_key_store(other)
    message = str(refused.value)
    assert "from ISTORE_MASTER_KEY does not open the key store" in message
    assert str(settings.data_dir / "keys.sqlite") in message
    assert "master key the store was made with" in message
