"""Prometheus metrics of the services: ingest counts by outcome, request latency, and each live
view's lag (read when scraped). One registry per app, so several apps in one process (tests)
keep their own counts."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LagReader = Callable[[], Mapping[str, Mapping[tuple[str, int], int]]]
"""view instance -> (topic, partition) -> events not yet applied."""


class _LagCollector(Collector):
    def __init__(self, read: LagReader) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "istore_projection_lag_events",
            "Events in the log that a live view has not applied yet",
            labels=["view", "topic", "partition"],
        )
        try:
            lags = self.read()
        except Exception:  # a scrape must not fail because the log is away for a moment
            lags = {}
        for view, parts in sorted(lags.items()):
            for (topic, partition), lag in sorted(parts.items()):
                family.add_metric([view, topic, str(partition)], lag)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.ingested = Counter(
            "istore_ingest_events",
            "Events received by the ingest API, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "istore_http_request_duration_seconds",
            "HTTP request latency by route, method and status",
            ["method", "route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        for outcome in ("accepted", "duplicate", "conflict", "rejected"):
            self.ingested.labels(outcome)

    def watch_lag(self, read: LagReader) -> None:
        self.registry.register(_LagCollector(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)
