"""`istore publish` and `istore tail` end to end, on both backends: counts, dead letters with
reasons and original bytes, and no valid line lost because a neighbour was bad."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from interaction_store.cli import main
from interaction_store.ingest import Ingest
from interaction_store.log import open_log
from interaction_store.privacy import open_key_store
from interaction_store.privacy.sealing import letter_original, opener_of
from interaction_store.settings import Settings
from tests.factories import doc, raw
from tests.test_log_behaviour import read_all


def cli_args(settings: Settings) -> list[str]:
    args = ["--backend", settings.backend, "--data-dir", str(settings.data_dir)]
    if settings.kafka_bootstrap_servers:
        args += ["--bootstrap-servers", settings.kafka_bootstrap_servers]
    if settings.topic_prefix:
        args += ["--topic-prefix", settings.topic_prefix]
    return args


def invoke(settings: Settings, *args: str, input: bytes | None = None) -> Any:
    result = CliRunner().invoke(main, [*cli_args(settings), *args], input=input)
    return result


class PublishBehaviour:
    @pytest.fixture
    def settings(self) -> Settings:
        raise NotImplementedError

    def test_bad_lines_go_to_the_dead_letter_topic_and_neighbours_are_kept(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        good = [raw(at=i) for i in range(5)]
        bad_json = b'{"event_id": "broken'
        bad_field = orjson.dumps(doc(occurred_at="2026-03-01T09:00:00"))
        lines = [good[0], bad_json, good[1], good[2], b"", bad_field, good[3], good[4], good[0]]
        path = tmp_path / "in.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        result = invoke(settings, "publish", str(path))
        assert result.exit_code == 0, result.output
        assert "accepted 5, duplicate 1, rejected 2 (of 8)" in result.stdout
        assert "occurred_at" in result.stderr and "timezone_aware" in result.stderr

        with open_log(settings) as log:
            stored = read_all(log, log.catalog.by_name("interactions").name)
            assert len(stored) == 5
            assert {r.event().event_id.hex for r in stored} == {
                orjson.loads(g)["event_id"].replace("-", "") for g in good
            }
            assert all(r.event().recorded_at is not None for r in stored)
            dead = read_all(log, log.catalog.dead_letter.name)
        with open_key_store(settings) as keys:
            assert [letter_original(keys, d) for d in dead] == [bad_json, bad_field]
        assert dead[0].headers["istore.source"] == f"{path}:2"
        assert dead[1].headers["istore.source"] == f"{path}:6"
        assert "not valid JSON" in dead[0].headers["istore.reason"]
        assert "occurred_at" in dead[1].headers["istore.reason"]
        assert orjson.loads(dead[1].headers["istore.details"])["violations"][0]["rule"] == (
            "timezone_aware"
        )

        tail = invoke(settings, "tail", "deadletter")
        assert tail.exit_code == 0, tail.output
        shown = [orjson.loads(line) for line in tail.stdout.splitlines()]
        assert [s["original"] for s in shown] == [bad_json.decode(), bad_field.decode()]

    def test_publishing_the_same_file_twice_stores_nothing_new(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        path = tmp_path / "in.jsonl"
        path.write_bytes(b"\n".join(raw(at=i) for i in range(30)))
        first = invoke(settings, "publish", "--batch-size", "7", str(path))
        again = invoke(settings, "publish", str(path))
        assert "accepted 30, duplicate 0, rejected 0" in first.stdout
        assert "accepted 0, duplicate 30, rejected 0" in again.stdout

    def test_tail_prints_decoded_events(self, settings: Settings) -> None:
        lines = b"\n".join(raw(type="email.sent", at=i) for i in range(4))
        assert invoke(settings, "publish", "-", input=lines).exit_code == 0
        tail = invoke(settings, "tail", "interactions", "--limit", "3")
        assert tail.exit_code == 0, tail.output
        shown = [orjson.loads(line) for line in tail.stdout.splitlines()]
        assert len(shown) == 3
        assert {s["event"]["type"] for s in shown} == {"email.sent"}
        assert all("@" in s["position"] for s in shown)

    def test_strict_mode_fails_on_rejections(self, settings: Settings) -> None:
        result = invoke(settings, "publish", "--strict", "-", input=b"[]\n" + raw())
        assert result.exit_code == 1
        assert "accepted 1, duplicate 0, rejected 1" in result.stdout

    def test_unknown_topic_is_named(self, settings: Settings) -> None:
        result = invoke(settings, "tail", "gossip")
        assert result.exit_code == 1
        assert "unknown topic 'gossip'" in result.output

    def test_ingest_outcomes_per_document(self, settings: Settings) -> None:
        docs = [raw(), b"{}", raw()]
        with open_log(settings) as log:
            outcomes = Ingest(log).publish_documents(docs + docs[:1], "api")
        assert [o.status for o in outcomes] == ["accepted", "rejected", "accepted", "duplicate"]
        assert outcomes[1].error is not None and outcomes[1].error.violations[0].field == "type"
        assert outcomes[3].position == outcomes[0].position

    def test_an_old_schema_version_is_stored_upcast(self, settings: Settings) -> None:
        old = doc(type="email.bounced", schema_version=1, payload={"hard": True, "reason": "gone"})
        result = invoke(settings, "publish", "-", input=orjson.dumps(old))
        assert "accepted 1," in result.stdout
        with open_log(settings) as log:
            [record] = read_all(log, log.catalog.by_name("interactions").name)
        stored = orjson.loads(record.value)
        assert stored["schema_version"] == 2
        assert stored["payload"]["bounce_type"] == "hard"
        assert stored["payload"]["reason"].startswith("enc:v1:")  # a bounce text is personal
        (opened,) = opener_of(settings).open_events([record.event()])
        assert opened.payload.reason == "gone"  # type: ignore[union-attr]

    def test_oversized_documents_are_rejected_with_the_limit(self, settings: Settings) -> None:
        huge = raw(type="email.sent", payload={"subject": "x", "preview_text": "y" * 100})
        huge = huge[:-2] + b', "padding": "' + b"z" * 600_000 + b'"}}'
        with open_log(settings) as log:
            outcomes = Ingest(log).publish_documents([huge, raw()], "api")
            [letter] = read_all(log, log.catalog.dead_letter.name)
        assert [o.status for o in outcomes] == ["rejected", "accepted"]
        assert outcomes[0].error is not None
        assert "max_size" in str(outcomes[0].error) and "524288" in str(outcomes[0].error)
        assert letter.value == huge[: 64 * 1024]


class TestEmbeddedPublish(PublishBehaviour):
    @pytest.fixture
    def settings(self, embedded_settings: Settings) -> Settings:
        return embedded_settings

    def test_demo_data_piped_into_publish(self, embedded_settings: Settings) -> None:
        env = {**os.environ, "ISTORE_DATA_DIR": str(embedded_settings.data_dir)}
        cmd = (
            f"{sys.executable} -m interaction_store.cli demo-data --contacts 30 --seed 4 "
            f"| {sys.executable} -m interaction_store.cli publish -"
        )
        out = subprocess.run(cmd, shell=True, env=env, capture_output=True, check=True)
        summary = out.stdout.decode()
        assert "rejected 0" in summary and "duplicate 0" in summary
        accepted = int(summary.split("accepted ")[1].split(",")[0])
        assert accepted > 30 * 20


@pytest.mark.kafka
class TestKafkaPublish(PublishBehaviour):
    @pytest.fixture
    def settings(self, kafka_settings: Settings) -> Settings:
        return kafka_settings

    def test_topics_ensure_reports_and_checks(self, settings: Settings) -> None:
        ok = invoke(settings, "topics", "ensure")
        assert ok.exit_code == 0 and "all topics exist" in ok.stdout
        wrong = CliRunner().invoke(
            main,
            [*cli_args(settings), "topics", "ensure"],
            env={"ISTORE_PARTITIONS": '{"consent": 5}'},
        )
        assert wrong.exit_code == 1
        assert "the catalog says 5" in wrong.output


def test_collector_pauses_overlapping_in_threads_end_with_the_last() -> None:
    import gc
    import threading

    from interaction_store.codec import collector_paused

    assert gc.isenabled()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with collector_paused():
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def second() -> None:
        a_in.wait(10)
        with collector_paused():
            b_in.set()
            a_out.wait(10)
            seen.append(gc.isenabled())  # the first pause ended; this one still runs

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen == [False]
    assert gc.isenabled()
