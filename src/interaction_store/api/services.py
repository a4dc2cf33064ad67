"""What the HTTP routes work with: the log (ingest), the views (reads), the access config and
the metrics. Opened lazily, so a read-only service never connects to the producer side, and
one ingest-only service never opens the view database."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from functools import cached_property

from interaction_store.api.access import AccessConfig
from interaction_store.api.metrics import Metrics
from interaction_store.ingest import Ingest
from interaction_store.log import EventLog, open_log
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
        self._owned: list[EventLog | ViewStore] = []
        self._opening = threading.Lock()
        self.ingest_lock = threading.Lock()
        """Publishing is serialised: one batch at a time keeps each request's positions
        contiguous and the dedupe index consistent (Kafka batches them anyway)."""
        self.metrics = Metrics()
        self.metrics.watch_lag(self.lag)

    @property
    def access(self) -> AccessConfig:
        if self._access is None:
            with self._opening:
                if self._access is None:
                    self._access = AccessConfig.load(self.settings.access_path)
        return self._access

    def reload_access(self) -> None:
        """Read the access file again (after `istore keys create|revoke`)."""
        self._access = AccessConfig.load(self.settings.access_path)

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
        return Ingest(self.log, batch_size=self.settings.publish_batch_size, parallel=False)

    @cached_property
    def read(self) -> ReadAPI:
        return ReadAPI(self.settings, self.store)

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
