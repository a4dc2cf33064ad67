"""`istore run`, `replay`, `views`, `diff`, `deadletters`, `show` and `sample` end to end on
demo data: live views that a replay reproduces, a changed model compared and promoted, views as
of an instant, the sales-ready outbox published once, events set aside and retried, and errors
that name the bad value. SQLite and PostgreSQL views; one test on Kafka with PostgreSQL."""

from __future__ import annotations

import functools
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pydantic import SecretStr

from interaction_store import demo
from interaction_store.cli import main
from interaction_store.codec import decode
from interaction_store.events import InteractionEvent, LeadSalesReady
from interaction_store.log import open_log
from interaction_store.projection import view_checksum
from interaction_store.projection.base import Projection
from interaction_store.projection.consent import Consent, consent_state
from interaction_store.projection.registry import KINDS, ViewError, ViewRegistry, build
from interaction_store.projection.scoring import LeadScore, lead_scores
from interaction_store.projection.timeline import Timeline
from interaction_store.read import ReadAPI
from interaction_store.settings import Settings
from interaction_store.views import ViewStore, open_store
from interaction_store.views.base import Cursor
from tests.factories import event
from tests.test_log_behaviour import read_all
from tests.test_publish import cli_args

END = datetime(2026, 3, 1, tzinfo=UTC)
"""The demo year ends here, so the data (and every count below) is the same on every run."""
SINCE = END - timedelta(days=400)
CONTACTS = 60
SEED = 11
SCORING = Settings().projections_dir / "scoring"
LIVE_KINDS = ("consent", "lead_scores", "profiles", "subjects", "timeline")


# --------------------------------------------------------------------------- helpers


@functools.cache
def demo_lines(end: datetime = END, contacts: int = CONTACTS, seed: int = SEED) -> bytes:
    """The demo data as JSON Lines (generated once per session and arguments)."""
    out = BytesIO()
    demo.write_jsonl(out, contacts, seed, end)
    return out.getvalue()


def demo_events(end: datetime = END) -> list[InteractionEvent]:
    return [decode(line) for line in demo_lines(end).splitlines()]


def istore(settings: Settings, *args: str, code: int = 0) -> Result:
    """Run the command line against these settings (views in PostgreSQL if they say so) and
    check its exit code."""
    dsn = settings.postgres_dsn
    pg = ["--postgres-dsn", dsn.get_secret_value()] if dsn is not None else []
    result = CliRunner().invoke(main, [*cli_args(settings), *pg, *args])
    assert result.exit_code == code, (result.output, result.exception)
    return result


def load_demo(settings: Settings, tmp_path: Path, end: datetime = END) -> Result:
    """Publish the demo data with `istore publish`, then `istore run --once`."""
    path = tmp_path / "demo.jsonl"
    path.write_bytes(demo_lines(end))
    published = istore(settings, "publish", str(path))
    assert ", duplicate 0, rejected 0" in published.stdout
    return istore(settings, "run", "--once")


def applied(result: Result) -> int:
    match = re.search(r"^applied (\d+) events in (\d+) batches", result.stdout, re.M)
    assert match, result.output
    return int(match.group(1))


def views_listed(settings: Settings) -> dict[str, list[str]]:
    """`istore views list` as name -> [kind, status, lag, created]."""
    out = istore(settings, "views", "list").stdout
    return {
        line.split("\t")[0]: line.split("\t")[1:]
        for line in out.splitlines()
        if not line.startswith(" ")  # a note under a view
    }


def logged_events(settings: Settings) -> list[InteractionEvent]:
    with open_log(settings) as log:
        return [r.event() for t in log.catalog.event_topics for r in read_all(log, t.name)]


def sales_ready_in_log(settings: Settings) -> list[InteractionEvent]:
    with open_log(settings) as log:
        records = read_all(log, log.catalog.by_name("profiles").name)
    return [r.event() for r in records if r.event().type == "lead.sales_ready"]


def projection(store: ViewStore, settings: Settings, name: str) -> Projection:
    return build(ViewRegistry(store).get(name), settings)


def live(store: ViewStore, settings: Settings, kind: str) -> Projection:
    info = ViewRegistry(store).live(kind)
    assert info is not None, kind
    return build(info, settings)


def tables(store: ViewStore) -> set[str]:
    with store.reading() as c:
        if store.dialect == "sqlite":
            c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            c.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                ("public",),
            )
        return {str(r[0]) for r in c.fetchall()}


def rows(store: ViewStore, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    with store.reading() as c:
        c.execute(sql, params)
        return [tuple(r) for r in c.fetchall()]


def changed_model(folder: Path, threshold: int, opened_points: int) -> Path:
    """A copy of the shipped marketing-engagement model with another threshold and other
    points for an opened email."""
    text = (SCORING / "marketing-engagement.toml").read_text(encoding="utf-8")
    text, n = re.subn(
        r"(?m)^sales_ready_threshold = 100$", f"sales_ready_threshold = {threshold}", text
    )
    assert n == 1
    text, n = re.subn(
        r'(?m)^(id = "relevant-email-opened"\n.*\n)points = 3$',
        rf"\g<1>points = {opened_points}",
        text,
    )
    assert n == 1
    path = folder / "marketing-engagement.toml"
    path.write_text(text, encoding="utf-8")
    return path


def scores_by_lead(store: ViewStore, instance: str) -> dict[tuple[str, str], LeadScore]:
    """Every lead's scores in a view, read through `lead_scores` lead by lead."""
    leads = [r[0] for r in rows(store, f"SELECT DISTINCT lead_id FROM {instance}__scores")]
    return {
        (s.lead_id, s.model): s
        for lead in leads
        for s in lead_scores(store, lead, instance=instance)
    }


# --------------------------------------------------------------------------- run


def test_run_once_builds_the_live_views_then_applies_only_what_is_new(
    view_settings: Settings, tmp_path: Path
) -> None:
    first = load_demo(view_settings, tmp_path)
    assert "set aside 0" in first.stdout and "rejected 0" in first.stdout
    # Every live view saw each event of the log it wants, once (the sales-ready events the
    # outbox published during the run included).
    with open_store(view_settings) as store:
        views = [live(store, view_settings, kind) for kind in LIVE_KINDS]
    logged = logged_events(view_settings)
    assert applied(first) == sum(v.wants(e) for v in views for e in logged)

    listed = views_listed(view_settings)
    assert sorted(listed) == sorted(LIVE_KINDS)
    for name, (kind, status, lag, _) in listed.items():
        assert (kind, status, lag) == (name, "live", "lag 0")

    again = istore(view_settings, "run", "--once")
    assert again.stdout.startswith("applied 0 events in 0 batches")

    # New events for a known contact: the next run applies exactly these.
    contact = next(e.subject.contact_id for e in logged if e.type == "contact.created")
    assert contact is not None
    new = [
        event(type="email.sent", contact=contact, at=END - timedelta(hours=3)),
        event(type="web.page_viewed", contact=contact, at=END - timedelta(hours=2)),
        event(
            type="consent.preferences_changed",
            contact=contact,
            at=END - timedelta(hours=1),
            payload={"allow_bulk_email": False},
        ),
    ]
    with open_log(view_settings) as log:
        log.publish(new)
    third = istore(view_settings, "run", "--once")
    assert applied(third) == sum(v.wants(e) for v in views for e in new)
    assert "redelivered 0" in third.stdout
    assert {lag for _, _, lag, _ in views_listed(view_settings).values()} == {"lag 0"}
    with ReadAPI(view_settings) as api:
        page = api.timeline(contact_id=contact, since=SINCE, now=END, limit=2)
        assert [e.event_id for e in page.entries] == [str(new[1].event_id), str(new[0].event_id)]
        assert page.entries[1].preview["subject"] == "Spring webinar"
        assert not api.consent(contact).preferences["allow_bulk_email"].value


def test_a_replay_of_each_live_definition_equals_the_live_view(
    view_settings: Settings, tmp_path: Path
) -> None:
    load_demo(view_settings, tmp_path)
    for kind in LIVE_KINDS:
        out = istore(view_settings, "replay", kind, "--as", f"{kind}_check").stdout
        assert out.startswith(f"built {kind}_check from ")
        assert f"istore views promote {kind}_check" in out
    listed = views_listed(view_settings)
    with open_store(view_settings) as store:
        for kind in LIVE_KINDS:
            assert listed[f"{kind}_check"][:3] == [kind, "shadow", "lag 0"]
            replayed = projection(store, view_settings, f"{kind}_check")
            original = live(store, view_settings, kind)
            assert replayed.instance != original.instance
            assert view_checksum(store, replayed) == view_checksum(store, original), kind
    diff = istore(view_settings, "diff", "lead_scores", "lead_scores_check").stdout
    assert re.match(r"0 of \d+ lead scores differ\n", diff)


# --------------------------------------------------------------------------- a changed model


def test_a_changed_model_is_replayed_compared_promoted_and_dropped(
    view_settings: Settings, tmp_path: Path
) -> None:
    load_demo(view_settings, tmp_path)
    model = changed_model(tmp_path, threshold=40, opened_points=7)
    signals = SCORING / "sales-signals.toml"
    out = istore(
        view_settings,
        "replay",
        "lead_scores",
        "--model",
        str(model),
        "--model",
        str(signals),
        "--as",
        "scores_v2",
    ).stdout
    assert out.startswith("built scores_v2 from ")

    # `istore diff` against a comparison lead by lead through `lead_scores`.
    result = istore(view_settings, "diff", "lead_scores", "scores_v2", "--limit", "100000")
    with open_store(view_settings) as store:
        before = scores_by_lead(store, "lead_scores")
        after = scores_by_lead(store, "scores_v2")
    differing: dict[tuple[str, str], list[str]] = {}
    for key in before.keys() | after.keys():
        a, b = before.get(key), after.get(key)
        if a is None or b is None:
            differing[key] = ["presence"]
            continue
        fields = [
            name
            for name, x, y in (
                ("grade", a.grade, b.grade),
                ("sales_ready", a.sales_ready, b.sales_ready),
                (
                    "score",
                    None if a.score is None else round(a.score, 6),
                    None if b.score is None else round(b.score, 6),
                ),
                ("status", a.status, b.status),
            )
            if x != y
        ]
        if fields:
            differing[key] = fields
    counts = Counter(f for fields in differing.values() for f in fields)
    assert counts["sales_ready"] > 0 and counts["score"] > 0
    assert {model for _, model in differing} == {"marketing-engagement"}  # the other is as it was
    head, *lines = result.stdout.splitlines()
    expected = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    assert (
        head
        == f"{len(differing)} of {len(before.keys() | after.keys())} lead scores differ: {expected}"
    )
    assert {tuple(line.split("\t")[:2]) for line in lines} == set(differing)
    lead, _ = next(k for k, f in differing.items() if "sales_ready" in f)
    line = next(x for x in lines if x.startswith(f"{lead}\tmarketing-engagement\t"))
    assert "lead_scores=" in line and "/not ready/scored" in line
    assert "scores_v2=" in line and "/sales-ready/scored" in line
    limited = istore(view_settings, "diff", "lead_scores", "scores_v2", "--limit", "2").stdout
    assert limited.splitlines()[-1] == f"... and {len(differing) - 2} more (--limit)"

    # Promote: the read API follows after a refresh.
    with ReadAPI(view_settings) as api:
        assert api.lead_scores(lead) == lead_scores(api.store, lead, instance="lead_scores")
        promoted = istore(view_settings, "views", "promote", "scores_v2").stdout
        assert promoted == "scores_v2 is now the live lead_scores view (was lead_scores)\n"
        api.refresh()
        now_read = api.lead_scores(lead)
        assert now_read == lead_scores(api.store, lead, instance="scores_v2")
        engagement = next(s for s in now_read if s.model == "marketing-engagement")
        assert engagement.sales_ready and engagement.threshold == 40
    listed = views_listed(view_settings)
    assert listed["scores_v2"][:2] == ["lead_scores", "live"]
    assert listed["lead_scores"][:2] == ["lead_scores", "shadow"]

    # A view built up to an instant cannot serve.
    istore(view_settings, "replay", "lead_scores", "--until", "2025-09-01", "--as", "scores_sept")
    refused = istore(view_settings, "views", "promote", "scores_sept", code=1)
    assert (
        "scores_sept was built up to 2025-09-01T00:00:00+00:00, not to the end of the log"
        in refused.output
    )
    assert "cannot serve as the live one" in refused.output
    again = istore(view_settings, "views", "promote", "scores_v2", code=1)
    assert "scores_v2 is live already" in again.output

    # Drop: the live one is refused; a shadow's tables go, the others' stay.
    kept = istore(view_settings, "views", "drop", "scores_v2", code=1)
    assert "scores_v2 is the live lead_scores view: promote another one first" in kept.output
    with open_store(view_settings) as store:
        old_tables = {
            t for t in tables(store) if t.startswith(("lead_scores__", "lead_scores_profiles__"))
        }
        assert {
            "lead_scores__scores",
            "lead_scores__outbox",
            "lead_scores_profiles__leads",
        } <= old_tables
    assert istore(view_settings, "views", "drop", "lead_scores").stdout == "dropped lead_scores\n"
    with open_store(view_settings) as store:
        left = tables(store)
        assert not left & old_tables
        assert {"scores_v2__scores", "scores_sept__scores", "profiles__leads"} <= left
        with pytest.raises(ViewError, match="no view named 'lead_scores'"):
            ViewRegistry(store).get("lead_scores")
    assert "lead_scores" not in views_listed(view_settings)
    with ReadAPI(view_settings) as api:
        assert api.lead_scores(lead) == now_read


# --------------------------------------------------------------------------- --until


def test_a_replay_until_an_instant_holds_only_what_occurred_up_to_it(
    view_settings: Settings, tmp_path: Path
) -> None:
    load_demo(view_settings, tmp_path)
    until = datetime(2025, 10, 1, 12, tzinfo=UTC)
    for kind in ("timeline", "consent"):
        istore(
            view_settings,
            "replay",
            kind,
            "--until",
            "2025-10-01T14:00:00+0200",
            "--as",
            f"{kind}_oct",
        )
    listed = views_listed(view_settings)
    assert listed["timeline_oct"][1] == "shadow until 2025-10-01T14:00:00+02:00"

    events = demo_events()
    busy = Counter(
        e.subject.contact_id for e in events if e.subject.contact_id and e.occurred_at <= until
    )
    contacts = [c for c, _ in busy.most_common(5)]
    assert any(e.occurred_at > until for e in events if e.subject.contact_id in contacts), (
        "the chosen contacts should have events after the instant too"
    )
    with open_store(view_settings) as store:
        live_timeline = live(store, view_settings, "timeline")
        replayed = projection(store, view_settings, "timeline_oct")
        live_consent = live(store, view_settings, "consent")
        consent_oct = projection(store, view_settings, "consent_oct")
        assert isinstance(live_timeline, Timeline) and isinstance(replayed, Timeline)
        assert isinstance(live_consent, Consent) and isinstance(consent_oct, Consent)
        for contact in contacts:
            kept = replayed.query(store, contact_id=contact, since=SINCE, limit=500).entries
            everything = live_timeline.query(store, contact_id=contact, since=SINCE, limit=500)
            assert kept and all(e.occurred_at <= until for e in kept)
            assert [e.event_id for e in kept] == [
                e.event_id for e in everything.entries if e.occurred_at <= until
            ]
            assert len(everything.entries) > len(kept)
            # Consent replayed up to the instant is the live view's consent as of it.
            then = consent_state(store, contact, until, view=live_consent)
            assert consent_state(store, contact, view=consent_oct) == then.__class__(
                **{**then.__dict__, "as_of": None}
            )


# --------------------------------------------------------------------------- the outbox


def test_the_outbox_publishes_each_sales_ready_event_once_and_shadows_publish_none(
    view_settings: Settings, tmp_path: Path
) -> None:
    load_demo(view_settings, tmp_path)
    published = sales_ready_in_log(view_settings)
    ids = [e.event_id for e in published]
    assert published and len(set(ids)) == len(ids)
    with open_store(view_settings) as store:
        outbox = {r[0] for r in rows(store, "SELECT event_id FROM lead_scores__outbox")}
        assert {str(i) for i in ids} == outbox
        ready = rows(store, "SELECT lead_id, model FROM lead_scores__scores WHERE sales_ready")
        assert len(ready) == len(published)
        for e in published:
            assert isinstance(e.payload, LeadSalesReady) and e.subject.lead_id is not None
            model = e.payload.model
            [score] = [s for s in lead_scores(store, e.subject.lead_id) if s.model == model]
            assert score.sales_ready and score.sales_ready_at == e.occurred_at
    istore(view_settings, "run", "--once")
    assert len(sales_ready_in_log(view_settings)) == len(published)

    # A replay with a lower threshold has more sales-ready leads, and publishes nothing.
    lower = changed_model(tmp_path, threshold=40, opened_points=3)
    istore(
        view_settings,
        "replay",
        "lead_scores",
        "--model",
        str(lower),
        "--model",
        str(SCORING / "sales-signals.toml"),
        "--as",
        "scores_low",
    )
    with open_store(view_settings) as store:
        shadow_outbox = {r[0] for r in rows(store, "SELECT event_id FROM scores_low__outbox")}
    assert shadow_outbox > outbox
    istore(view_settings, "run", "--once")
    assert len(sales_ready_in_log(view_settings)) == len(published)

    # Promoted, it publishes the events the old live view had not, and none twice.
    istore(view_settings, "views", "promote", "scores_low")
    istore(view_settings, "run", "--once")
    after = [str(e.event_id) for e in sales_ready_in_log(view_settings)]
    assert len(after) == len(set(after)) and set(after) == shadow_outbox
    listed = views_listed(view_settings)
    assert {lag for _, status, lag, _ in listed.values() if status == "live"} == {"lag 0"}
    assert listed["lead_scores"][1:3] == ["shadow", f"lag {len(after) - len(published)}"]


# --------------------------------------------------------------------------- dead letters


class Poisoned(Projection):
    """A test-only view that cannot take events from the `crm-poison` source until fixed."""

    kind = "poison"
    fixed = False

    @property
    def tables(self) -> dict[str, str]:
        return {"seen": "event_id TEXT PRIMARY KEY, type TEXT NOT NULL"}

    def apply(self, cursor: Cursor, events: Sequence[InteractionEvent]) -> None:
        for e in events:
            if e.source == "crm-poison" and not Poisoned.fixed:
                raise ValueError(f"cannot read {e.type} from {e.source}")
        cursor.executemany(
            f"INSERT INTO {self.table('seen')} VALUES (%s, %s) ON CONFLICT DO NOTHING",
            [(str(e.event_id), e.type) for e in events],
        )


def test_events_a_view_cannot_apply_are_listed_and_retried_after_the_fix(
    view_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(KINDS, "poison", f"{__name__}:Poisoned")
    monkeypatch.setattr(Poisoned, "fixed", False)
    contact = uuid.uuid4()
    poison = event(type="contact.created", contact=contact, at=5, source="crm-poison")
    fine = [event(type="email.opened", contact=contact, at=i) for i in range(3)]
    with open_log(view_settings) as log:
        [appended] = log.publish([poison])
        log.publish(fine)
    ran = istore(view_settings, "run", "--once")
    assert "set aside 1)" in ran.stdout
    position = appended.position

    listed = istore(view_settings, "deadletters", "list").stdout.splitlines()
    assert listed == [
        f"poison\t{poison.event_id}\t{position.topic}/{position.partition}@{position.offset}\t"
        "3 attempts\tValueError: cannot read contact.created from crm-poison"
    ]
    with open_store(view_settings) as store:
        assert len(rows(store, "SELECT * FROM poison__seen")) == 3  # its neighbours went in
        assert rows(store, "SELECT first_name FROM profiles__contacts") == [("Ada",)]

    still = istore(view_settings, "deadletters", "retry", code=1)
    assert still.stdout == "applied 0, still failing 1\n"
    assert "\t4 attempts\t" in istore(view_settings, "deadletters", "list").stdout

    monkeypatch.setattr(Poisoned, "fixed", True)
    assert istore(view_settings, "deadletters", "retry").stdout == "applied 1, still failing 0\n"
    assert istore(view_settings, "deadletters", "list").stdout == "no events set aside\n"
    resolved = istore(view_settings, "deadletters", "list", "--all").stdout
    assert f"poison\t{poison.event_id}\t" in resolved and "\tresolved 20" in resolved
    with open_store(view_settings) as store:
        assert (str(poison.event_id), "contact.created") in rows(
            store, "SELECT * FROM poison__seen"
        )
    assert istore(view_settings, "deadletters", "retry").stdout == "applied 0, still failing 0\n"


# --------------------------------------------------------------------------- show and sample


def test_sample_and_show_print_what_the_read_api_reads(
    view_settings: Settings, tmp_path: Path
) -> None:
    # Timelines show a window back from today: this data ends today, whenever the test runs.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    load_demo(view_settings, tmp_path, end=today)
    out = istore(view_settings, "sample").stdout
    lines = out.splitlines()
    head = re.fullmatch(
        r"Timeline of contact (\S+) \((\d+) interactions in the window\):", lines[0]
    )
    assert head, out
    contact, total = head.group(1), int(head.group(2))
    lead_line = next(x for x in lines if x.startswith("Lead "))
    lead = lead_line.split()[1]
    with ReadAPI(view_settings) as api:
        page = api.timeline(contact_id=contact, limit=8)
        assert total == page.total and total > 0
        for entry in page.entries:
            assert f"  {entry.occurred_at:%Y-%m-%d %H:%M}  {entry.type}" in out
        state = api.consent(contact)
        assert "Consent:" in out and f"  level = {state.level.value}  " in out
        for name, recorded in state.preferences.items():
            assert f"  {name} = {recorded.value}  " in out
        verdict = "yes" if api.may_send(contact, "email", "commercial").allowed else "no"
        assert f"May we send a marketing email now? {verdict}" in out
        scores = api.lead_scores(lead)
        scored = [s for s in scores if s.status == "scored"]
        assert scored
        # The best lead by score is the one shown; its parent contact's timeline is above.
        with api.store.reading() as c:
            c.execute("SELECT MAX(score) FROM lead_scores__scores WHERE status = 'scored'")
            best = c.fetchone()[0]
            c.execute("SELECT parent_contact_id FROM profiles__leads WHERE lead_id = %s", (lead,))
            assert c.fetchone()[0] == contact
        assert max(s.score or 0 for s in scored) == pytest.approx(best)
        for s in scored:
            ready = "sales-ready" if s.sales_ready else "not sales-ready yet"
            assert (
                f"Lead {lead} under {s.model}: score {s.score:.1f}, grade {s.grade}, {ready} "
                f"(threshold {s.threshold:g}), from {s.counted} events"
            ) in out
            for rule in api.explain(lead, s.model).rules:
                if rule.counted:
                    assert (
                        f"  {rule.rule_id}: {rule.counted} x {rule.points:g} -> {rule.total:.1f}"
                        in out
                    )

    shown = istore(view_settings, "show", "contact", contact, "--entries", "3").stdout
    assert shown.startswith(f"Timeline of contact {contact} ({total} interactions in the window):")
    assert len([x for x in shown.splitlines() if re.match(r"  \d{4}-\d\d-\d\d ", x)]) == min(
        3, total
    )
    assert "May we send a marketing email now?" in shown
    assert istore(view_settings, "show", "lead", lead).stdout == out[out.index(f"Lead {lead} ") :]

    nobody = str(uuid.uuid4())
    missing = istore(view_settings, "show", "contact", nobody, code=1)
    assert f"contact {nobody} is unknown: no live view holds anything about it" in missing.stderr
    no_lead = istore(view_settings, "show", "lead", nobody, code=1)
    assert f"no lead {nobody} in the lead_scores view" in no_lead.stderr
    assert (
        "contact_id 'nope': not a UUID"
        in istore(view_settings, "show", "contact", "nope", code=1).stderr
    )
    assert (
        f"account {nobody} is unknown"
        in istore(view_settings, "show", "account", nobody, code=1).stderr
    )
    assert (
        "'opportunity' is not one of 'contact', 'lead', 'account'"
        in istore(view_settings, "show", "opportunity", nobody, code=2).stderr
    )


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_refused_naming_the_value(view_settings: Settings, tmp_path: Path) -> None:
    with open_log(view_settings) as log:
        log.publish([event(type="contact.created")])
    istore(view_settings, "run", "--once")

    def refused(*args: str, code: int = 1) -> str:
        return str(istore(view_settings, *args, code=code).stderr)

    for command in (
        ("views", "promote", "nope"),
        ("views", "drop", "nope"),
        ("diff", "lead_scores", "nope"),
    ):
        assert (
            "no view named 'nope'; the views are: "
            "consent, lead_scores, profiles, subjects, timeline" in refused(*command)
        )
    assert "timeline is not a lead_scores view" in refused("diff", "lead_scores", "timeline")
    assert "'widgets' is not one of 'profiles', 'timeline', 'consent', 'lead_scores'" in refused(
        "replay", "widgets", code=2
    )
    assert "Invalid value for '--until': '2025-13-01'" in refused(
        "replay", "timeline", "--until", "2025-13-01", code=2
    )
    assert "--model is for lead_scores replays" in refused(
        "replay", "timeline", "--model", str(SCORING / "sales-signals.toml")
    )
    assert "timeline is live already" in refused("views", "promote", "timeline")

    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n", encoding="utf-8")
    error = refused("replay", "lead_scores", "--model", str(broken), "--as", "scores_bad")
    assert f"{broken}: invalid scoring model" in error and "not valid syntax" in error
    typo = tmp_path / "typo.toml"
    typo.write_text(
        (SCORING / "sales-signals.toml")
        .read_text(encoding="utf-8")
        .replace("activity.appointment", "activity.apointment"),
        encoding="utf-8",
    )
    error = refused("replay", "lead_scores", "--model", str(typo), "--as", "scores_typo")
    assert f"{typo}: invalid scoring model" in error and "'appointment'" in error
    assert "activity.apointment" in error
    assert "does not exist" in refused(
        "replay", "lead_scores", "--model", str(tmp_path / "absent.toml"), code=2
    )

    assert "view name 'Bad-Name': use lower-case letters" in refused(
        "replay", "timeline", "--as", "Bad-Name"
    )
    long = "scores_" + "x" * 30
    assert f"a lead-scores view name has at most 32 characters: '{long}'" in refused(
        "replay", "lead_scores", "--as", long
    )
    assert "a view named 'timeline' exists already (timeline)" in refused(
        "replay", "timeline", "--as", "timeline"
    )
    # None of the refused replays left a view behind.
    assert sorted(views_listed(view_settings)) == sorted(LIVE_KINDS)
    assert "applied 0, still failing 0" in istore(view_settings, "deadletters", "retry").stdout


# --------------------------------------------------------------------------- production pairing


@pytest.mark.kafka
def test_on_kafka_with_postgresql_views(
    kafka_settings: Settings, postgres_admin: str, tmp_path: Path
) -> None:
    from tests.postgres_server import fresh_database

    with fresh_database(postgres_admin) as dsn:
        settings = kafka_settings.model_copy(update={"postgres_dsn": SecretStr(dsn)})
        first = load_demo(settings, tmp_path)
        assert "set aside 0" in first.stdout
        with open_store(settings) as store:
            views = [live(store, settings, kind) for kind in LIVE_KINDS]
        assert applied(first) == sum(v.wants(e) for v in views for e in logged_events(settings))
        listed = views_listed(settings)
        assert {(s, lag) for _, s, lag, _ in listed.values()} == {("live", "lag 0")}
        assert istore(settings, "run", "--once").stdout.startswith("applied 0 events")

        published = sales_ready_in_log(settings)
        assert published and len({e.event_id for e in published}) == len(published)
        for kind in ("lead_scores", "timeline"):
            istore(settings, "replay", kind, "--as", f"{kind}_check")
        istore(settings, "run", "--once")
        assert len(sales_ready_in_log(settings)) == len(published)
        with open_store(settings) as store:
            for kind in ("lead_scores", "timeline"):
                replayed = projection(store, settings, f"{kind}_check")
                assert view_checksum(store, replayed) == view_checksum(
                    store, live(store, settings, kind)
                )
            outbox = {r[0] for r in rows(store, "SELECT event_id FROM lead_scores__outbox")}
        assert {str(e.event_id) for e in published} == outbox


def test_view_names_ending_in_profiles_are_kept_for_the_views_own_tables(
    embedded_settings: Settings,
) -> None:
    from interaction_store.projection.registry import ViewError, ViewRegistry
    from interaction_store.views import open_store

    with open_store(embedded_settings) as store:
        registry = ViewRegistry(store)
        with pytest.raises(ViewError, match="lead_scores_profiles"):
            registry.register("lead_scores_profiles", "profiles", {})
        assert registry.all() == []
