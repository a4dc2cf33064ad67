"""The ``istore`` command line. This module holds the group and its shared options; the
commands live beside it: ``log`` (publish, tail, schemas, topics, demo data), ``broker``
(a local Kafka), ``views`` (run the projections, replay, promote, read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from interaction_store.catalog import CatalogError
from interaction_store.log import LogError
from interaction_store.settings import Settings

_USER_ERRORS: tuple[type[Exception], ...] = (LogError, CatalogError, ValueError, OSError)


def _settings(ctx: click.Context) -> Settings:
    obj: dict[str, Any] = ctx.find_root().obj or {}
    overrides = {k: v for k, v in obj.items() if v is not None}
    return Settings(**overrides)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--backend",
    type=click.Choice(["embedded", "kafka"]),
    help="Log backend [env ISTORE_BACKEND; default embedded]",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the embedded store [env ISTORE_DATA_DIR; default ./istore-data]",
)
@click.option(
    "--bootstrap-servers",
    "kafka_bootstrap_servers",
    help="Kafka brokers host:port[,...] [env ISTORE_KAFKA_BOOTSTRAP_SERVERS]",
)
@click.option(
    "--streams-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Folder of catalog.toml and schemas/ [env ISTORE_STREAMS_DIR]",
)
@click.option(
    "--topic-prefix",
    help="Prefix of every topic name, joined with '.' ('acme' gives acme.istore.interactions.v1; "
    "ISTORE_TOPIC_SEPARATOR changes it) [env ISTORE_TOPIC_PREFIX]",
)
@click.option(
    "--projections-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Folder of the view definitions (scoring models, timeline, consent rules) "
    "[env ISTORE_PROJECTIONS_DIR]",
)
@click.option(
    "--postgres-dsn",
    help="PostgreSQL for the views, postgresql://user:pass@host:port/db; unset: SQLite in "
    "the data folder [env ISTORE_POSTGRES_DSN]",
)
@click.pass_context
def main(ctx: click.Context, /, **options: Any) -> None:
    """interaction-store: customer interactions as an event log, projected into views."""
    ctx.obj = options


def settings_of(ctx: click.Context) -> Settings:
    """The settings for a command: the group's options over the environment."""
    return _settings(ctx)


def fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


USER_ERRORS = _USER_ERRORS

# The commands register themselves on ``main`` when imported.
from interaction_store.cli import (  # noqa: E402, F401  # imported to register commands
    broker,
    erase,
    export,
    intake,
    keys,
    log,
    serve,
    show,
    views,
)

__all__ = ["main"]
