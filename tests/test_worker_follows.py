"""A running projection worker follows `istore views promote` and `drop` from another process:
reads with a consistency token are answered from the promoted view (not 504 until a restart),
and a dropped view is no longer fed. SQLite and PostgreSQL views; the worker in a consumer
group on Kafka too."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi.testclient import TestClient

from interaction_store.cli.views import ProjectionWorker
from interaction_store.log import open_log
from interaction_store.projection.runner import dead_letters
from interaction_store.settings import Settings
from interaction_store.views import open_store
from tests.api_support import auth, client
from tests.factories import doc
from tests.test_cli_views import istore, views_listed

RECENT = datetime.now(UTC) - timedelta(hours=1)


@contextmanager
def worker(settings: Settings, group: str | None = None) -> Iterator[threading.Thread]:
    """The projection worker of `istore serve`, running in a thread of this process."""
    running = ProjectionWorker(settings, batch_size=500)
    thread = threading.Thread(target=running.run, kwargs={"group": group}, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        running.stop()
        thread.join(30)
        assert not thread.is_alive(), "the worker did not stop"


def post(http: TestClient, *docs: dict[str, Any]) -> str:
    r = http.post(
        "/v1/events",
        content=orjson.dumps(list(docs)),
        headers={**auth("publisher"), "Content-Type": "application/json"},
    )
    assert r.status_code == 200 and r.json()["accepted"] == len(docs), r.text
    token: str = r.json()["consistency_token"]
    return token


def timeline_ids(http: TestClient, contact: str, token: str) -> list[str]:
    r = http.get(
        f"/v1/contacts/{contact}/timeline",
        params={"consistency": token},
        headers=auth("admin"),
    )
    assert r.status_code == 200, r.text
    return [e["event_id"] for e in r.json()["entries"]]


def tracked(settings: Settings, view: str) -> dict[tuple[str, int], int]:
    with open_log(settings) as log, open_store(settings) as store:
        parts = [(t.name, p) for t in log.catalog.event_topics for p in log.partitions(t.name)]
        return store.tracked(view, parts)


def promote_and_drop(settings: Settings, group: str | None = None) -> None:
    settings = settings.model_copy(update={"consistency_timeout": 10.0})
    contact = str(uuid.uuid4())
    istore(settings, "run", "--once")  # the views exist before the API reads them
    with client(settings) as http, worker(settings, group) as thread:
        first = doc("web.page_viewed", contact, RECENT)
        token = post(http, doc("contact.created", contact, RECENT - timedelta(days=1)), first)
        assert timeline_ids(http, contact, token) == [first["event_id"]]

        # A replay beside the live view, promoted while the worker runs.
        istore(settings, "replay", "timeline", "--as", "timeline_v2")
        second = doc("web.page_viewed", contact, RECENT + timedelta(minutes=1))
        post(http, second)  # applied by the old view, maybe before the worker notices
        promoted = istore(settings, "views", "promote", "timeline_v2")
        assert "timeline_v2 is now the live timeline view (was timeline)" in promoted.stdout
        third = doc("web.page_viewed", contact, RECENT + timedelta(minutes=2))
        token = post(http, third)
        started = time.monotonic()
        # 200 from the promoted view (504 while the worker went on feeding the demoted one),
        # and the event the demoted view applied before the switch is in the promoted one too.
        assert timeline_ids(http, contact, token) == [
            third["event_id"],
            second["event_id"],
            first["event_id"],
        ]
        assert time.monotonic() - started < 5

        # The demoted view, now a shadow, is dropped while the worker runs: it stays dropped.
        istore(settings, "views", "drop", "timeline")
        left = tracked(settings, "timeline")
        fourth = doc("web.page_viewed", contact, RECENT + timedelta(minutes=3))
        token = post(http, fourth)
        assert timeline_ids(http, contact, token)[0] == fourth["event_id"]
        assert thread.is_alive()
    assert "timeline" not in views_listed(settings)
    assert tracked(settings, "timeline") == left  # not fed since
    with open_store(settings) as store:
        assert dead_letters(store) == []


def test_a_running_worker_follows_promote_and_drop(view_settings: Settings) -> None:
    promote_and_drop(view_settings)


def test_a_worker_in_a_consumer_group_follows_promote_and_drop(kafka_settings: Settings) -> None:
    promote_and_drop(kafka_settings, group=f"g-{uuid.uuid4().hex[:8]}")
