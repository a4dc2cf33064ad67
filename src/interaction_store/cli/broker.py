"""Commands for a local single-node Apache Kafka broker."""

from __future__ import annotations

import sys
from typing import Any

import click

from interaction_store.catalog import CatalogError
from interaction_store.cli import fail as _fail
from interaction_store.cli import main
from interaction_store.cli import settings_of as _settings
from interaction_store.log import LogError, open_log

# --------------------------------------------------------------------------- local Kafka


@main.group()
def kafka() -> None:
    """A local single-node Apache Kafka broker (KRaft) for development and tests."""


def _local(ctx: click.Context) -> Any:
    from interaction_store.kafka_local import LocalKafka

    return LocalKafka(_settings(ctx).local_kafka_home)


@kafka.command("jars")
@click.pass_context
def kafka_jars(ctx: click.Context) -> None:
    """Fetch the Apache Kafka broker jars with Maven into the cache (once)."""
    from interaction_store.kafka_local import KafkaSetupError

    try:
        libs = _local(ctx).ensure_jars(progress=lambda msg: click.echo(msg, err=True))
    except KafkaSetupError as exc:
        raise _fail(exc) from exc
    click.echo(f"broker jars in {libs}")


@kafka.command("start")
@click.pass_context
def kafka_start(ctx: click.Context) -> None:
    """Fetch the broker jars (once), start the broker, create the catalog's topics."""
    from interaction_store.kafka_local import KafkaSetupError

    broker = _local(ctx)
    try:
        broker.ensure_jars(progress=lambda msg: click.echo(msg, err=True))
        bootstrap = broker.start()
        settings = _settings(ctx).model_copy(
            update={"backend": "kafka", "kafka_bootstrap_servers": bootstrap}
        )
        with open_log(settings) as log:
            created = log.ensure_topics()
    except (KafkaSetupError, LogError, CatalogError, ValueError, OSError) as exc:
        raise _fail(exc) from exc
    if created:
        click.echo(f"created topics: {', '.join(created)}", err=True)
    click.echo(f"Kafka is running at {bootstrap}; use it with:", err=True)
    click.echo(f"export ISTORE_BACKEND=kafka ISTORE_KAFKA_BOOTSTRAP_SERVERS={bootstrap}")


@kafka.command("stop")
@click.pass_context
def kafka_stop(ctx: click.Context) -> None:
    """Stop the local broker (its data is kept)."""
    was_running = _local(ctx).stop()
    click.echo("stopped" if was_running else "was not running")


@kafka.command("status")
@click.pass_context
def kafka_status(ctx: click.Context) -> None:
    """Say whether the local broker runs, and where."""
    status = _local(ctx).status()
    if status.running:
        click.echo(f"running at {status.bootstrap_servers} (pid {status.pid}, {status.home})")
    else:
        click.echo(f"not running ({status.detail})")
        sys.exit(3)
