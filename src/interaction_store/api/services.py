"""What the HTTP routes work with: the log (ingest), the views (reads), the access config and
the metrics. Opened lazily, so a read-only service never connects to the producer side, and
one ingest-only service never opens the view database."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from functools import cached_property

from interaction_store.api.access import AccessConfig, known_categories
from interaction_store.api.metrics import Metrics
from interaction_store.erasure import Eraser
from interaction_store.ingest import Ingest, Outcome, Validated
from interaction_store.log import EventLog, LogError, open_log
from interaction_store.privacy import KeyStore, open_key_store
from interaction_store.privacy.sealing import Opener, opener_of, sealer_of
from interaction_store.read import ReadAPI
from interaction_store.settings import Settings
from interaction_store.views import ViewStore, open_store


class Services:
    def __init__(
        self,
        settings: Settings,
        access: AccessConfig | None = None,
        *,
        log: EventLog | None = None,
        store: ViewStore | None = None,
    ) -> None:
        self.settings = settings
        self._access = access
        self._log = log
        self._store = store
        self._owned: list[EventLog | ViewStore | KeyStore] = []
        self._opening = threading.Lock()
        self._committer: GroupCommit | None = None
        self._eraser: Eraser | None = None
        self._read: ReadAPI | None = None
        self._read_checked = 0.0
        self._live: dict[str, str] | None = None
        self.metrics = Metrics()
        self.metrics.watch_lag(self.lag)

    @property
    def access(self) -> AccessConfig:
        if self._access is None:
            with self._opening:
                if self._access is None:
                    self._access = self._load_access()
        return self._access

    def reload_access(self) -> None:
        """Read the access file again (after `istore keys create|revoke`)."""
        self._access = self._load_access()

    def _load_access(self) -> AccessConfig:
        known = known_categories(self.settings)
        return AccessConfig.load(self.settings.access_path, known)

    @property
    def log(self) -> EventLog:
        if self._log is None:
            with self._opening:
                if self._log is None:
                    self._log = open_log(self.settings)
                    self._owned.append(self._log)
        return self._log

    @property
    def store(self) -> ViewStore:
        if self._store is None:
            with self._opening:
                if self._store is None:
                    self._store = open_store(self.settings)
                    self._owned.append(self._store)
        return self._store

    @cached_property
    def ingest(self) -> Ingest:
        # Requests are small batches: validating in the request's own thread beats handing
        # them to a worker process.
        sealer = sealer_of(self.settings)
        self._owned.append(sealer.keys)
        return Ingest(
            self.log,
            batch_size=self.settings.publish_batch_size,
            parallel=False,
            sealer=sealer,
        )

    @cached_property
    def opener(self) -> Opener:
        """Opens personal fields for an export (the master key and key store, opened once)."""
        opener = opener_of(self.settings)
        self._owned.append(opener.keys)
        return opener

    @property
    def eraser(self) -> Eraser:
        """Opened at the first erasure: it needs the master key and the key store, which a
        store that never erases need not have."""
        if self._eraser is None:
            log, store = self.log, self.store  # each takes the lock below
            with self._opening:
                if self._eraser is None:
                    keys = open_key_store(self.settings)
                    self._owned.append(keys)
                    self._eraser = Eraser(log, store, keys)
        return self._eraser

    @property
    def committer(self) -> GroupCommit:
        if self._committer is None:
            with self._opening:
                if self._committer is None:
                    self._committer = GroupCommit(self.ingest)
        return self._committer

    REGISTRY_EVERY = 1.0
    """Seconds between looks at which views are live (``istore views promote`` while serving)."""

    @property
    def read(self) -> ReadAPI:
        """The read API of the live views. A promotion (or a drop) while serving gets a new
        one, at most ``REGISTRY_EVERY`` seconds later: a cached view would go on answering
        from the demoted instance, or fail once its tables are dropped. A new object rather
        than ``ReadAPI.refresh``, so a request under way keeps the views it started with."""
        now = time.monotonic()
        api = self._read
        if api is not None and now - self._read_checked < self.REGISTRY_EVERY:
            return api
        store = self.store  # before the lock: opening the store takes it too
        with self._opening:
            api = self._read
            if api is None or now - self._read_checked >= self.REGISTRY_EVERY:
                if api is None:
                    api = ReadAPI(self.settings, store)
                live: dict[str, str] | None
                try:
                    live = {i.kind: i.instance for i in api.registry.all() if i.status == "live"}
                except Exception:  # the store away for a moment: keep the views known
                    live = self._live
                if live != self._live:
                    api = ReadAPI(self.settings, store) if self._live is not None else api
                    self._live = live
                self._read = api
                self._read_checked = now
        return api

    def read_now(self) -> ReadAPI:
        """:attr:`read` after a fresh look at the registry: a read with a consistency token
        waits on the views live now, and must then read those same views, not ones demoted
        less than ``REGISTRY_EVERY`` seconds ago (which stopped applying at the promotion)."""
        with self._opening:
            self._read_checked = float("-inf")
        return self.read

    def event_partitions(self) -> list[tuple[str, int]]:
        log = self.log
        return [(t.name, p) for t in log.catalog.event_topics for p in log.partitions(t.name)]

    def lag(self) -> Mapping[str, Mapping[tuple[str, int], int]]:
        """Each live view's events not yet applied, per partition."""
        if self._store is None:
            return {}
        log = self.log
        ends = {
            (t.name, p): end
            for t in log.catalog.event_topics
            for p, end in log.end_offsets(t.name).items()
        }
        out: dict[str, dict[tuple[str, int], int]] = {}
        for info in self.read.registry.all():
            if info.status != "live":
                continue
            tracked = self.store.tracked(info.instance, ends)
            out[info.instance] = {
                tp: max(0, end - (tracked.get(tp, -1) + 1)) for tp, end in ends.items()
            }
        return out

    def close(self) -> None:
        for resource in reversed(self._owned):
            resource.close()
        self._owned.clear()


GROUP_EVENTS = 20_000
"""Most events one group commit publishes (a request's batch is never split)."""


class _Waiting:
    __slots__ = ("batch", "done", "error", "outcomes")

    def __init__(self, batch: Validated) -> None:
        self.batch = batch
        self.done = False
        self.outcomes: list[Outcome] = []
        self.error: BaseException | None = None


class GroupCommit:
    """Publishes the batches of concurrent requests together. One request at a time holds
    the log; the batches that arrived meanwhile go in its next append, all in one commit
    (embedded) or one flush (Kafka), instead of one each. Each request still gets its own
    outcomes; an event sent by two at once is stored once."""

    def __init__(self, ingest: Ingest, max_events: int = GROUP_EVENTS) -> None:
        self.ingest = ingest
        self.max_events = max_events
        self._queue: list[_Waiting] = []
        self._queue_lock = threading.Lock()
        self._publishing = threading.Lock()

    def publish(self, batch: Validated) -> list[Outcome]:
        mine = _Waiting(batch)
        with self._queue_lock:
            self._queue.append(mine)
        while not mine.done:
            with self._publishing:
                if mine.done:  # published by the request that held the log before
                    break
                self._publish_waiting()
        if mine.error is not None:
            if isinstance(mine.error, LogError):
                raise LogError(str(mine.error)) from mine.error
            raise mine.error
        return mine.outcomes

    def _publish_waiting(self) -> None:
        with self._queue_lock:
            group: list[_Waiting] = []
            size = 0
            for waiting in self._queue:
                if group and size + len(waiting.batch.docs) > self.max_events:
                    break
                group.append(waiting)
                size += len(waiting.batch.docs)
            del self._queue[: len(group)]
        try:
            results = self.ingest.publish_many([w.batch for w in group])
        except BaseException as exc:
            if isinstance(exc, LogError):
                # The log is not taking batches: the requests that queued meanwhile get the
                # same answer now rather than one publish timeout later each.
                with self._queue_lock:
                    group += self._queue
                    self._queue.clear()
            for waiting in group:
                waiting.error = exc
                waiting.done = True
            return
        for waiting, outcomes in zip(group, results, strict=True):
            waiting.outcomes = outcomes
            waiting.done = True
