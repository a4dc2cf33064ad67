"""Commands for the views: run the projection worker, replay a view beside the live one,
list, promote and drop views, and look after the events a view had to skip."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import click
from tqdm import tqdm

from interaction_store.cli import USER_ERRORS, fail, main, settings_of
from interaction_store.intake import IntakeError, IntakeThread
from interaction_store.intake import drain as drain_intake
from interaction_store.log import open_log
from interaction_store.log.base import EventLog
from interaction_store.privacy.sealing import opener_of
from interaction_store.projection import ProjectionRunner, RunStats
from interaction_store.projection.registry import (
    KINDS,
    LiveSet,
    ViewError,
    ViewInfo,
    ViewRegistry,
    build,
    default_definition,
    outdated,
    stale_note,
)
from interaction_store.projection.runner import dead_letters, retry_dead_letters
from interaction_store.projection.score_diff import diff_scores
from interaction_store.projection.scoring import LeadScores, publish_outbox
from interaction_store.projection.scoring.files import read_models
from interaction_store.settings import Settings
from interaction_store.views import ViewStore, open_store

ERRORS: tuple[type[Exception], ...] = (*USER_ERRORS, ViewError, IntakeError)


def _after_batch(runner: ProjectionRunner, log: Any, store: Any) -> int:
    """Publish what the live views put in their outboxes (lead.sales_ready) in this batch;
    return how many events that published."""
    published = 0
    for projection in runner.projections:
        if isinstance(projection, LeadScores):
            published += publish_outbox(store, log, instance=projection.instance)
    return published


class ProjectionWorker:
    """The projection worker of `istore run` and `istore serve`: keeps every live view up to
    date with the log, publishing their outboxes (lead.sales_ready) after each batch.

    :meth:`stop` may be called from a signal handler or another thread: the batch in hand is
    finished, then :meth:`run` returns.
    """

    def __init__(self, settings: Settings, batch_size: int = 2000) -> None:
        self.settings = settings
        self.batch_size = batch_size
        self._stopping = threading.Event()
        self._runner: ProjectionRunner | None = None
        # The views need the personal fields in clear: without the master key the worker
        # does not start (the error names the setting).
        self.opener = opener_of(settings)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            self._runner.stop()

    def run(self, *, once: bool = False, group: str | None = None) -> RunStats:
        """Follow the log until stopped (with ``once``: until caught up); ``group`` joins a
        Kafka consumer group. Progress goes to stderr.

        1. register the default views on a first start;
        2. build a runner on the live views and run it, looking at the registry as it goes;
        3. when another process promoted (or dropped) a view, stop before the next batch and
           go back to 2: the new runner starts each view from its own tracked positions, so a
           promoted view catches up on what the demoted one applied meanwhile."""
        settings = self.settings
        stats = RunStats()
        # On Kafka the worker also forwards the intake topic: with ``once`` what is there
        # now, before projecting; else in a thread for as long as it runs.
        if once:
            drained = drain_intake(settings)
            if drained is not None:
                click.echo(drained.summary(), err=True)
        intake = None if once else IntakeThread.start_for(settings)
        try:
            with open_log(settings) as log, open_store(settings) as store:
                registry = ViewRegistry(store)
                registry.ensure_defaults(settings)
                while not self.stopping:
                    infos = registry.live_views()
                    watch = LiveSet(registry, infos)
                    stats = self._run_views(
                        log, store, infos, stats, once, group, watch.moved, intake
                    )
                    if not watch.changed:
                        break
                    click.echo("the live views changed (istore views promote or drop)", err=True)
        finally:
            if intake is not None:
                intake.stop()
        if intake is not None and intake.failure is not None:
            raise IntakeError(f"the intake processor failed: {intake.failure}")
        return stats

    def _run_views(
        self,
        log: EventLog,
        store: ViewStore,
        infos: Sequence[ViewInfo],
        stats: RunStats,
        once: bool,
        group: str | None,
        moved: Callable[[bool], bool],
        intake: IntakeThread | None = None,
    ) -> RunStats:
        """Run these views (adding to ``stats``) until stopped, caught up (``once``) or the
        live set moved."""
        projections = []
        for info in infos:
            projection = build(info, self.settings)
            stale = projection.missing_columns(store)
            if stale:
                # Writing into it would set every event aside: it stays as it was (reads serve
                # it) until a replay replaces it.
                click.echo(f"{info.instance}: not updated, {stale_note(info, stale)}", err=True)
                continue
            projections.append(projection)
        if not projections:
            raise ViewError(
                "no live view this version can update: replay them (istore views list says how)"
            )
        runner = ProjectionRunner(
            log, store, projections, batch_size=self.batch_size, opener=self.opener
        )
        runner.stats = stats
        for projection in projections:
            if isinstance(projection, LeadScores):
                # A changed model means a replay, not a silent mix of two models.
                projection.check_models(store)
        self._runner = runner
        if self.stopping:
            return runner.stats
        click.echo(f"projecting into {', '.join(i.instance for i in infos)}", err=True)
        last = [time.monotonic()]
        published = [0]

        def on_batch(stats: RunStats) -> None:
            published[0] += _after_batch(runner, log, store)
            if intake is not None and intake.failure is not None:
                self.stop()  # run() reports it
            if self.stopping:
                runner.stop()  # a stop that came before the run began
            if time.monotonic() - last[0] >= 5:
                last[0] = time.monotonic()
                lag = sum(runner.lag().values())
                click.echo(f"applied {stats.applied} events, lag {lag}", err=True)

        stats = runner.run(follow=not once, group_id=group, on_batch=on_batch, until=moved)
        published[0] += _after_batch(runner, log, store)
        # The outbox's events are in the log now, and the views read them too: with --once,
        # apply them before exiting so that no lag is left (each is published only once).
        while once and published[0] and not self.stopping and not moved(True):
            published[0] = 0
            stats = runner.run(follow=False, on_batch=on_batch, until=moved)
            published[0] += _after_batch(runner, log, store)
        return stats


def summary(stats: RunStats) -> str:
    return (
        f"applied {stats.applied} events in {stats.batches} batches "
        f"(redelivered {stats.redelivered}, rejected {stats.rejected}, "
        f"set aside {stats.dead_lettered})"
    )


@main.command()
@click.option("--once", is_flag=True, help="Catch up with the log, then exit")
@click.option("--group", help="Kafka consumer group (workers sharing partitions)")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=2000, show_default=True)
@click.pass_context
def run(ctx: click.Context, once: bool, group: str | None, batch_size: int) -> None:
    """Run the projection worker: keep every live view up to date with the log.

    SIGTERM or Ctrl-C finishes the batch in hand, then stops.
    """
    try:
        worker = ProjectionWorker(settings_of(ctx), batch_size)
    except ERRORS as exc:  # no master key, or not the key store's: the worker does not start
        raise fail(exc) from exc

    def stop(signum: int, frame: FrameType | None) -> None:
        click.echo("stopping after this batch", err=True)
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        stats = worker.run(once=once, group=group)
    except ERRORS as exc:
        raise fail(exc) from exc
    click.echo(summary(stats))


@main.command()
@click.argument("kind", type=click.Choice(list(KINDS)))
@click.option(
    "--model",
    "models",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="Scoring model file(s) to use instead of projections/scoring/ (lead_scores only)",
)
@click.option(
    "--until",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]),
    help="Only events that occurred up to this instant (UTC unless an offset is given)",
)
@click.option("--as", "name", help="Name of the new view [default: KIND_replay_YYYYMMDDHHMMSS]")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=5000, show_default=True)
@click.pass_context
def replay(
    ctx: click.Context,
    kind: str,
    models: tuple[Path, ...],
    until: datetime | None,
    name: str | None,
    batch_size: int,
) -> None:
    """Rebuild a view of KIND from the start of the log into a new shadow view, while the
    live one keeps serving. Compare it (istore diff), then promote or drop it."""
    settings = settings_of(ctx)
    until_at = None
    if until is not None:
        until_at = until if until.tzinfo else until.replace(tzinfo=UTC)
    instance = name or f"{kind}_replay_{datetime.now(UTC):%Y%m%d%H%M%S}"
    try:
        definition = default_definition(kind, settings)
        if models:
            if kind != "lead_scores":
                raise ViewError("--model is for lead_scores replays")
            names = [p.name for p in models]
            clash = sorted({n for n in names if names.count(n) > 1})
            if clash:
                raise ViewError(
                    f"two --model files are named {clash[0]!r}: the view keeps each model "
                    "under its file name, so rename one"
                )
            texts = [(str(p), p.read_text(encoding="utf-8")) for p in models]
            read_models(texts)  # a bad file fails here, naming the file, rule and field
            definition = {
                "models": {p.name: text for p, (_, text) in zip(models, texts, strict=True)}
            }
        # Build it before registering: a bad name or model must not leave a registered view
        # that nothing can build (nor drop).
        build(ViewInfo(instance, kind, "shadow", definition, None, "", None), settings)
        with open_log(settings) as log, open_store(settings) as store:
            registry = ViewRegistry(store)
            info = registry.register(instance, kind, definition, until=until_at)
            projection = build(info, settings)
            opener = opener_of(settings)
            runner = ProjectionRunner(
                log, store, [projection], batch_size=batch_size, until=until_at, opener=opener
            )
            total = sum(sum(log.end_offsets(t).values()) for t in runner.topics)
            with tqdm(
                total=total, unit=" events", desc=f"replaying {instance}", file=sys.stderr
            ) as bar:
                seen = [0]

                def on_batch(stats: RunStats) -> None:
                    done = stats.applied + stats.redelivered + stats.rejected
                    bar.update(max(0, done - seen[0]))
                    seen[0] = done

                started = time.monotonic()
                stats = runner.run(follow=False, on_batch=on_batch)
                bar.update(max(0, total - bar.n))
    except ERRORS as exc:
        raise fail(exc) from exc
    seconds = time.monotonic() - started
    click.echo(
        f"built {instance} from {total} log records in {seconds:.1f} s "
        f"({stats.applied} applied); compare it, then `istore views promote {instance}`"
    )


@main.group()
def views() -> None:
    """The views: which exist, which is live."""


@views.command("list")
@click.pass_context
def views_list(ctx: click.Context) -> None:
    """Each view with its kind, status and tracked position."""
    settings = settings_of(ctx)
    try:
        with open_store(settings) as store, open_log(settings) as log:
            registry = ViewRegistry(store)
            topics = [t.name for t in log.catalog.event_topics]
            parts = [(t, p) for t in topics for p in log.partitions(t)]
            ends = {(t, p): e for t in topics for p, e in log.end_offsets(t).items()}
            infos = registry.all()
            if not infos:
                click.echo("no views yet: run `istore run`")
            for info in infos:
                tracked = store.tracked(info.instance, parts)
                lag = sum(max(0, end - tracked.get(tp, -1) - 1) for tp, end in ends.items())
                until = f" until {info.until}" if info.until else ""
                click.echo(
                    f"{info.instance}\t{info.kind}\t{info.status}{until}\tlag {lag}\t"
                    f"created {info.created_at[:19]}"
                )
                note = outdated(info, settings) if info.status == "live" else None
                if note is not None:
                    click.echo(f"  {note}")
                stale = build(info, settings).missing_columns(store)
                if stale:
                    click.echo(f"  {stale_note(info, stale)}")
    except ERRORS as exc:
        raise fail(exc) from exc


@views.command("promote")
@click.argument("name")
@click.pass_context
def views_promote(ctx: click.Context, name: str) -> None:
    """Make the view NAME the live one of its kind (the old one stays, as a shadow)."""
    try:
        with open_store(settings_of(ctx)) as store:
            info, old = ViewRegistry(store).promote(name)
    except ERRORS as exc:
        raise fail(exc) from exc
    click.echo(
        f"{info.instance} is now the live {info.kind} view" + (f" (was {old})" if old else "")
    )


@views.command("drop")
@click.argument("name")
@click.pass_context
def views_drop(ctx: click.Context, name: str) -> None:
    """Remove a shadow view and its tables."""
    settings = settings_of(ctx)
    try:
        with open_store(settings) as store:
            ViewRegistry(store).drop(name, settings)
    except ERRORS as exc:
        raise fail(exc) from exc
    click.echo(f"dropped {name}")


@main.group()
def deadletters() -> None:
    """Events a view could not apply (it raised), set aside after bounded retries."""


@deadletters.command("list")
@click.option("--all", "include_resolved", is_flag=True, help="Also those applied since")
@click.pass_context
def deadletters_list(ctx: click.Context, include_resolved: bool) -> None:
    """Show the events set aside, with their errors."""
    try:
        with open_store(settings_of(ctx)) as store:
            letters = dead_letters(store, include_resolved)
    except ERRORS as exc:
        raise fail(exc) from exc
    if not letters:
        click.echo("no events set aside")
    for d in letters:
        where = f"{d['topic']}/{d['partition']}@{d['position']}"
        state = f"resolved {d['resolved_at']}" if d["resolved_at"] else f"{d['attempts']} attempts"
        click.echo(f"{d['view_name']}\t{d['event_id']}\t{where}\t{state}\t{d['error']}")


@deadletters.command("retry")
@click.pass_context
def deadletters_retry(ctx: click.Context) -> None:
    """Apply the events set aside again (after the view was fixed)."""
    settings = settings_of(ctx)
    try:
        with open_store(settings) as store:
            registry = ViewRegistry(store)
            projections = [build(i, settings) for i in registry.all()]
            ok, failed = retry_dead_letters(store, projections, opener_of(settings))
    except ERRORS as exc:
        raise fail(exc) from exc
    click.echo(f"applied {ok}, still failing {failed}")
    if failed:
        sys.exit(1)


@main.command()
@click.argument("a")
@click.argument("b")
@click.option("--limit", type=click.IntRange(0), default=20, show_default=True, help="Leads shown")
@click.pass_context
def diff(ctx: click.Context, a: str, b: str, limit: int) -> None:
    """Compare two lead-score views: leads whose score, grade or sales-ready flag differ."""
    try:
        with open_store(settings_of(ctx)) as store:
            registry = ViewRegistry(store)
            for name in (a, b):
                if registry.get(name).kind != "lead_scores":
                    raise ViewError(f"{name} is not a lead_scores view")
            result = diff_scores(store, a, b)
    except ERRORS as exc:
        raise fail(exc) from exc
    counts = result.counts()
    click.echo(
        f"{len(result.differences)} of {result.compared} lead scores differ"
        + (": " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) if counts else "")
    )
    for d in result.differences[:limit]:
        click.echo(f"{d.lead_id}\t{d.model}\t{a}={_row(d.a)}\t{b}={_row(d.b)}")
    if len(result.differences) > limit:
        click.echo(f"... and {len(result.differences) - limit} more (--limit)")


def _row(row: tuple[object, ...] | None) -> str:
    if row is None:
        return "absent"
    score, grade, ready, status = row
    shown = f"{score:.1f}" if isinstance(score, float) else str(score)
    return f"{shown}/{grade}/{'sales-ready' if ready else 'not ready'}/{status}"
