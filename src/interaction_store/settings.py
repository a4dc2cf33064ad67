"""The one settings object: every knob, overridable by ``ISTORE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
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
    kafka_replication_factor: int = Field(default=1, ge=1, description="For topics we create")
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
    consistency_timeout: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="Longest a read waits for the views to reach a consistency token (seconds)",
    )

    @property
    def topic_name_prefix(self) -> str:
        """What goes before every catalog topic name: the prefix and, unless the prefix ends
        in one already, the separator (``acme`` -> ``acme.``; ``acme.`` stays ``acme.``)."""
        if not self.topic_prefix or self.topic_prefix.endswith(_SEPARATORS):
            return self.topic_prefix
        return self.topic_prefix + self.topic_separator

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
        }
        if self.kafka_sasl_mechanism:
            config["sasl_mechanism"] = self.kafka_sasl_mechanism
            config["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                config["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        return config
