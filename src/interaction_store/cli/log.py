"""Commands for the log: publish, tail, the JSON Schemas, topics, demo data."""

from __future__ import annotations

import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import click
import orjson
from tqdm import tqdm

from interaction_store.catalog import CatalogError, StreamCatalog
from interaction_store.cli import USER_ERRORS as _USER_ERRORS
from interaction_store.cli import fail as _fail
from interaction_store.cli import main
from interaction_store.cli import settings_of as _settings
from interaction_store.ingest import Ingest
from interaction_store.log import LogError, LogRecord, open_log
from interaction_store.privacy.sealing import Opener, letter_original, sealer_of
from interaction_store.settings import Settings

EXIT_LOG_UNAVAILABLE = 75
"""``istore publish`` when the log stopped taking batches (EX_TEMPFAIL: try again later)."""

# --------------------------------------------------------------------------- contract


@main.command()
@click.option("--check", is_flag=True, help="Only report drift; exit 1 if files differ")
@click.pass_context
def schemas(ctx: click.Context, check: bool) -> None:
    """Write the JSON Schemas of every event type into streams/schemas/."""
    from interaction_store import schemas as contract

    settings = _settings(ctx)
    folder = settings.streams_dir / "schemas"
    if check:
        problems = contract.drift(folder)
        for p in problems:
            click.echo(p, err=True)
        if problems:
            raise click.ClickException(
                f"{len(problems)} schema files drift from the models: run `istore schemas`"
            )
        click.echo(f"schemas in {folder} match the models")
    else:
        written = contract.write(folder)
        click.echo(f"wrote {len(written)} schemas to {folder}")
    _check_custom(settings, folder)


def _check_custom(settings: Settings, folder: Path) -> None:
    """The custom schemas of ``folder/custom/``: each a valid JSON Schema of a custom type
    (named and checked as startup checks it), and routed to one topic by the catalog."""
    from interaction_store import schemas as contract

    problems = contract.custom_problems(folder)
    if not problems:
        try:
            customs = StreamCatalog.load(settings).custom_types
        except CatalogError as exc:
            problems = [str(exc)]
        else:
            if customs:
                click.echo(f"custom types in {folder / 'custom'}: {', '.join(customs)}")
    for p in problems:
        click.echo(p, err=True)
    if problems:
        raise click.ClickException(f"{len(problems)} custom schema(s) cannot be used: fix them")


# --------------------------------------------------------------------------- topics


@main.group()
def topics() -> None:
    """The topics of the stream catalog."""


@topics.command("list")
@click.pass_context
def topics_list(ctx: click.Context) -> None:
    """Print the catalog's topics."""
    try:
        catalog = StreamCatalog.load(_settings(ctx))
    except CatalogError as exc:
        raise _fail(exc) from exc
    for t in catalog.topics.values():
        role = "dead letters" if t is catalog.dead_letter else ", ".join(t.event_types)
        click.echo(f"{t.name}\tpartitions={t.partitions}\tretention_ms={t.retention_ms}\t{role}")


@topics.command("ensure")
@click.pass_context
def topics_ensure(ctx: click.Context) -> None:
    """Create missing topics on the broker; fail if an existing one's partitions differ."""
    settings = _settings(ctx)
    try:
        with open_log(settings) as log:
            created = log.ensure_topics()
    except _USER_ERRORS as exc:
        raise _fail(exc) from exc
    if settings.backend == "embedded":
        click.echo("embedded log: every topic is a table of the data folder, nothing to create")
    elif created:
        click.echo("created " + ", ".join(created))
    else:
        click.echo("all topics exist with the catalog's partition counts")


# --------------------------------------------------------------------------- publish / tail


@main.command()
@click.argument("file", type=click.File("rb"))
@click.option("--batch-size", type=click.IntRange(1, 1_000_000), help="Events per batch")
@click.option("--strict", is_flag=True, help="Exit 1 if any line was rejected or in conflict")
@click.pass_context
def publish(ctx: click.Context, file: BinaryIO, batch_size: int | None, strict: bool) -> None:
    """Validate and publish JSON Lines from FILE (- for standard input).

    Valid events are published; each rejected line goes to the dead-letter topic with the
    reason and its original bytes, and so does an event whose id is stored with other content
    (a conflict: the stored copy is kept). Prints accepted / duplicate / conflict / rejected
    counts.
    """
    settings = _settings(ctx)
    name = str(getattr(file, "name", "-"))
    source = "stdin" if name in ("<stdin>", "-") else name
    done = [0]  # events of batches the log took: a cell the progress callback adds to

    def advance(bar: tqdm[Any], n: int) -> None:
        done[0] += n
        bar.update(n)

    try:
        # The master key first: without it nothing is published (never in clear).
        with (
            closing(sealer_of(settings)) as sealer,
            open_log(settings) as log,
            tqdm(unit=" events", desc="publishing", file=sys.stderr, disable=None) as bar,
        ):
            ingest = Ingest(log, batch_size or settings.publish_batch_size, sealer=sealer)
            report = ingest.publish_lines(file, source, progress=lambda n: advance(bar, n))
    except LogError as exc:
        # Publishing is batch by batch, each all or nothing: what came before is stored.
        click.echo(
            f"Error: {exc}\nistore publish stopped: the first {done[0]} events of the input "
            "are stored (accepted, already there, or dead-lettered); the batch that failed and "
            "the rest are not. Running the same command again is safe: events already stored "
            "are reported as duplicates, not stored twice.",
            err=True,
        )
        sys.exit(EXIT_LOG_UNAVAILABLE)
    except _USER_ERRORS as exc:
        raise _fail(exc) from exc
    for example in report.examples:
        click.echo(example, err=True)
    if report.rejected + report.conflicts > len(report.examples):
        click.echo(
            f"... and {report.rejected + report.conflicts - len(report.examples)} more rejected "
            "or in conflict (see `istore tail deadletter`)",
            err=True,
        )
    click.echo(report.summary())
    if strict and (report.rejected or report.conflicts):
        sys.exit(1)


def _show(record: LogRecord, dead: bool, keys: Opener | None = None) -> bytes:
    value = record.value or b""  # None: a tombstone
    if dead:
        shown: dict[str, object] = {
            "position": str(record.position),
            "reason": record.headers.get("istore.reason"),
            "source": record.headers.get("istore.source"),
            "original": value.decode("utf-8", "replace"),
        }
        if keys is not None and '"sealed":true' in record.headers.get("istore.details", ""):
            # Sealed under the subject's data key: opened for the operator (null once the
            # subject is erased).
            opened = letter_original(keys.keys, record)
            shown["sealed"] = True
            shown["original"] = None if opened is None else opened.decode("utf-8", "replace")
        return orjson.dumps(shown)
    try:
        return orjson.dumps({"position": str(record.position), "event": orjson.loads(value)})
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        # Not JSON, or nested too deep to write back: shown as the text it is.
        text = value.decode("utf-8", "replace")
        return orjson.dumps({"position": str(record.position), "event": text})


@main.command()
@click.argument("topic")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events (Ctrl-C stops)")
@click.option("--from-offset", type=click.IntRange(0), default=0, help="Start offset")
@click.option("--limit", type=click.IntRange(1), help="Print at most this many")
@click.pass_context
def tail(ctx: click.Context, topic: str, follow: bool, from_offset: int, limit: int | None) -> None:
    """Print the events of TOPIC (a catalog name such as interactions, or the full name)
    as JSON Lines: {"position": ..., "event": ...} as stored (personal fields sealed); dead
    letters with reason and original (a sealed one opened with its subject's key)."""
    settings = _settings(ctx)
    out = sys.stdout.buffer
    printed = 0
    try:
        with open_log(settings) as log:
            spec = log.catalog.by_name(topic)
            dead = spec is log.catalog.dead_letter
            keys = Opener.lazy(settings) if dead else None
            if follow:
                start = {(spec.name, p): from_offset for p in log.partitions(spec.name)}
                for batch in log.follow(start, [spec.name]):
                    for record in batch:
                        out.write(_show(record, dead, keys) + b"\n")
                        printed += 1
                        if limit is not None and printed >= limit:
                            return
                    out.flush()
                return
            # Without --follow: every partition up to where it ended when we started.
            for partition, end in sorted(log.end_offsets(spec.name).items()):
                offset = from_offset
                while offset < end:
                    records = log.read(spec.name, partition, offset, min(1000, end - offset))
                    if not records:
                        break
                    for record in records:
                        out.write(_show(record, dead, keys) + b"\n")
                        printed += 1
                        if limit is not None and printed >= limit:
                            return
                    offset = records[-1].position.offset + 1
    except KeyboardInterrupt:
        pass
    except _USER_ERRORS as exc:
        raise _fail(exc) from exc
    finally:
        out.flush()


# --------------------------------------------------------------------------- demo data


@main.command("demo-data")
@click.option("--contacts", type=click.IntRange(1), default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--days", type=click.IntRange(1), default=365, show_default=True)
@click.option(
    "--end",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Last day (exclusive, UTC) of the year of data [default: today]",
)
@click.option("--output", "-o", type=click.File("wb"), default="-", help="File (default stdout)")
def demo_data(contacts: int, seed: int, days: int, end: datetime | None, output: BinaryIO) -> None:
    """Write a realistic, reproducible year of interactions as JSON Lines."""
    from interaction_store import demo

    end_at = end.replace(tzinfo=UTC) if end is not None else None
    with tqdm(
        total=demo.estimate_events(contacts, days),
        unit=" events",
        desc="generating",
        file=sys.stderr,
        disable=None,
    ) as bar:
        count = demo.write_jsonl(output, contacts, seed, end_at, days, progress=bar.update)
    click.echo(f"wrote {count} events for {contacts} contacts (seed {seed})", err=True)
