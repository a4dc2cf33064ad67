"""Commands that show the views to a person: one contact, lead or account, or a sample."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast
from uuid import UUID

import click

from interaction_store.api import lookup
from interaction_store.cli import fail, main, settings_of
from interaction_store.cli.views import ERRORS
from interaction_store.projection.consent import Consent, UnknownContact, decide
from interaction_store.projection.consent.ledger import Ledger
from interaction_store.projection.profile_values import Profile, Recorded, Source
from interaction_store.read import ReadAPI

SHOW_ERRORS: tuple[type[Exception], ...] = (*ERRORS, LookupError)


def _contact(api: ReadAPI, given_id: str, entries: int) -> None:
    try:
        contact_id = str(UUID(given_id))
    except ValueError:
        raise ValueError(f"contact_id {given_id!r}: not a UUID") from None
    page = api.timeline(contact_id=contact_id, limit=entries)  # first: says if no view is live
    # As the HTTP API answers: an id no live view knows is refused; one known only from its
    # interactions (no consent or contact event yet) has the consent rules' defaults.
    if not lookup.known(api, "contact", contact_id):
        raise LookupError(
            f"contact {contact_id} is unknown: no live view holds anything about it (check "
            "the id, or let the views catch up with the log: istore run)"
        )
    click.echo(f"Timeline of contact {contact_id} ({page.total} interactions in the window):")
    for e in page.entries:
        preview = ", ".join(f"{k}: {v}" for k, v in e.preview.items() if v)
        status = f" [{e.status}]" if e.status and e.status != "sent" else ""
        click.echo(f"  {e.occurred_at:%Y-%m-%d %H:%M}  {e.type}{status}  {preview}"[:140])
    view = api.view("consent")
    assert isinstance(view, Consent)
    try:
        state = api.consent(contact_id)
    except UnknownContact:
        state = Ledger().state(contact_id, view.rules, None)
    click.echo("Consent:")
    for name, recorded in sorted(state.preferences.items()):
        click.echo(f"  {name} = {recorded.value}  {recorded.describe()}"[:140])
    click.echo(f"  level = {state.level.value}  {state.level.describe()}"[:140])
    click.echo(f"  lists: {', '.join(state.subscribed) or 'none'}")
    decision = decide(state, view.rules, "email", "commercial", None, None, None)
    verdict = "yes" if decision.allowed else "no"
    click.echo(f"May we send a marketing email now? {verdict}")
    for reason in decision.reasons[:4]:
        click.echo(f"  - {reason}"[:160])


def _when(source: Source | None) -> str:
    if source is None:
        return "(never set)"
    return f"({source.event_type} {source.event_id} at {source.occurred_at:%Y-%m-%d %H:%M})"


def _profile(api: ReadAPI, kind: str, given_id: str, as_of: datetime | None) -> None:
    """The profile as ``GET /v1/<kind>s/{id}`` answers it, each value with its event."""
    try:
        subject_id = str(UUID(given_id))
    except ValueError:
        raise ValueError(f"{kind}_id {given_id!r}: not a UUID") from None
    api.view("profiles")  # says if no view is live yet
    if not lookup.known(api, cast(lookup.Subject, kind), subject_id):
        raise LookupError(
            f"{kind} {subject_id} is unknown: no live view holds anything about it (check "
            "the id, or let the views catch up with the log: istore run)"
        )
    p: Profile = api.profile(kind, subject_id, as_of)
    when = f" as of {as_of.isoformat()}" if as_of else ""
    if p.merged_into is not None:
        click.echo(
            f"Contact {subject_id} was merged into {p.merged_into.value}{when} "
            f"{_when(p.merged_into.source)}: show that one"
        )
        return
    click.echo(f"Profile of {kind} {subject_id}{when}:")
    for name, recorded in p.fields.items():
        value = recorded.value if isinstance(recorded, Recorded) else recorded
        click.echo(f"  {name} = {value}  {_when(recorded.source)}"[:160])
    if p.origin is not None:
        o = p.origin
        click.echo(f"  source: {o.source}, campaign {o.campaign_id}, journey {o.journey_id}")
    for m in p.memberships:
        until = f" until {_when(m.until)}" if m.until else " (member)"
        click.echo(
            f"  account {m.account_id} / contact {m.contact_id} since {_when(m.since)}{until}"
        )
    for lead in p.leads:
        click.echo(
            f"  lead {lead.lead_id}: {lead.status}, {lead.topic or '-'} {_when(lead.source)}"
        )
    for r in p.registrations:
        state = ("registered" if r.registered else "cancelled") + (
            ", attended" if r.attended else ""
        )
        click.echo(f"  event {r.event_ref} {r.event_name}: {state} {_when(r.source)}"[:160])
    for case in p.open_cases:
        click.echo(
            f"  open case {case.case_id} ({case.priority}, {case.origin}) {_when(case.source)}"
        )
    if p.engagement:
        counts = ", ".join(f"{e.channel} {e.count}" for e in p.engagement)
        click.echo(f"  engagement since {p.window_start:%Y-%m-%d}: {counts}")


def _lead(api: ReadAPI, lead_id: str) -> None:
    for score in api.lead_scores(lead_id):
        if score.status != "scored":
            click.echo(f"Lead {lead_id} under {score.model}: not scored ({score.reason})")
            continue
        ready = "sales-ready" if score.sales_ready else "not sales-ready yet"
        click.echo(
            f"Lead {lead_id} under {score.model}: score {score.score:.1f}, grade {score.grade}, "
            f"{ready} (threshold {score.threshold:g}), from {score.counted} events"
        )
        why = api.explain(lead_id, score.model)
        for rule in why.rules:
            if rule.counted:
                click.echo(
                    f"  {rule.rule_id}: {rule.counted} x {rule.points:g} -> {rule.total:.1f}"
                    f"  ({rule.description})"[:140]
                )


@main.command()
@click.argument("kind", type=click.Choice(["contact", "lead", "account"]))
@click.argument("id")
@click.option("--entries", type=click.IntRange(1, 500), default=10, show_default=True)
@click.option(
    "--as-of",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z"]),
    default=None,
    help="Show the profile as it stood then (ISO 8601 with a zone, e.g. 2026-03-01T09:00+00:00)",
)
@click.pass_context
def show(ctx: click.Context, kind: str, id: str, entries: int, as_of: datetime | None) -> None:
    """Show a contact (timeline, consent, profile), a lead (scores and why, profile) or an
    account (profile); each profile value with the event that set it."""
    try:
        with ReadAPI(settings_of(ctx)) as api:
            if kind == "contact":
                _contact(api, id, entries)
            elif kind == "lead":
                _lead(api, id)
            _profile(api, kind, id, as_of)
    except SHOW_ERRORS as exc:
        raise fail(exc) from exc


@main.command()
@click.pass_context
def sample(ctx: click.Context) -> None:
    """A readable sample of the live views: the best-scored lead, its contact's timeline,
    consent and profile, and the lead's score with its explanation and its profile."""
    try:
        with ReadAPI(settings_of(ctx)) as api:
            pick = _best_lead(api)
            if pick is None:
                click.echo("no scored lead yet: publish events and run `istore run --once`")
                return
            lead_id, contact_id = pick
            _contact(api, contact_id, 8)
            _profile(api, "contact", contact_id, None)
            click.echo("")
            _lead(api, lead_id)
            _profile(api, "lead", lead_id, None)
    except SHOW_ERRORS as exc:
        raise fail(exc) from exc


def _best_lead(api: ReadAPI) -> tuple[str, str] | None:
    scores = api.view("lead_scores").instance
    profiles = api.view("profiles").instance
    with api.store.reading() as c:
        c.execute(
            f"SELECT s.lead_id, l.parent_contact_id FROM {scores}__scores s "
            f"JOIN {profiles}__leads l ON l.lead_id = s.lead_id "
            "WHERE s.status = 'scored' AND l.parent_contact_id IS NOT NULL "
            "ORDER BY s.score DESC, s.lead_id LIMIT 1"
        )
        row: Any = c.fetchone()
    return None if row is None else (str(row[0]), str(row[1]))
