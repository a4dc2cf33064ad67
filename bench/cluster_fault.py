"""Fault run: a local three-node Kafka cluster loses a node to kill -9 while events are published
(acks=all, through the store's KafkaLog) and a projection worker (`istore run --group`) applies
them. Checks that no acknowledged event is lost (each acknowledged id is in the timeline view
after catch-up), that no publish hangs (each answers within the producer's bound) and that the
views complete, with the second victim still down.

Run: ``.venv/bin/python -m bench.cluster_fault [--warmup 8] [--down 15] [--rounds 2]``.
Needs a JDK 17+ and the jars (`istore kafka jars`); the cluster lives in a temporary folder and
is stopped at the end. Prints figures, then one line of JSON; exit status 1 if a check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from kafka.admin import KafkaAdminClient

from interaction_store.codec import EncodedEvent, prepare
from interaction_store.kafka_cluster import LocalKafkaCluster
from interaction_store.log import LogError
from interaction_store.log.kafka import KafkaLog
from interaction_store.settings import Settings

PUBLISH_BOUND_S = 120.0 + 15.0
"""kafka-python's delivery.timeout.ms (120 s) plus KafkaLog's max_block_ms (15 s): the longest
a publish may take before it must answer, with an error if need be."""

CATCH_UP_TIMEOUT_S = 180.0


@dataclass
class Publisher:
    """Publishes batches until stopped; each acknowledged id and each call's duration kept."""

    log: KafkaLog
    batch: int
    contacts: list[str]
    acknowledged: set[str] = field(default_factory=set)
    calls: list[tuple[float, float, bool]] = field(default_factory=list)  # start, seconds, ok
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _sequence: int = 0

    def documents(self) -> tuple[list[str], list[EncodedEvent]]:
        ids, encoded = [], []
        base = datetime(2026, 3, 1, tzinfo=UTC)
        for _ in range(self.batch):
            self._sequence += 1
            event_id = str(uuid.uuid4())
            doc = {
                "event_id": event_id,
                "type": "web.page_viewed",
                "schema_version": 1,
                "occurred_at": (base + timedelta(seconds=self._sequence)).isoformat(),
                "source": "bench.cluster_fault",
                "subject": {"contact_id": self.contacts[self._sequence % len(self.contacts)]},
                "payload": {"url": f"https://example.com/p/{self._sequence}"},
            }
            ids.append(event_id)
            encoded.append(prepare(orjson.dumps(doc), recorded_at=datetime.now(UTC)))
        return ids, encoded

    def run(self) -> None:
        while not self.stop.is_set():
            ids, encoded = self.documents()
            # A failed batch is published again, as a client would: the stored part comes back
            # as duplicates, so every id ends up acknowledged exactly once.
            while True:
                began = time.monotonic()
                try:
                    self.log.append(encoded)
                except LogError as exc:
                    self.calls.append((began, time.monotonic() - began, False))
                    self.errors.append(str(exc)[:200])
                    if self.stop.is_set():
                        break
                    continue
                self.calls.append((began, time.monotonic() - began, True))
                self.acknowledged.update(ids)
                break


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """partition -> leader node id of ``topic``."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        [described] = admin.describe_topics([topic])
        return {p["partition_index"]: p["leader_id"] for p in described["partitions"]}
    finally:
        admin.close()


def in_views(views: Path, ids: set[str]) -> int:
    """How many of ``ids`` the live timeline holds."""
    if not views.exists():
        return 0
    db = sqlite3.connect(f"file:{views}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute("SELECT event_id FROM timeline__entries").fetchall()
    except sqlite3.OperationalError:
        return 0  # the worker has not created its tables yet
    finally:
        db.close()
    return len(ids & {r[0] for r in rows})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds before a kill")
    parser.add_argument("--down", type=float, default=15.0, help="seconds a node stays down")
    parser.add_argument("--rounds", type=int, default=2, help="kills (the last stays down)")
    parser.add_argument("--batch", type=int, default=200, help="events per publish call")
    parser.add_argument("--contacts", type=int, default=500)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="istore-cluster-fault-"))
    cluster = LocalKafkaCluster(tmp / "kafka", 3)
    worker: subprocess.Popen[bytes] | None = None
    figures: dict[str, Any] = {}
    try:
        began = time.monotonic()
        bootstrap = cluster.start()
        figures["cluster_start_s"] = round(time.monotonic() - began, 1)
        settings = Settings(
            backend="kafka", data_dir=tmp / "data", kafka_bootstrap_servers=bootstrap
        )
        log = KafkaLog(settings)
        log.ensure_topics()
        topic = log.catalog.by_name("interactions").name
        env = {
            **os.environ,
            "ISTORE_BACKEND": "kafka",
            "ISTORE_DATA_DIR": str(settings.data_dir),
            "ISTORE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        }
        with (tmp / "worker.log").open("wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "interaction_store.cli", "run", "--group", "bench"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        contacts = [str(uuid.uuid4()) for _ in range(args.contacts)]
        publisher = Publisher(log, args.batch, contacts)
        thread = threading.Thread(target=publisher.run, name="publisher")
        started = time.monotonic()
        thread.start()

        kills: list[dict[str, Any]] = []
        victim = 0
        for round_ in range(1, args.rounds + 1):
            time.sleep(args.warmup)
            led = leaders(bootstrap, topic)
            # The leader of a partition being written to, not the last victim.
            victim = next(led[p] for p in sorted(led) if led[p] not in (victim, -1))
            acked_before = len(publisher.acknowledged)
            at = time.monotonic()
            cluster.kill(victim)
            kill = {"round": round_, "node": victim, "at_s": round(at - started, 1)}
            time.sleep(args.down)
            kill["acked_while_down"] = len(publisher.acknowledged) - acked_before
            after = [c for c in publisher.calls if c[0] >= at]
            kill["first_ack_after_kill_s"] = round(
                min((c[0] + c[1] - at for c in after if c[2]), default=float("nan")), 2
            )
            if round_ < args.rounds:
                restart = time.monotonic()
                cluster.start()
                kill["restart_s"] = round(time.monotonic() - restart, 1)
            kills.append(kill)

        publisher.stop.set()
        thread.join(timeout=PUBLISH_BOUND_S)
        published_s = time.monotonic() - started
        hung = thread.is_alive()

        # The views complete with the last victim still down.
        caught = time.monotonic()
        views = settings.data_dir / "views.sqlite"
        ids = set(publisher.acknowledged)
        present = in_views(views, ids)
        while present < len(ids) and time.monotonic() - caught < CATCH_UP_TIMEOUT_S:
            if worker.poll() is not None:
                break
            time.sleep(1.0)
            present = in_views(views, ids)
        catch_up_s = time.monotonic() - caught

        seconds = [c[1] for c in publisher.calls]
        figures.update(
            {
                "acknowledged": len(ids),
                "publish_s": round(published_s, 1),
                "rate_per_s": round(len(ids) / published_s),
                "publish_calls": len(seconds),
                "failed_calls": sum(1 for c in publisher.calls if not c[2]),
                "call_p50_s": round(statistics.median(seconds), 3) if seconds else None,
                "call_p99_s": round(percentile(seconds, 0.99), 3),
                "call_max_s": round(max(seconds, default=0.0), 2),
                "publish_bound_s": PUBLISH_BOUND_S,
                "kills": kills,
                "in_views": present,
                "lost": len(ids) - present,
                "catch_up_s": round(catch_up_s, 1),
                "worker_alive": worker.poll() is None,
                "first_errors": publisher.errors[:3],
            }
        )
        checks = {
            "no acknowledged event lost": present == len(ids),
            "no publish hung": not hung and figures["call_max_s"] < PUBLISH_BOUND_S,
            "views complete with a node down": present == len(ids) and figures["worker_alive"],
        }
        figures["checks"] = checks
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        cluster.stop(timeout=15)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"cluster: 3 KRaft nodes, started in {figures['cluster_start_s']} s; topics RF 3, min ISR 2"
    )
    print(
        f"published {figures['acknowledged']} acknowledged events in {figures['publish_s']} s "
        f"({figures['rate_per_s']}/s), {figures['publish_calls']} calls of {args.batch}, "
        f"{figures['failed_calls']} failed (retried)"
    )
    print(
        f"publish call p50 {figures['call_p50_s']} s, p99 {figures['call_p99_s']} s, "
        f"max {figures['call_max_s']} s (bound {PUBLISH_BOUND_S:.0f} s)"
    )
    for kill in figures["kills"]:
        print(
            f"kill -9 node {kill['node']} at {kill['at_s']} s: first ack after "
            f"{kill['first_ack_after_kill_s']} s, {kill['acked_while_down']} acked while down"
            + (f", restarted in {kill['restart_s']} s" if "restart_s" in kill else ", left down")
        )
    print(
        f"views: {figures['in_views']} of {figures['acknowledged']} acknowledged ids after "
        f"{figures['catch_up_s']} s of catch-up; lost {figures['lost']}; worker alive: "
        f"{figures['worker_alive']}"
    )
    for name, ok in figures["checks"].items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    print(json.dumps(figures))
    return 0 if all(figures["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
