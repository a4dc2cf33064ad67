"""Publishing for upstream systems: validate each document, publish the valid ones in batches,
send each rejected one to the dead-letter topic with its reason and original bytes.

The CLI's ``istore publish`` and the HTTP ingest API go through here, so both behave alike:
a bad document never holds back its valid neighbours.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from interaction_store.codec import EventRejected, Violation, decode
from interaction_store.events import InteractionEvent
from interaction_store.log.base import DeadLetter, EventLog, Position


@dataclass(frozen=True)
class Outcome:
    """What became of one input document."""

    status: str  # "accepted" | "duplicate" | "rejected"
    position: Position | None = None
    error: EventRejected | None = None


@dataclass
class PublishReport:
    """Counts of one publishing run, with the first rejection messages."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.accepted + self.duplicates + self.rejected

    def summary(self) -> str:
        return (
            f"accepted {self.accepted}, duplicate {self.duplicates}, rejected {self.rejected}"
            f" (of {self.total})"
        )


MAX_EVENT_BYTES = 512 * 1024
"""Larger documents are rejected: Kafka's default record limit is 1 MB, and an interaction
that big is a bug upstream (an attachment pasted into a field, say)."""

KEEP_OF_OVERSIZED = 64 * 1024
"""How much of an oversized document the dead letter keeps."""


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one batch. Validating thousands of events
    makes objects that reference counting frees on its own; the collector, triggered by the
    allocation count, would scan them several times per batch and find nothing (a fifth of
    the publish time, measured)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Ingest:
    """Validates and publishes documents to an :class:`EventLog`."""

    def __init__(
        self,
        log: EventLog,
        batch_size: int = 5000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_event_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.log = log
        self.batch_size = batch_size
        self.clock = clock
        self.max_event_bytes = max_event_bytes

    def publish_documents(
        self, docs: Sequence[bytes], source: str, line_numbers: Sequence[int] | None = None
    ) -> list[Outcome]:
        """Publish one batch of JSON documents; one outcome per document, in order.
        ``source`` (and the line number, default the index + 1) is kept with dead letters."""
        with collector_paused():
            return self._publish_documents(docs, source, line_numbers)

    def _publish_documents(
        self, docs: Sequence[bytes], source: str, line_numbers: Sequence[int] | None
    ) -> list[Outcome]:
        now = self.clock()
        valid: list[tuple[int, InteractionEvent]] = []
        letters: list[tuple[int, DeadLetter, EventRejected]] = []
        for i, doc in enumerate(docs):
            try:
                if len(doc) > self.max_event_bytes:
                    raise EventRejected(
                        None,
                        None,
                        [
                            Violation(
                                "(document)",
                                f"{len(doc)} bytes",
                                "max_size",
                                f"an event may have at most {self.max_event_bytes} bytes; "
                                f"the dead letter keeps the first {KEEP_OF_OVERSIZED}",
                            )
                        ],
                    )
                valid.append((i, decode(doc)))
            except EventRejected as exc:
                if len(doc) > self.max_event_bytes:
                    doc = doc[:KEEP_OF_OVERSIZED]
                line = line_numbers[i] if line_numbers is not None else i + 1
                letter = DeadLetter(doc, str(exc), f"{source}:{line}", exc.to_dict())
                letters.append((i, letter, exc))
        outcomes: list[Outcome | None] = [None] * len(docs)
        if valid:
            for (i, _), appended in zip(
                valid, self.log.publish([e for _, e in valid], recorded_at=now), strict=True
            ):
                status = "duplicate" if appended.duplicate else "accepted"
                outcomes[i] = Outcome(status, appended.position)
        if letters:
            positions = self.log.dead_letter([letter for _, letter, _ in letters])
            for (i, _, rejection), pos in zip(letters, positions, strict=True):
                outcomes[i] = Outcome("rejected", pos, rejection)
        return [o for o in outcomes if o is not None]

    def publish_lines(
        self,
        lines: Iterable[bytes],
        source: str,
        progress: Callable[[int], None] | None = None,
        max_examples: int = 10,
    ) -> PublishReport:
        """Publish JSON Lines (blank lines are skipped); ``source`` and the line number are
        kept with each dead letter."""
        report = PublishReport()
        batch: list[bytes] = []
        numbers: list[int] = []

        def flush() -> None:
            outcomes = self.publish_documents(batch, source, numbers)
            for outcome in outcomes:
                if outcome.status == "accepted":
                    report.accepted += 1
                elif outcome.status == "duplicate":
                    report.duplicates += 1
                else:
                    report.rejected += 1
                    if len(report.examples) < max_examples:
                        report.examples.append(str(outcome.error))
            if progress is not None:
                progress(len(batch))
            batch.clear()
            numbers.clear()

        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line:
                continue
            batch.append(line)
            numbers.append(number)
            if len(batch) >= self.batch_size:
                flush()
        if batch:
            flush()
        return report
