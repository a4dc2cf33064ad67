"""The generator's entry points: check the arguments, then stream the simulation's events, or
write them as JSON lines, or estimate how many there will be."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import BinaryIO

from interaction_store.codec import encode
from interaction_store.demo.simulation import Simulation
from interaction_store.events import InteractionEvent

_PROGRESS_EVERY = 5000
_WRITE_CHUNK = 512

# Measured over seeds and windows from 1 to 365 days: a contact's profile, consent and welcome
# events, plus about 0.225 events a day of activity (contacts arrive over the window).
_FIXED_PER_CONTACT = 10.5
_PER_CONTACT_DAY = 0.225


def _check_counts(contacts: int, days: int) -> None:
    if isinstance(contacts, bool) or not isinstance(contacts, int) or contacts < 1:
        raise ValueError(f"contacts must be an integer >= 1, got {contacts!r}")
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be an integer >= 1, got {days!r}")


def _check_end(end: datetime | None) -> datetime:
    if end is None:
        return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if not isinstance(end, datetime) or end.tzinfo is None or end.utcoffset() is None:
        raise ValueError(f"end must be a timezone-aware datetime, got {end!r}")
    return end.astimezone(UTC)


def generate(
    contacts: int, seed: int = 0, end: datetime | None = None, days: int = 365
) -> Iterator[InteractionEvent]:
    """Stream demo events in ``occurred_at`` order, all within ``[end - days, end)``.

    The same arguments give the same events, byte for byte once encoded. ``end`` defaults to
    today 00:00 UTC and must be timezone-aware. Memory grows with ``contacts`` (a small state
    per contact), not with the number of events.
    """
    _check_counts(contacts, days)
    return Simulation(contacts, seed, _check_end(end), days).run()


def estimate_events(contacts: int, days: int = 365) -> int:
    """A rough count of the events ``generate`` yields (within ~15 %), for a progress bar."""
    _check_counts(contacts, days)
    return max(1, round(contacts * (_FIXED_PER_CONTACT + _PER_CONTACT_DAY * days)))


def write_jsonl(
    out: BinaryIO,
    contacts: int,
    seed: int = 0,
    end: datetime | None = None,
    days: int = 365,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Write one encoded event per line; return how many.

    ``progress(n)`` is called every few thousand events with the number written since the
    previous call (so ``tqdm.update`` fits), and once more at the end for the remainder.
    """
    events = generate(contacts, seed, end, days)
    count = 0
    reported = 0
    chunk: list[bytes] = []
    for event in events:
        chunk.append(encode(event))
        count += 1
        if len(chunk) >= _WRITE_CHUNK:
            # Batched writes: one call per few hundred lines, whatever buffering `out` has.
            out.write(b"\n".join(chunk) + b"\n")
            chunk.clear()
            if progress is not None and count - reported >= _PROGRESS_EVERY:
                progress(count - reported)
                reported = count
    if chunk:
        out.write(b"\n".join(chunk) + b"\n")
    if progress is not None and count > reported:
        progress(count - reported)
    return count
