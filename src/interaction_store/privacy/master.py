"""The master key (key-encryption key): where the settings say it is, or, on the embedded
store, a file made in the data folder on first use."""

from __future__ import annotations

import base64
import os
import secrets
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

from interaction_store.settings import (
    MASTER_KEY_BYTES,
    NEW_KEY_HINT,
    PRIVATE_FILE,
    Settings,
    parse_master_key,
)

MASTER_KEY_FILE = "master.key"
"""Its name in the data folder when no setting gives one (embedded store only)."""


class MasterKeyError(ValueError):
    """The master key is missing, unreadable or not the one the key store was made with."""


@dataclass(frozen=True)
class MasterKey:
    """The 32 bytes that wrap every data key, and the setting a user changes to fix it."""

    secret: bytes = field(repr=False)
    origin: str
    """Where it came from, as a user would fix it: ``ISTORE_MASTER_KEY``,
    ``ISTORE_MASTER_KEY_FILE=/path`` or the file in the data folder."""


def load_master_key(settings: Settings) -> MasterKey:
    """The master key the settings give, in this order: ``master_key``, ``master_key_file``,
    else (embedded backend with views in SQLite only) ``<data_dir>/master.key``, created the
    first time with a note on stderr. A deployment on Kafka or PostgreSQL has no default: its
    processes run on several machines, which must share one key."""
    if settings.master_key is not None and settings.master_key_file is not None:
        raise MasterKeyError(
            "both ISTORE_MASTER_KEY and ISTORE_MASTER_KEY_FILE are set "
            f"(master_key_file={str(settings.master_key_file)!r}): set only one"
        )
    if settings.master_key is not None:
        origin = "ISTORE_MASTER_KEY"
        return _parsed(settings.master_key.get_secret_value(), origin)
    if settings.master_key_file is not None:
        return _read_key_file(
            settings.master_key_file, f"ISTORE_MASTER_KEY_FILE={settings.master_key_file}"
        )
    shared = [
        name
        for name, on in (
            ("backend=kafka", settings.backend == "kafka"),
            ("postgres_dsn", settings.postgres_dsn is not None),
        )
        if on
    ]
    if shared:
        raise MasterKeyError(
            f"no master key: with {' and '.join(shared)} set, personal data is sealed under a "
            "key every process must share. Set ISTORE_MASTER_KEY (32 random bytes in base64) or "
            f"ISTORE_MASTER_KEY_FILE (a file holding it); {NEW_KEY_HINT}"
        )
    path = settings.private_data_dir() / MASTER_KEY_FILE
    origin = f"the master key file {path} (or set ISTORE_MASTER_KEY / ISTORE_MASTER_KEY_FILE)"
    if not path.exists():
        _create_key_file(path)
    return _read_key_file(path, origin)


def _read_key_file(path: Path, origin: str) -> MasterKey:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise MasterKeyError(
            f"{origin}: no such file. Point it at the file holding the master key, or write "
            f"one: {NEW_KEY_HINT} > {path}; chmod 600 {path}"
        ) from None
    except UnicodeDecodeError:
        raise MasterKeyError(
            f"{origin}: not text; it should hold {MASTER_KEY_BYTES} random bytes in base64"
        ) from None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # Not ours to change (it may be a mounted secret); say it, as for the data folder.
        sys.stderr.write(
            f"warning: master key file {path} is open to other users ({mode:04o}): "
            f"chmod 600 {path}\n"
        )
    return _parsed(text, origin)


def _parsed(text: str, origin: str) -> MasterKey:
    try:
        return MasterKey(parse_master_key(text, origin), origin)
    except ValueError as bad:
        raise MasterKeyError(str(bad)) from None


def _create_key_file(path: Path) -> None:
    """Write a new random key to ``path`` (0600) unless another process got there first:
    the key goes to a temporary file, linked into place only if ``path`` is still free, so
    no process ever reads a half-written key and two processes starting together agree."""
    text = base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).decode() + "\n"
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)  # whatever the umask
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return
    finally:
        temporary.unlink()
    sys.stderr.write(
        f"created the master key {path}: it unlocks the personal data in this store. "
        "Losing it makes that data unreadable for good; keep a copy apart from the data's "
        "backups (or set ISTORE_MASTER_KEY_FILE to where you keep it)\n"
    )
