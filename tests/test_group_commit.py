"""Concurrent ingest requests share appends (group commit) and each still gets exactly its
own outcomes: nothing lost, nothing stored twice, rejections dead-lettered with their
request's source. On the embedded log and on a real Kafka broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import orjson
import pytest

from interaction_store.api.services import GroupCommit
from interaction_store.codec import EncodedEvent
from interaction_store.ingest import Ingest, Outcome, Validated
from interaction_store.log import Appended, EventLog, open_log
from interaction_store.settings import Settings
from tests.factories import raw
from tests.test_log_behaviour import read_all

REQUESTS = 8


def count_appends(
    log: EventLog, committer: list[GroupCommit], monkeypatch: pytest.MonkeyPatch
) -> list[int]:
    """Count the real log's appends (their sizes); the first append waits until every other
    request has queued behind it (so the second append must carry them all)."""
    appends: list[int] = []
    real_append = log.append

    def append(records: Sequence[EncodedEvent]) -> list[Appended]:
        if not appends:
            deadline = time.monotonic() + 30
            while len(committer[0]._queue) < REQUESTS - 1:
                assert time.monotonic() < deadline, "the other requests never queued"
                time.sleep(0.01)
        appends.append(len(records))
        return real_append(records)

    monkeypatch.setattr(log, "append", append)
    return appends


def batches() -> list[list[bytes]]:
    """REQUESTS batches of 50 valid events each, a rejected one in each, and one event that
    every request sends."""
    shared = raw(type="web.page_viewed")
    out = []
    for n in range(REQUESTS):
        docs = [raw() for _ in range(50)]
        docs.insert(n, orjson.dumps({"event_id": f"bad-{n}", "type": "email.opened"}))
        docs.append(shared)
        out.append(docs)
    return out


@pytest.mark.parametrize("backend", ["embedded", "kafka"])
def test_concurrent_requests_share_appends_and_keep_their_own_outcomes(
    backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings: Settings = request.getfixturevalue(f"{backend}_settings")
    sent = batches()
    committer: list[GroupCommit] = []
    with open_log(settings) as real:
        appends = count_appends(real, committer, monkeypatch)
        ingest = Ingest(real, parallel=False)
        committer.append(GroupCommit(ingest))
        results: dict[int, list[Outcome]] = {}
        errors: list[BaseException] = []

        def publish(n: int) -> None:
            try:
                docs = sent[n]
                results[n] = committer[0].publish(Validated(docs, ingest.validate(docs), f"r{n}"))
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=publish, args=(n,)) for n in range(REQUESTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        # Two appends for eight requests: the first one's, then everything queued behind it.
        assert len(appends) == 2
        assert sum(appends) == REQUESTS * 51

        for n, outcomes in results.items():
            statuses = [o.status for o in outcomes]
            assert len(outcomes) == len(sent[n])
            assert statuses[n] == "rejected", "each request's own bad event, where it sent it"
            assert statuses.count("rejected") == 1
            assert statuses[:n] + statuses[n + 1 : -1] == ["accepted"] * 50
        # The event every request sent is stored once; the others were told where it is.
        shared_outcomes = [results[n][-1] for n in range(REQUESTS)]
        assert sorted(o.status for o in shared_outcomes) == ["accepted"] + ["duplicate"] * (
            REQUESTS - 1
        )
        assert len({o.position for o in shared_outcomes}) == 1

        stored = [
            r.event().event_id for t in real.catalog.event_topics for r in read_all(real, t.name)
        ]
        assert len(stored) == len(set(stored)) == REQUESTS * 50 + 1
        dead = read_all(real, real.catalog.dead_letter.name)
        sources = sorted(r.headers.get("istore.source", "") for r in dead)
        assert [s.rsplit(":", 1)[0] for s in sources] == [f"r{n}" for n in range(REQUESTS)]
