"""The projection runner: follow the log, batch, apply, and record view rows and positions in
ONE transaction, so a view is effectively-once however often the log redelivers.

A batch goes through these steps:
1. decode each record; one that breaks the contract (published straight to Kafka, say) goes
   to the dead-letter topic with the reason, and its position still counts as done. A record
   the log says is of a type no view of this runner wants (``Projection.event_types``) is not
   decoded at all: its position counts as done too (a replay of the consent view skips the
   nine interactions in ten it has no use for). The runners that want its type, the live
   worker among them, are the ones that decode it and dead-letter it if it is bad;
2. per view, drop records at or before that view's tracked position (redeliveries);
3. in one transaction: apply the rest to every view, then track each partition's last offset
   with the eventsourcing tracking recorder (which refuses to go backwards);
4. if a view raises, retry the batch a bounded number of times, then apply event by event
   with savepoints, record the events that still fail in the dead-letter store, and go on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from eventsourcing.persistence import IntegrityError

from interaction_store.codec import (
    KEEP_OF_OVERSIZED,
    MAX_EVENT_BYTES,
    EventRejected,
    collector_paused,
)
from interaction_store.events import EVENT_TYPES, InteractionEvent
from interaction_store.log.base import DeadLetter, EventLog, LogRecord, Position
from interaction_store.privacy.sealing import Opener
from interaction_store.projection.base import Projection
from interaction_store.projection.erasure import ERASED_TYPE
from interaction_store.views.base import Cursor, TrackedPositions, ViewStore

log = logging.getLogger(__name__)

DEAD_LETTERS = "istore_dead_letters"
DEAD_LETTERS_COLUMNS = (
    "view_name TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, "
    "position BIGINT NOT NULL, event_id TEXT NOT NULL, error TEXT NOT NULL, "
    "event BYTEA, attempts INTEGER NOT NULL, recorded_at TEXT NOT NULL, "
    "resolved_at TEXT, PRIMARY KEY (view_name, event_id)"
)


def dead_letters_ddl(dialect: str) -> str:
    columns = DEAD_LETTERS_COLUMNS
    if dialect == "sqlite":
        columns = columns.replace("BYTEA", "BLOB")
    return f"CREATE TABLE IF NOT EXISTS {DEAD_LETTERS} ({columns})"


@dataclass
class RunStats:
    """What a run did, and how far behind each partition is."""

    applied: int = 0
    redelivered: int = 0
    batches: int = 0
    rejected: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    """Records of types no view of the runner wants, passed over without decoding."""
    lag: dict[tuple[str, int], int] = field(default_factory=dict)


Record = tuple[LogRecord, InteractionEvent]

_TYPE_MARKS = {t: f'"type":"{t}"'.encode() for t in EVENT_TYPES}
"""How each type appears in a record's JSON (compact, as the log stores it)."""


def poison_letter(record: LogRecord, reason: str, details: Mapping[str, object]) -> DeadLetter:
    """The dead letter of a record no view can use: its bytes (none for a tombstone; the first
    part of an oversized one, which would not fit the dead-letter topic whole)."""
    value = record.value if isinstance(record.value, bytes) else b""
    if len(value) > MAX_EVENT_BYTES:
        value = value[:KEEP_OF_OVERSIZED]
    return DeadLetter(value, reason, f"log:{record.position}", details)


def wanted_types(projections: Sequence[Projection]) -> frozenset[str] | None:
    """The event types any of the views wants; None if one of them takes any type."""
    out: set[str] = set()
    for p in projections:
        if p.event_types is None:
            return None
        out |= p.event_types
    return frozenset(out)


class ProjectionRunner:
    """Keeps a set of views up to date with the log."""

    def __init__(
        self,
        log: EventLog,
        store: ViewStore,
        projections: Sequence[Projection],
        *,
        batch_size: int = 2000,
        max_wait: float = 0.5,
        max_attempts: int = 3,
        until: datetime | None = None,
        topics: Sequence[str] | None = None,
        opener: Opener | None = None,
    ) -> None:
        """``opener`` opens the events' sealed personal fields before the views see them
        (the store's workers open theirs at start; by default the log's settings give one
        that opens the key store at the first sealed field)."""
        if not projections:
            raise ValueError("a runner needs at least one projection")
        names = [p.instance for p in projections]
        if len(set(names)) != len(names):
            raise ValueError(f"view names must be unique, got {names}")
        if batch_size < 1 or max_attempts < 1:
            raise ValueError(
                f"batch_size and max_attempts must be >= 1 ({batch_size}, {max_attempts})"
            )
        self.log = log
        self.store = store
        self.opener = opener if opener is not None else Opener.lazy(log.settings)
        self._scrub_pending = False
        self.projections = list(projections)
        self.names = sorted(names)
        self.batch_size = batch_size
        self.max_wait = max_wait
        self.max_attempts = max_attempts
        self.until = until
        self.topics = list(topics) if topics else [t.name for t in log.catalog.event_topics]
        self.stats = RunStats()
        self.tracked: dict[str, TrackedPositions] = {}
        self.wanted = wanted_types(self.projections)
        self._stop = False
        self.ensure_schema()

    # ------------------------------------------------------------------ setup and positions

    def ensure_schema(self) -> None:
        statements = [dead_letters_ddl(self.store.dialect)]
        for p in self.projections:
            statements += p.schema(self.store.dialect)
        self.store.ensure(statements)

    def partitions(self) -> list[tuple[str, int]]:
        return [(t, p) for t in self.topics for p in self.log.partitions(t)]

    def load_positions(self, partitions: Sequence[tuple[str, int]] | None = None) -> None:
        parts = list(partitions) if partitions is not None else self.partitions()
        for p in self.projections:
            self.tracked.setdefault(p.instance, {}).update(self.store.tracked(p.instance, parts))

    def start_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Where to read from: just past the least advanced view's position."""
        return {
            tp: min(self.tracked.get(p.instance, {}).get(tp, -1) for p in self.projections) + 1
            for tp in partitions
        }

    def lag(self) -> dict[tuple[str, int], int]:
        """Records not yet applied by the least advanced view, per partition."""
        out = {}
        for topic in self.topics:
            for partition, end in self.log.end_offsets(topic).items():
                done = min(
                    self.tracked.get(p.instance, {}).get((topic, partition), -1)
                    for p in self.projections
                )
                out[(topic, partition)] = max(0, end - (done + 1))
        self.stats.lag = out
        return out

    # ------------------------------------------------------------------ running

    def stop(self) -> None:
        """Finish the batch in hand, then return from :meth:`run`."""
        self._stop = True

    def run(
        self,
        *,
        follow: bool = True,
        group_id: str | None = None,
        on_batch: Callable[[RunStats], None] | None = None,
        until: Callable[[bool], bool] | None = None,
    ) -> RunStats:
        """Apply the log until :meth:`stop` (``follow``) or until caught up with where the log
        ended when the run began. ``group_id`` joins a Kafka consumer group. ``until`` is asked
        between polls (``until(False)``) and before each batch (``until(True)``): when it says
        stop, the run returns without
        applying the batch in hand (nothing of it is tracked, so the next run reads it again:
        how a worker swaps its set of views after a promotion)."""
        self._stop = False
        halted = until if until is not None else (lambda batch: False)
        parts = self.partitions()
        self.load_positions(parts)
        ends = {(t, p): end for t in self.topics for p, end in self.log.end_offsets(t).items()}

        def caught_up() -> bool:
            return not follow and all(
                min(self.tracked.get(p.instance, {}).get(tp, -1) for p in self.projections) + 1
                >= end
                for tp, end in ends.items()
            )

        if caught_up():
            return self.stats
        for batch in self._batches(
            parts, group_id, lambda: self._stop or caught_up() or halted(False)
        ):
            if batch:
                if halted(True):
                    break
                self.process(batch)
                if on_batch is not None:
                    on_batch(self.stats)
            else:
                self.track_gaps()
            if self._stop or caught_up():
                break
        return self.stats

    def _batches(
        self, parts: list[tuple[str, int]], group_id: str | None, done: Callable[[], bool]
    ) -> Iterator[list[LogRecord]]:
        if group_id is not None:
            from interaction_store.log.kafka import KafkaLog

            if not isinstance(self.log, KafkaLog):
                raise ValueError("consumer groups need the Kafka log (ISTORE_BACKEND=kafka)")

            def on_assigned(assigned: list[tuple[str, int]]) -> Mapping[tuple[str, int], int]:
                self.load_positions(assigned)  # another worker may have moved them
                return self.start_offsets(assigned)

            source = self.log.follow_group(
                group_id,
                self.topics,
                on_assigned=on_assigned,
                batch_size=self.batch_size,
                until=done,
            )
        else:
            source = self.log.follow(
                self.start_offsets(parts), self.topics, batch_size=self.batch_size, until=done
            )
        pending: list[LogRecord] = []
        first_at = 0.0
        for polled in source:
            if polled:
                if not pending:
                    first_at = time.monotonic()
                pending.extend(polled)
            # A batch closes when full, when the log has nothing more for now, or on time.
            if pending and (
                len(pending) >= self.batch_size
                or not polled
                or time.monotonic() - first_at >= self.max_wait
            ):
                yield pending
                pending = []
            elif not polled:
                yield []
        if pending:
            yield pending

    def track_gaps(self) -> None:
        """Track as done the offsets the log's reader passed that hold no record (Kafka's
        transaction markers, aborted batches): without this a view would stay one offset
        behind the log's end after each transaction, never caught up, its lag never 0."""
        gaps = {
            tp: nxt - 1
            for tp, nxt in self.log.reached().items()
            if any(nxt - 1 > self.tracked.get(p.instance, {}).get(tp, -1) for p in self.projections)
        }
        if not gaps:
            return
        try:
            with self.store.transaction() as cursor:
                self.store.exclusive(cursor, "istore-views:" + ",".join(self.names))
                for projection in self.projections:
                    done = self.tracked.get(projection.instance, {})
                    for (topic, partition), offset in gaps.items():
                        if offset > done.get((topic, partition), -1):
                            self.store.track(cursor, projection.instance, topic, partition, offset)
        except IntegrityError:  # another worker moved past them first: see where it is
            self.load_positions(sorted(gaps))
            return
        for projection in self.projections:
            done = self.tracked.setdefault(projection.instance, {})
            for tp, offset in gaps.items():
                done[tp] = max(done.get(tp, -1), offset)

    # ------------------------------------------------------------------ one batch

    def process(self, records: Sequence[LogRecord]) -> None:
        """Apply one batch (the steps in the module docstring)."""
        with collector_paused():
            self._process(records)

    def _process(self, records: Sequence[LogRecord]) -> None:
        decoded = self._decode(records)
        if any(e.type == ERASED_TYPE for _, e in decoded):
            self._scrub_pending = True
        try:
            self._apply_batch(records, decoded)
        finally:
            if self._scrub_pending:
                # What the views just forgot must not stay in the store's files (SQLite's
                # write-ahead log); busy: again after the next batch.
                self._scrub_pending = not self.store.scrub()

    def _apply_batch(self, records: Sequence[LogRecord], decoded: list[Record]) -> None:
        for attempt in range(1, self.max_attempts + 1):
            try:
                self._apply(records, decoded, one_by_one=False)
                return
            except IntegrityError:
                # Another worker tracked these partitions first (a rebalance): re-read where
                # the views are, and apply only what is still new.
                self.load_positions(
                    sorted({(r.position.topic, r.position.partition) for r in records})
                )
            except Exception as exc:
                log.warning("batch failed (attempt %d of %d): %s", attempt, self.max_attempts, exc)
                time.sleep(min(0.05 * 2**attempt, 1.0))
        self._apply(records, decoded, one_by_one=True)

    def _decode(self, records: Sequence[LogRecord]) -> list[Record]:
        out: list[Record] = []
        bad: list[DeadLetter] = []
        wanted = self.wanted
        skipped = 0
        for r in records:
            if wanted is not None:
                t = r.type
                # Skipped only when the log names a known type that the value says too: a
                # header that disagrees with its record (or none) means decoding as usual.
                mark = _TYPE_MARKS.get(t) if t is not None and t not in wanted else None
                if mark is not None and isinstance(r.value, bytes) and mark in r.value:
                    skipped += 1
                    continue
            try:
                event = r.event()
            except EventRejected as exc:
                bad.append(poison_letter(r, str(exc), exc.to_dict()))
                continue
            except Exception as exc:  # decode raises only EventRejected; this is the guard
                log.exception("record %s could not be decoded", r.position)
                bad.append(poison_letter(r, f"{type(exc).__name__}: {exc}", {}))
                continue
            if self.until is not None and event.occurred_at > self.until:
                continue  # replay up to a point in time: the position still counts as done
            out.append((r, event))
        if bad:
            self.log.dead_letter(bad)
            self.stats.rejected += len(bad)
        self.stats.skipped += skipped
        if out:
            opened = self.opener.open_events([e for _, e in out])
            out = [(r, e) for (r, _), e in zip(out, opened, strict=True)]
        return out

    def _apply(
        self, records: Sequence[LogRecord], decoded: list[Record], *, one_by_one: bool
    ) -> None:
        last: dict[tuple[str, int], int] = {}
        first: dict[tuple[str, int], int] = {}
        for r in records:
            tp = (r.position.topic, r.position.partition)
            last[tp] = max(last.get(tp, -1), r.position.offset)
            first[tp] = min(first.get(tp, r.position.offset), r.position.offset)
        applied = redelivered = dead = 0
        with self.store.transaction() as cursor:
            # One writer at a time per set of views: a contact's consent, say, folds events
            # from partitions that other workers of the group may own, and each fold reads the
            # rows the others write. Workers in a group still share the reading and decoding,
            # and take over each other's partitions when one stops.
            self.store.exclusive(cursor, "istore-views:" + ",".join(self.names))
            for projection in self.projections:
                done = self.tracked.get(projection.instance, {})
                if all(first[tp] > done.get(tp, -1) for tp in first):
                    fresh = decoded  # the usual case: nothing in the batch was applied before
                else:
                    fresh = [
                        (r, e)
                        for r, e in decoded
                        if r.position.offset
                        > done.get((r.position.topic, r.position.partition), -1)
                    ]
                redelivered += len(decoded) - len(fresh)
                wanted = [(r, e) for r, e in fresh if projection.wants(e)]
                if one_by_one:
                    dead += self._apply_each(cursor, projection, wanted)
                else:
                    projection.apply_records(cursor, [(r.position, e) for r, e in wanted])
                applied += len(wanted)
                for tp, offset in last.items():
                    if offset > done.get(tp, -1):
                        self.store.track(cursor, projection.instance, tp[0], tp[1], offset)
        for projection in self.projections:
            done = self.tracked.setdefault(projection.instance, {})
            for tp, offset in last.items():
                done[tp] = max(done.get(tp, -1), offset)
        self.stats.batches += 1
        self.stats.applied += applied - dead
        self.stats.redelivered += redelivered
        self.stats.dead_lettered += dead

    def _apply_each(self, cursor: Cursor, projection: Projection, wanted: list[Record]) -> int:
        dead = 0
        for record, event in wanted:
            cursor.execute("SAVEPOINT one_event")
            error: Exception | None = None
            for _ in range(self.max_attempts):
                try:
                    projection.apply_records(cursor, [(record.position, event)])
                    error = None
                    break
                except Exception as exc:
                    error = exc
                    cursor.execute("ROLLBACK TO SAVEPOINT one_event")
            if error is not None:
                dead += 1
                log.error("view %s skips event %s: %s", projection.instance, event.event_id, error)
                cursor.execute(
                    f"INSERT INTO {DEAD_LETTERS} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, NULL) "
                    "ON CONFLICT (view_name, event_id) DO NOTHING",
                    (
                        projection.instance,
                        record.position.topic,
                        record.position.partition,
                        record.position.offset,
                        str(event.event_id),
                        f"{type(error).__name__}: {error}",
                        record.value,
                        self.max_attempts,
                        datetime.now(UTC).isoformat(),
                    ),
                )
            cursor.execute("RELEASE SAVEPOINT one_event")
        return dead


def dead_letters(store: ViewStore, include_resolved: bool = False) -> list[dict[str, object]]:
    """The events views skipped, with their errors."""
    where = "" if include_resolved else " WHERE resolved_at IS NULL"
    columns = [
        "view_name",
        "topic",
        "partition",
        "position",
        "event_id",
        "error",
        "attempts",
        "recorded_at",
        "resolved_at",
    ]
    with store.reading() as c:
        try:
            c.execute(
                f"SELECT {', '.join(columns)} FROM {DEAD_LETTERS}{where} ORDER BY recorded_at"
            )
        except Exception:  # no runner has made the table yet
            return []
        return [dict(zip(columns, row, strict=True)) for row in c.fetchall()]


def retry_dead_letters(
    store: ViewStore, projections: Sequence[Projection], opener: Opener | None = None
) -> tuple[int, int]:
    """Apply the skipped events again (views are order-insensitive, so late is fine);
    returns (now applied, still failing). ``opener`` opens their sealed fields."""
    from interaction_store.codec import decode

    by_name = {p.instance: p for p in projections}
    ok = failed = 0
    for letter in dead_letters(store):
        projection = by_name.get(str(letter["view_name"]))
        if projection is None:
            continue
        with store.reading() as c:
            c.execute(
                f"SELECT event FROM {DEAD_LETTERS} WHERE view_name = %s AND event_id = %s",
                (letter["view_name"], letter["event_id"]),
            )
            raw = bytes(c.fetchone()[0])
        try:
            with store.transaction() as c:
                topic, partition = str(letter["topic"]), int(str(letter["partition"]))
                at = Position(topic, partition, int(str(letter["position"])))
                event = decode(raw)
                if opener is not None:
                    (event,) = opener.open_events([event])
                projection.apply_records(c, [(at, event)])
                c.execute(
                    f"UPDATE {DEAD_LETTERS} SET resolved_at = %s "
                    "WHERE view_name = %s AND event_id = %s",
                    (datetime.now(UTC).isoformat(), letter["view_name"], letter["event_id"]),
                )
            ok += 1
        except Exception as exc:
            failed += 1
            with store.transaction() as c:
                c.execute(
                    f"UPDATE {DEAD_LETTERS} SET attempts = attempts + 1, error = %s "
                    "WHERE view_name = %s AND event_id = %s",
                    (f"{type(exc).__name__}: {exc}", letter["view_name"], letter["event_id"]),
                )
    return ok, failed
