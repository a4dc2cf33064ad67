"""The simulation clock: integer milliseconds from the start of the window, and a heap of actions
that, popped in time order, streams the events they emit already sorted."""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from interaction_store.codec import decode_document
from interaction_store.events import CURRENT_VERSIONS, InteractionEvent

if TYPE_CHECKING:
    from interaction_store.demo.people import Contact
    from interaction_store.demo.simulation import Simulation

SEC = 1000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR
YEAR = 365 * DAY

Action = Callable[..., InteractionEvent | None]
Doc = dict[str, Any]

# The variant and version bits ``uuid.UUID(version=4)`` sets, applied in one step: the same ids,
# a third cheaper, and every event takes one or two.
_V4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_V4_SET = (0x8000 << 48) | (4 << 76)


class Clock:
    """Actions on a heap of (time, sequence), and the one random stream every draw comes from."""

    def __init__(self, seed: int, end: datetime, days: int) -> None:
        self.rng = random.Random(seed)
        self.t0 = end - timedelta(days=days)
        self.end = days * DAY
        # Daytime is judged on the UTC clock (the audience is in France and Spain, UTC+1/+2).
        midnight = self.t0.replace(hour=0, minute=0, second=0, microsecond=0)
        self.day_offset = (self.t0 - midnight) // timedelta(milliseconds=1)
        self.heap: list[tuple[int, int, Action, tuple[Any, ...]]] = []
        self.seq = 0
        self.now = 0

    def run(self) -> Iterator[InteractionEvent]:
        """Pop actions in order until none is left; yield the events they return."""
        heap = self.heap
        pop = heapq.heappop
        while heap:
            t, _, action, args = pop(heap)
            self.now = t
            event = action(t, *args)
            if event is not None:
                yield event

    def at(self, t: int, action: Action, *args: Any) -> None:
        """Schedule an action; anything at or after the end of the window never happens."""
        t = max(t, self.now)
        if t < self.end:
            heapq.heappush(self.heap, (t, self.seq, action, args))
            self.seq += 1

    def later(
        self,
        t: int,
        etype: str,
        source: str,
        subject: Doc,
        payload: Doc,
        corr: Doc | None = None,
        contact: Contact | None = None,
        effect: Callable[[], None] | None = None,
    ) -> None:
        """Schedule an event; its effect on the simulated state happens when it is emitted."""
        self.at(t, self._emit, etype, source, subject, payload, corr, contact, effect)

    def _emit(
        self,
        t: int,
        etype: str,
        source: str,
        subject: Doc,
        payload: Doc,
        corr: Doc | None,
        contact: Contact | None,
        effect: Callable[[], None] | None,
    ) -> InteractionEvent | None:
        if contact is not None and contact.gone:
            return None  # a merged-away duplicate produces nothing more
        event = self.event(t, etype, source, subject, payload, corr)
        if effect is not None:
            effect()
        return event

    def event(
        self, t: int, etype: str, source: str, subject: Doc, payload: Doc, corr: Doc | None = None
    ) -> InteractionEvent:
        # Through the codec's own validation, so every demo event is one the store accepts.
        doc: Doc = {
            "event_id": self.uid(),
            "type": etype,
            "schema_version": CURRENT_VERSIONS[etype],
            "occurred_at": self.t0 + timedelta(milliseconds=t),
            "source": source,
            "subject": subject,
            "payload": payload,
        }
        if corr is not None:
            doc["correlation"] = corr
        return decode_document(doc)

    def uid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128) & _V4_CLEAR | _V4_SET)

    def when(self, t: int) -> datetime:
        return self.t0 + timedelta(milliseconds=t)

    def midnight(self, t: int) -> int:
        """The start of t's day (UTC)."""
        return (t + self.day_offset) // DAY * DAY - self.day_offset

    def daytime(self, t: int) -> int:
        """Move a human action that falls at night to the next morning."""
        hour = ((t + self.day_offset) // HOUR) % 24
        if hour < 7:
            return t + (7 - hour) * HOUR + self.rng.randrange(2 * HOUR)
        if hour >= 22:
            return t + (31 - hour) * HOUR + self.rng.randrange(2 * HOUR)
        return t

    def delay(self, median: int, sigma: float, low: int, high: int) -> int:
        return min(high, max(low, int(median * self.rng.lognormvariate(0, sigma))))

    def stratified(self, k: int, count: int, span: float) -> int:
        """The k-th of count instants spread evenly, in order, over span (a random one in each
        share, so the instants neither bunch up nor fall on a grid)."""
        return int(span * (k + self.rng.random()) / count)

    def spread(self, k: int, count: int) -> int:
        """The k-th of count things that happen over the whole window."""
        return self.stratified(k, count, self.end * 0.98)


class Part:
    """A part of the simulation (the population, consent, a channel's journeys): the shared clock
    and random stream at hand, and the other parts reached through ``sim``."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.clock = sim.clock
        self.rng = sim.clock.rng
        # Bound once: scheduling and emitting are on every event's path.
        self.at = sim.clock.at
        self.later = sim.clock.later
        self.event = sim.clock.event
