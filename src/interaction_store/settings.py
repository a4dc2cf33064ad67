"""The one settings object: every knob, overridable by ``ISTORE_*`` environment variables."""

from __future__ import annotations

import base64
import binascii
import os
import stat
import sys
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PACKAGE_DIR = Path(__file__).resolve().parent

TOPIC_CHARS = r"^[A-Za-z0-9._-]*$"
"""What Kafka allows in a topic name, so a bad prefix fails at start, naming the setting."""

_SEPARATORS = (".", "_", "-")


def _data_folder(name: str) -> Path:
    """``streams/`` or ``projections/``: the checkout's copy when run from source, else the
    copy shipped inside the wheel."""
    in_checkout = _PACKAGE_DIR.parent.parent / name
    if (in_checkout / ".istore-data-folder").exists():
        return in_checkout
    return _PACKAGE_DIR / "_data" / name


PRIVATE_FOLDER = 0o700
PRIVATE_FILE = 0o600
"""The data folder holds personal data and API key hashes: its owner's only."""


def private_folder(path: Path) -> Path:
    """Create ``path`` (0700 whatever the umask) if missing. One open to others (left by an
    older version, or made by hand) is tightened with its files, saying so on stderr; one of
    another user's is left as it is, with a warning."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=PRIVATE_FOLDER)
    except FileExistsError:
        if not path.is_dir():
            raise NotADirectoryError(
                f"data_dir={str(path)!r} is a file, not a folder: point ISTORE_DATA_DIR "
                "(--data-dir) at a folder, or move the file away"
            ) from None
    else:
        os.chmod(path, PRIVATE_FOLDER)  # the umask may have taken the owner's bits too
        return path
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & 0o077:
        return path
    try:
        os.chmod(path, PRIVATE_FOLDER)
    except PermissionError:
        sys.stderr.write(f"warning: data folder {path} is open to other users ({mode:04o})\n")
        return path
    for entry in os.scandir(path):
        if entry.is_file(follow_symlinks=False):
            os.chmod(entry.path, stat.S_IMODE(entry.stat().st_mode) & PRIVATE_FILE)
    sys.stderr.write(
        f"data folder {path} was open to other users ({mode:04o}): now {PRIVATE_FOLDER:04o}, "
        f"its files {PRIVATE_FILE:04o}\n"
    )
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty if missing, and make it its owner's only (0600). An empty file is
    a valid SQLite database; SQLite gives its -wal, -shm and -journal files the database
    file's mode, so they are private too."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, PRIVATE_FILE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != PRIVATE_FILE:
            os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return path


MASTER_KEY_BYTES = 32
NEW_KEY_HINT = "make one with `head -c 32 /dev/urandom | base64`"


def parse_master_key(text: str, setting: str) -> bytes:
    """The 32 bytes of a master key written as base64 (standard or URL-safe alphabet, one
    line). ``setting`` names where the text came from, for the error; the key itself is never
    shown."""
    clean = text.strip()
    try:
        raw = base64.b64decode(clean.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"{setting} is not base64 ({len(clean)} characters): it should be {MASTER_KEY_BYTES} "
            f"random bytes in base64 (44 characters); {NEW_KEY_HINT}"
        ) from None
    if len(raw) != MASTER_KEY_BYTES:
        raise ValueError(
            f"{setting} decodes to {len(raw)} bytes, not {MASTER_KEY_BYTES}: it should be "
            f"{MASTER_KEY_BYTES} random bytes in base64 (an AES-256 key); {NEW_KEY_HINT}"
        )
    return raw


class Settings(BaseSettings):
    """Where the store keeps its data and how it reaches Kafka."""

    model_config = SettingsConfigDict(env_prefix="ISTORE_", extra="ignore")

    backend: Literal["embedded", "kafka"] = Field(
        default="embedded",
        description="embedded: one SQLite file in data_dir, no server; kafka: Apache Kafka",
    )
    data_dir: Path = Field(default=Path("istore-data"), description="Folder of the embedded store")
    streams_dir: Path = Field(default_factory=lambda: _data_folder("streams"))
    projections_dir: Path = Field(default_factory=lambda: _data_folder("projections"))
    topic_prefix: str = Field(
        default="",
        pattern=TOPIC_CHARS,
        description="Prepended to every topic name (isolates tenants or tests), followed by "
        "topic_separator unless it already ends in '.', '_' or '-': 'acme' gives "
        "'acme.istore.interactions.v1'",
    )
    topic_separator: str = Field(
        default=".",
        pattern=TOPIC_CHARS,
        description="Between topic_prefix and the catalog's topic names; '' keeps the names "
        "of deployments that set a prefix without one before it was added",
    )
    partitions: dict[str, int] = Field(
        default_factory=dict,
        description='Partition counts overriding the catalog, e.g. {"interactions": 12}',
    )
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ISTORE_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    kafka_client_id: str = "interaction-store"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_replication_factor: int | None = Field(
        default=None,
        ge=1,
        description="Replicas of each topic we create; unset: min(3, brokers in the cluster), "
        "with min.insync.replicas=2 from 3 replicas on",
    )
    kafka_publish_timeout: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Longest one publish waits for Kafka (seconds): connecting, sending, "
        "flushing and committing a batch. Past it the publish fails: `istore publish` exits 75, "
        "the HTTP API answers 503 with Retry-After",
    )
    kafka_transactions: bool = Field(
        default=True,
        description="Publish each batch in a Kafka transaction (all or nothing for readers); "
        "false: the idempotent producer alone, faster, but a batch that fails part way may "
        "leave some of its events stored, and resending them after an unacknowledged write "
        "can store them twice",
    )
    kafka_transactional_id: str | None = Field(
        default=None,
        description="Stem of the producers' transactional.id; each live producer appends the "
        "first slot number free on the host (a lock file), so concurrent publishers "
        "never share one. Unset: istore-<hostname>",
    )
    intake_retention_ms: int | None = Field(
        default=None,
        ge=60_000,
        description="Retention of the intake topic (milliseconds; at least a minute), where "
        "publishers writing straight to Kafka put plaintext events until the store forwards "
        "them; unset: the catalog's (604800000, 7 days). `istore topics ensure` applies it",
    )
    intake_group: str | None = Field(
        default=None,
        min_length=1,
        description="Kafka consumer group of the intake processors (workers and `istore "
        "intake run` share the intake topic's partitions); its committed offsets are the "
        "intake positions. Unset: <topic_prefix>istore-intake (stores with their own prefix "
        "on one cluster keep their own group)",
    )
    worker_intake: bool = Field(
        default=True,
        description="Projection workers on Kafka also run the intake processor (a thread); "
        "false: run `istore intake run` on its own",
    )
    kafka_home: Path | None = Field(
        default=None, description="Folder of the local broker (istore kafka start)"
    )
    postgres_dsn: SecretStr | None = Field(
        default=None,
        description="PostgreSQL for the views (postgresql://user:pass@host:port/db); "
        "unset: SQLite in data_dir",
    )
    publish_batch_size: int = Field(default=5000, ge=1, le=1_000_000)
    access_file: Path | None = Field(
        default=None,
        description="API keys and roles of the HTTP API (TOML); unset: <data_dir>/access.toml",
    )
    api_max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest request body the ingest API takes (413 above it)",
    )
    api_max_batch: int = Field(
        default=10_000, ge=1, description="Most events in one ingest request (413 above it)"
    )
    master_key: SecretStr | None = Field(
        default=None,
        description="Key-encryption key of the personal-data keys: 32 random bytes in base64. "
        "Unset: read from master_key_file; on the embedded store with neither, "
        "<data_dir>/master.key, made on first use. Losing it makes personal data unreadable",
    )
    master_key_file: Path | None = Field(
        default=None,
        description="File holding master_key (base64, one line; keep it 0600, apart from the "
        "data's backups)",
    )
    key_cache_size: int = Field(
        default=50_000,
        ge=0,
        description="Data keys each process keeps in memory (0: none); the least recently "
        "used go first",
    )
    key_cache_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="Longest a process uses a data key it holds in memory before reading it "
        "again: a key destroyed by another process can still seal or open fields here for "
        "this long (0: read the key store for every batch)",
    )
    consistency_timeout: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="Longest a read waits for the views to reach a consistency token (seconds)",
    )

    @field_validator("master_key")
    @classmethod
    def _master_key_is_32_bytes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_master_key(value.get_secret_value(), "ISTORE_MASTER_KEY (master_key)")
        return value

    def private_data_dir(self) -> Path:
        """The data folder, created or tightened to 0700 (see :func:`private_folder`)."""
        return private_folder(self.data_dir)

    @property
    def topic_name_prefix(self) -> str:
        """What goes before every catalog topic name: the prefix and, unless the prefix ends
        in one already, the separator (``acme`` -> ``acme.``; ``acme.`` stays ``acme.``)."""
        if not self.topic_prefix or self.topic_prefix.endswith(_SEPARATORS):
            return self.topic_prefix
        return self.topic_prefix + self.topic_separator

    @property
    def intake_group_id(self) -> str:
        return self.intake_group or f"{self.topic_name_prefix}istore-intake"

    @property
    def access_path(self) -> Path:
        return self.access_file or self.data_dir / "access.toml"

    @property
    def local_kafka_home(self) -> Path:
        return self.kafka_home or self.data_dir / "kafka"

    def kafka_client_config(self) -> dict[str, object]:
        """The connection settings every kafka-python client here shares."""
        if not self.kafka_bootstrap_servers:
            raise ValueError(
                "no Kafka broker configured: set ISTORE_KAFKA_BOOTSTRAP_SERVERS "
                "(or KAFKA_BOOTSTRAP_SERVERS), or run `istore kafka start` for a local one"
            )
        config: dict[str, object] = {
            "bootstrap_servers": self.kafka_bootstrap_servers.split(","),
            "client_id": self.kafka_client_id,
            "security_protocol": self.kafka_security_protocol,
            # kafka-python backs off up to 30 s between reconnects by default: after an
            # outage, clients would sit idle that long once the broker is back.
            "reconnect_backoff_max_ms": 2000,
        }
        if self.kafka_sasl_mechanism:
            config["sasl_mechanism"] = self.kafka_sasl_mechanism
            config["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                config["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        return config
