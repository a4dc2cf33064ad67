"""Edits of the files in ``projections/`` while the store runs. ``consent.toml``'s decision rules
are read again by a running API (a broken edit keeps the rules in force and says where it
broke); its ``[opt_outs]`` and the scoring models shape the rows, so a live view keeps what it
was built with, even after a restart, and `istore views list` says a replay is needed."""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from interaction_store.projection.consent import Consent
from interaction_store.projection.registry import ViewRegistry, build
from interaction_store.settings import Settings
from interaction_store.views import open_store
from tests.api_support import auth, client, project
from tests.factories import doc
from tests.test_cli_views import istore

RECENT = datetime.now(UTC) - timedelta(hours=1)
LEVEL_RULE = 'commercial = "marketing"'


@pytest.fixture
def settings(
    embedded_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The shipped projections/ copied aside, for this test to edit (the CLI reads it too)."""
    folder = tmp_path / "projections"
    shutil.copytree(Settings().projections_dir, folder)
    monkeypatch.setenv("ISTORE_PROJECTIONS_DIR", str(folder))
    return embedded_settings.model_copy(update={"projections_dir": folder})


def edit(path: Path, old: str, new: str) -> int:
    """Replace ``old`` (once) and return the line it is on."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


def test_a_running_api_reads_consent_toml_again_and_keeps_its_rules_on_a_broken_edit(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    rules = settings.projections_dir / "consent.toml"
    contact = str(uuid.uuid4())
    url = f"/v1/contacts/{contact}/consent/decision"
    email = {"channel": "email", "purpose": "commercial"}

    def may_send() -> bool:
        r = http.get(url, params=email, headers=auth("admin"))
        assert r.status_code == 200, r.text
        allowed: bool = r.json()["may_send"]
        return allowed

    def until(allowed: bool) -> float:
        started = time.monotonic()
        while may_send() is not allowed and time.monotonic() - started < 5:
            time.sleep(0.1)
        assert may_send() is allowed
        return time.monotonic() - started

    with client(settings) as http:
        r = http.post(
            "/v1/events",
            content=orjson.dumps(
                [
                    doc("contact.created", contact, RECENT, {"email": "ada@example.com"}),
                    doc("consent.level_changed", contact, RECENT, {"level": "subscriptions"}),
                ]
            ),
            headers={**auth("publisher"), "Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text
        project(settings)
        assert may_send() is False  # commercial email needs "marketing"

        # Lowered in the file while serving: in force within about a second.
        line = edit(rules, LEVEL_RULE, 'commercial = "subscriptions"')
        assert until(True) < 3

        # A broken edit: the rules in force stay, and the log says which file and line.
        with caplog.at_level(logging.ERROR):
            edit(rules, 'commercial = "subscriptions"', "commercial = ")
            time.sleep(1.5)
            assert may_send() is True
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert any(
                str(rules) in m and f"line {line}" in m and "not valid TOML" in m for m in errors
            ), errors
            caplog.clear()
            edit(rules, "commercial = \n", 'commercial = "sometimes"\n')
            time.sleep(1.5)
            assert may_send() is True
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert any(
                f"line {line}: minimum_level.commercial = 'sometimes'" in m for m in errors
            ), errors

        # Fixed: read again.
        edit(rules, 'commercial = "sometimes"', LEVEL_RULE)
        until(False)


def test_views_say_a_replay_is_needed_when_opt_outs_or_scoring_models_change(
    settings: Settings,
) -> None:
    rules = settings.projections_dir / "consent.toml"
    istore(settings, "run", "--once")
    assert "replay needed" not in istore(settings, "views", "list").stdout

    edit(rules, '"email.unsubscribed" = true', '"email.unsubscribed" = false')
    listed = istore(settings, "views", "list").stdout
    assert (
        "  replay needed: the definition files differ from what it was built with (opt_outs); "
        "a restart keeps what it was built with; to use the files, "
        "`istore replay consent --as NAME`, compare, then `istore views promote NAME`"
    ) in listed
    with open_store(settings) as store:
        registry = ViewRegistry(store)
        live = registry.live("consent")
        assert live is not None
        # What a restarted worker builds: the opt-outs the rows were made with.
        restarted = build(live, settings)
        assert isinstance(restarted, Consent)
        assert "email.unsubscribed" in restarted.opt_outs
    istore(settings, "replay", "consent", "--as", "consent_v2")
    istore(settings, "views", "promote", "consent_v2")
    with open_store(settings) as store:
        replayed = build(ViewRegistry(store).get("consent_v2"), settings)
        assert isinstance(replayed, Consent)
        assert "email.unsubscribed" not in replayed.opt_outs
    assert "replay needed" not in istore(settings, "views", "list").stdout

    model = settings.projections_dir / "scoring" / "sales-signals.toml"
    edit(model, "# Sales signals:", "# Sales signals (a comment changes no score):")
    assert "replay needed" not in istore(settings, "views", "list").stdout
    edit(model, "sales_ready_threshold = 60", "sales_ready_threshold = 50")
    listed = istore(settings, "views", "list").stdout
    assert (
        "  replay needed: the scoring model files differ from its models (sales-signals.toml)"
    ) in listed

    line = edit(rules, "commercial_list = ", "commercial_list = = ")
    listed = istore(settings, "views", "list").stdout
    assert (
        f"  its definition files cannot be read (running servers keep what they read): {rules}"
        in listed
    )
    assert f"line {line}" in listed
