"""A view whose tables an older version made (columns this code writes are missing) is not
written into (every event would be set aside): the worker says to replay it and updates the
others; `istore views list` says so too; a replay gives a view this version can update."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from interaction_store.cli import main
from interaction_store.projection.base import declared_columns
from interaction_store.projection.registry import ViewRegistry
from interaction_store.settings import Settings
from interaction_store.views import open_store
from tests.factories import doc


def istore(settings: Settings, *args: str) -> object:
    return CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), *args])


def test_the_columns_of_a_column_list() -> None:
    spec = 'a TEXT NOT NULL, "b" NUMERIC(10, 2), c INT DEFAULT 0, PRIMARY KEY (a, b)'
    assert declared_columns(spec) == ["a", "b", "c"]


def test_a_view_an_older_version_made_is_left_alone_and_named(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(orjson.dumps(doc("email.opened")) + b"\n")
    assert istore(embedded_settings, "publish", str(events)).exit_code == 0  # type: ignore[attr-defined]
    with open_store(embedded_settings) as store:
        registry = ViewRegistry(store)
        registry.ensure_defaults(embedded_settings)
        timeline = registry.live("timeline")
        assert timeline is not None
        # The timeline's entries table as a version without the `preview` column made it.
        with store.transaction() as c:
            c.execute(
                f"CREATE TABLE {timeline.instance}__entries (subject_kind TEXT, subject_id TEXT)"
            )
    ran = istore(embedded_settings, "run", "--once")
    assert ran.exit_code == 0, ran.output  # type: ignore[attr-defined]
    assert "replay needed: built by an older version" in ran.output  # type: ignore[attr-defined]
    assert "lacks" in ran.output and "preview" in ran.output  # type: ignore[attr-defined]
    listed = istore(embedded_settings, "views", "list").output  # type: ignore[attr-defined]
    assert "replay needed" in listed
    lags = {
        line.split("\t")[0]: line.split("\t")[3]
        for line in listed.splitlines()
        if line.count("\t") >= 3
    }
    # The stale view was not written into; the others went on.
    assert lags.pop(timeline.instance) == "lag 1"
    assert set(lags.values()) == {"lag 0"}
    # A replay builds it anew, and the promoted replay is updated again.
    assert istore(embedded_settings, "replay", "timeline", "--as", "timeline_v2").exit_code == 0  # type: ignore[attr-defined]
    assert istore(embedded_settings, "views", "promote", "timeline_v2").exit_code == 0  # type: ignore[attr-defined]
    again = istore(embedded_settings, "run", "--once")
    assert "replay needed" not in again.output  # type: ignore[attr-defined]
