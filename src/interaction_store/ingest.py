"""Publishing for upstream systems: validate each document, publish the valid ones in batches,
send each rejected one to the dead-letter topic with its reason and original bytes.

The CLI's ``istore publish`` and the HTTP ingest API go through here, so both behave alike:
a bad document never holds back its valid neighbours.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from interaction_store import custom_types
from interaction_store.codec import (
    KEEP_OF_OVERSIZED,
    MAX_EVENT_BYTES,
    EncodedEvent,
    EventRejected,
    Violation,
    collector_paused,
    prepare,
)
from interaction_store.lifeline import die_with_parent
from interaction_store.log.base import Appended, DeadLetter, EventLog, Position
from interaction_store.privacy.sealing import Sealer, refuse_sealed_input, seal_letters


@dataclass(frozen=True)
class Outcome:
    """What became of one input document."""

    status: str  # "accepted" | "duplicate" | "conflict" | "rejected"
    position: Position | None = None
    """accepted: where it was written; duplicate and conflict: where the stored copy is;
    rejected: where its dead letter is."""
    error: EventRejected | None = None
    dead_letter: Position | None = None
    """conflict: where the dead letter (the refused content, both digests) was written."""
    personal_data_dropped: bool = False
    """accepted or duplicate: its subject was erased, so it was stored without its personal
    fields."""


@dataclass
class PublishReport:
    """Counts of one publishing run, with the first rejection messages."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    conflicts: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.accepted + self.duplicates + self.rejected + self.conflicts

    def summary(self) -> str:
        conflicts = f", conflict {self.conflicts}" if self.conflicts else ""
        return (
            f"accepted {self.accepted}, duplicate {self.duplicates}{conflicts}, "
            f"rejected {self.rejected} (of {self.total})"
        )


@dataclass(frozen=True)
class Validated:
    """A batch of documents with what :meth:`Ingest.validate` made of each, and where they
    came from (kept with dead letters: ``source:line``)."""

    docs: Sequence[bytes]
    checked: Sequence[EncodedEvent | EventRejected]
    source: str
    line_numbers: Sequence[int] | None = None
    origins: Sequence[str] | None = None
    """Where each document came from, whole (``intake:3@17``), instead of ``source:line``."""

    def origin(self, i: int) -> str:
        """Where document ``i`` came from, as its dead letter says."""
        if self.origins is not None:
            return self.origins[i]
        line = self.line_numbers[i] if self.line_numbers is not None else i + 1
        return f"{self.source}:{line}"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Ingest:
    """Validates and publishes documents to an :class:`EventLog`."""

    def __init__(
        self,
        log: EventLog,
        batch_size: int = 5000,
        clock: Callable[[], datetime] = _utc_now,
        max_event_bytes: int = MAX_EVENT_BYTES,
        parallel: bool = True,
        sealer: Sealer | None = None,
    ) -> None:
        """``sealer`` seals each valid event's personal fields with its subject's data key
        before the log sees it, and drops them for an erased subject. The store's entry
        points open theirs at start (:func:`sealer_of`: no master key, no start); by default
        the log's settings give one that opens the key store at the first personal field. No
        event is stored with a personal field in clear."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.log = log
        self.batch_size = batch_size
        self.clock = clock
        self.max_event_bytes = max_event_bytes
        self.parallel = parallel
        self.sealer = sealer if sealer is not None else Sealer.lazy(log.settings)

    def publish_documents(
        self, docs: Sequence[bytes], source: str, line_numbers: Sequence[int] | None = None
    ) -> list[Outcome]:
        """Publish one batch of JSON documents; one outcome per document, in order.
        ``source`` (and the line number, default the index + 1) is kept with dead letters."""
        with collector_paused():
            checked = validate_batch(docs, self.clock(), self.max_event_bytes)
            return self._publish_checked([Validated(docs, checked, source, line_numbers)])[0]

    def validate(self, docs: Sequence[bytes]) -> list[EncodedEvent | EventRejected]:
        """The first half of :meth:`publish_documents`: each document validated and encoded
        (or why not). Callers publishing from several threads validate outside their lock."""
        return validate_batch(docs, self.clock(), self.max_event_bytes)

    def publish_validated(
        self,
        docs: Sequence[bytes],
        checked: Sequence[EncodedEvent | EventRejected],
        source: str,
        line_numbers: Sequence[int] | None = None,
    ) -> list[Outcome]:
        """The second half: publish what :meth:`validate` made of ``docs``."""
        return self.publish_many([Validated(docs, checked, source, line_numbers)])[0]

    def publish_many(self, batches: Sequence[Validated]) -> list[list[Outcome]]:
        """Publish several validated batches together: one append to the log (one commit,
        one flush) and one dead-letter write for all; the outcomes batch by batch. An event in
        two of them is stored once (the later copy is answered as a duplicate)."""
        for batch in batches:
            if len(batch.checked) != len(batch.docs):
                raise ValueError(f"{len(batch.checked)} results for {len(batch.docs)} documents")
        with collector_paused():
            return self._publish_checked(batches)

    def _publish_checked(self, batches: Sequence[Validated]) -> list[list[Outcome]]:
        valid: list[tuple[int, int]] = []
        records: list[EncodedEvent] = []
        letters: list[tuple[int, int, DeadLetter, EventRejected]] = []
        for b, batch in enumerate(batches):
            for i, item in enumerate(batch.checked):
                if isinstance(item, EncodedEvent):
                    refused = refuse_sealed_input(item)
                    if refused is None:
                        valid.append((b, i))
                        records.append(item)
                        continue
                    item = refused
                doc = batch.docs[i]
                if len(doc) > self.max_event_bytes:
                    doc = doc[:KEEP_OF_OVERSIZED]
                letter = DeadLetter(doc, str(item), batch.origin(i), item.to_dict())
                letters.append((b, i, letter, item))
        outcomes: list[list[Outcome | None]] = [[None] * len(batch.docs) for batch in batches]
        conflicts: list[tuple[int, int, Position, DeadLetter]] = []
        dropped: set[int] = set()
        if valid:
            records, dropped = self.sealer.seal(records)
        if valid:
            appended = self.log.append(records)
            for k, ((b, i), result) in enumerate(zip(valid, appended, strict=True)):
                if result.conflict:
                    letter = _conflict_letter(batches[b], i, records[k], result)
                    conflicts.append((b, i, result.position, letter))
                    continue
                status = "duplicate" if result.duplicate else "accepted"
                outcomes[b][i] = Outcome(
                    status, result.position, personal_data_dropped=k in dropped
                )
        if conflicts:
            positions = self._dead_letter([letter for *_, letter in conflicts])
            for (b, i, stored, _), pos in zip(conflicts, positions, strict=True):
                outcomes[b][i] = Outcome("conflict", stored, dead_letter=pos)
        if letters:
            positions = self._dead_letter([letter for _, _, letter, _ in letters])
            for (b, i, _, rejection), pos in zip(letters, positions, strict=True):
                outcomes[b][i] = Outcome("rejected", pos, rejection)
        return [[o for o in batch if o is not None] for batch in outcomes]

    def _dead_letter(self, letters: list[DeadLetter]) -> list[Position]:
        return self.log.dead_letter(seal_letters(self.sealer, letters))

    def publish_lines(
        self,
        lines: Iterable[bytes],
        source: str,
        progress: Callable[[int], object] | None = None,
        max_examples: int = 10,
    ) -> PublishReport:
        """Publish JSON Lines (blank lines are skipped); ``source`` and the line number are
        kept with each dead letter.

        With ``parallel`` (the default) and more than one batch of input, a worker process
        validates and encodes the next batch while this one is being published: validation
        costs as much CPU as producing, and the machine has more than one core.
        """
        report = PublishReport()
        with ExitStack() as stack:
            pool: ProcessPoolExecutor | None = None
            pending: tuple[list[bytes], list[int], Future[list[Any]] | None] | None = None
            for docs, numbers in self._batches(lines):
                if pending is None:
                    # The first batch: validate here, no worker for input that fits in one.
                    pending = (docs, numbers, None)
                    continue
                if pool is None and self.parallel:
                    # The worker ends with this process, even one killed with SIGKILL (it
                    # would wait for work for good, and keep multiprocessing's resource
                    # tracker alive); this thread, which starts it, outlives it.
                    pool = stack.enter_context(
                        ProcessPoolExecutor(
                            1,
                            mp_context=get_context("spawn"),
                            initializer=_validation_worker,
                            initargs=(os.getpid(), self.log.settings.streams_dir),
                        )
                    )
                # Hand the next batch to the worker first, then publish this one meanwhile.
                future = (
                    pool.submit(validate_batch, docs, self.clock(), self.max_event_bytes)
                    if pool is not None
                    else None
                )
                self._finish(pending, source, report, progress, max_examples)
                pending = (docs, numbers, future)
            if pending is not None:
                self._finish(pending, source, report, progress, max_examples)
        return report

    def _batches(self, lines: Iterable[bytes]) -> Iterator[tuple[list[bytes], list[int]]]:
        batch: list[bytes] = []
        numbers: list[int] = []
        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line:
                continue
            batch.append(line)
            numbers.append(number)
            if len(batch) >= self.batch_size:
                yield batch, numbers
                batch, numbers = [], []
        if batch:
            yield batch, numbers

    def _finish(
        self,
        pending: tuple[list[bytes], list[int], Future[list[Any]] | None],
        source: str,
        report: PublishReport,
        progress: Callable[[int], object] | None,
        max_examples: int,
    ) -> None:
        docs, numbers, future = pending
        with collector_paused():
            checked = (
                future.result()
                if future is not None
                else validate_batch(docs, self.clock(), self.max_event_bytes)
            )
            outcomes = self._publish_checked([Validated(docs, checked, source, numbers)])[0]
        for outcome in outcomes:
            if outcome.status == "accepted":
                report.accepted += 1
            elif outcome.status == "duplicate":
                report.duplicates += 1
            elif outcome.status == "conflict":
                report.conflicts += 1
                if len(report.examples) < max_examples:
                    report.examples.append(
                        f"conflict: the event_id is stored at {outcome.position} with other "
                        f"content; this copy went to the dead-letter topic at {outcome.dead_letter}"
                    )
            else:
                report.rejected += 1
                if len(report.examples) < max_examples:
                    report.examples.append(f"rejected: {outcome.error}")
        if progress is not None:
            progress(len(docs))


def _validation_worker(parent: int, streams_dir: Path) -> None:
    """Start a validation process: it ends with its parent, and knows the custom types its
    parent's catalog installed (a spawned process starts with none)."""
    die_with_parent(parent)
    custom_types.install_from(streams_dir)


def _conflict_letter(
    batch: Validated, i: int, record: EncodedEvent, result: Appended
) -> DeadLetter:
    """The dead letter of an event whose id is stored with other content: the refused
    document, and both digests so the sender can see which copy is which."""
    reason = (
        f"event {result.event_id} ({record.type}) conflicts with the stored copy at "
        f"{result.position}: same event_id, different content (digest "
        f"{record.digest.hex()} sent, {result.stored_digest.hex()} stored). The stored copy "
        "is kept: an event is immutable; send a correction with a new event_id"
    )
    details = {
        "event_id": str(result.event_id),
        "type": record.type,
        "rule": "conflict",
        "stored_position": str(result.position),
        "stored_digest": result.stored_digest.hex(),
        "sent_digest": record.digest.hex(),
    }
    return DeadLetter(batch.docs[i], reason, batch.origin(i), details)


def validate_batch(
    docs: Sequence[bytes], recorded_at: datetime, max_event_bytes: int = MAX_EVENT_BYTES
) -> list[EncodedEvent | EventRejected]:
    """Validate and encode each document (or say why not). A module-level function so a
    worker process can run it."""
    out: list[EncodedEvent | EventRejected] = []
    with collector_paused():
        for doc in docs:
            if len(doc) > max_event_bytes:
                out.append(
                    EventRejected(
                        None,
                        None,
                        [
                            Violation(
                                "(document)",
                                f"{len(doc)} bytes",
                                "max_size",
                                f"an event may have at most {max_event_bytes} bytes; "
                                f"the dead letter keeps the first {KEEP_OF_OVERSIZED}",
                            )
                        ],
                    )
                )
                continue
            try:
                out.append(prepare(doc, recorded_at))
            except EventRejected as exc:
                out.append(exc)
    return out
