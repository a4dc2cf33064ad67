"""``istore intake run``: the intake processor on its own (projection workers on Kafka run one
too), forwarding what publishers wrote straight to Kafka's intake topic."""

from __future__ import annotations

import signal
import time
from types import FrameType

import click

from interaction_store.cli import USER_ERRORS, fail, main, settings_of
from interaction_store.intake import IntakeError, IntakeProcessor, IntakeStats
from interaction_store.log import open_log

ERRORS: tuple[type[Exception], ...] = (*USER_ERRORS, IntakeError)


@main.group()
def intake() -> None:
    """The intake topic of publishers writing straight to Kafka."""


@intake.command("run")
@click.option("--once", is_flag=True, help="Forward what is on the intake topic now, then exit")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=500, show_default=True)
@click.pass_context
def intake_run(ctx: click.Context, once: bool, batch_size: int) -> None:
    """Validate, de-duplicate and forward intake records to the canonical topics; dead-letter
    the bad ones. Processors share the intake topic as one consumer group (ISTORE_INTAKE_GROUP).

    SIGTERM or Ctrl-C finishes the batch in hand, then stops.
    """
    settings = settings_of(ctx)
    try:
        with open_log(settings) as log:
            processor = IntakeProcessor(log, batch_size=batch_size)

            def stop(signum: int, frame: FrameType | None) -> None:
                click.echo("stopping after this batch", err=True)
                processor.stop()

            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
            click.echo(f"forwarding {processor.topic} (consumer group {processor.group})", err=True)
            last = [time.monotonic()]

            def progress(stats: IntakeStats) -> None:
                if time.monotonic() - last[0] >= 5:
                    last[0] = time.monotonic()
                    click.echo(stats.summary(), err=True)

            stats = processor.run(once=once, on_batch=progress)
    except ERRORS as exc:
        raise fail(exc) from exc
    click.echo(stats.summary())
