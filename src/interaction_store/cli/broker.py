"""Commands for a local Apache Kafka broker or cluster (KRaft, from the jars)."""

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
    """A local Apache Kafka broker or cluster (--nodes 3), KRaft, for development and tests."""


def _local(ctx: click.Context, nodes: int | None = None) -> Any:
    """The folder's lone broker or cluster; ``nodes`` (from start) chooses, else the folder."""
    from interaction_store.kafka_cluster import LocalKafkaCluster, cluster_size
    from interaction_store.kafka_local import KafkaSetupError, LocalKafka

    home = _settings(ctx).local_kafka_home
    held = cluster_size(home)
    if nodes == 1 and held is not None:
        raise KafkaSetupError(
            f"--nodes 1 but {home} holds a cluster of {held} nodes: start it with --nodes "
            f"{held}, or give the single broker another folder (ISTORE_KAFKA_HOME)"
        )
    count = nodes if nodes is not None else held or 1
    return LocalKafka(home) if count == 1 else LocalKafkaCluster(home, count)


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
@click.option(
    "--nodes",
    type=click.IntRange(1, 9),
    default=None,
    help="KRaft nodes (broker+controller each); 3: every topic has 3 replicas and "
    "min.insync.replicas=2, so one node may die. Default: what the folder holds, else 1",
)
@click.pass_context
def kafka_start(ctx: click.Context, nodes: int | None) -> None:
    """Fetch the broker jars (once), start the broker(s), create the catalog's topics."""
    from interaction_store.kafka_local import KafkaSetupError

    try:
        broker = _local(ctx, nodes)
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
    """Stop the local broker or cluster (its data is kept)."""
    was_running = _local(ctx).stop()
    click.echo("stopped" if was_running else "was not running")


@kafka.command("status")
@click.pass_context
def kafka_status(ctx: click.Context) -> None:
    """Say whether the local broker (or cluster) runs, and where."""
    status = _local(ctx).status()
    if status.running and status.pid is None:  # a cluster: the detail names each node
        click.echo(f"running at {status.bootstrap_servers} ({status.detail}; {status.home})")
    elif status.running:
        click.echo(f"running at {status.bootstrap_servers} (pid {status.pid}, {status.home})")
    else:
        click.echo(f"not running ({status.detail})")
        sys.exit(3)
