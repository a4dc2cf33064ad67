"""Commands that show the views to a person: one contact, one lead, or a sample of both."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import click

from interaction_store.api import lookup
from interaction_store.cli import fail, main, settings_of
from interaction_store.cli.views import ERRORS
from interaction_store.projection.consent import Consent, UnknownContact, decide
from interaction_store.projection.consent.ledger import Ledger
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
@click.argument("kind", type=click.Choice(["contact", "lead"]))
@click.argument("id")
@click.option("--entries", type=click.IntRange(1, 500), default=10, show_default=True)
@click.pass_context
def show(ctx: click.Context, kind: str, id: str, entries: int) -> None:
    """Show a contact (timeline, consent) or a lead (scores and why)."""
    try:
        with ReadAPI(settings_of(ctx)) as api:
            (_contact(api, id, entries) if kind == "contact" else _lead(api, id))
    except SHOW_ERRORS as exc:
        raise fail(exc) from exc


@main.command()
@click.pass_context
def sample(ctx: click.Context) -> None:
    """A readable sample of the live views: the best-scored lead, its contact's timeline
    and consent, and the lead's score with its explanation."""
    try:
        with ReadAPI(settings_of(ctx)) as api:
            pick = _best_lead(api)
            if pick is None:
                click.echo("no scored lead yet: publish events and run `istore run --once`")
                return
            lead_id, contact_id = pick
            _contact(api, contact_id, 8)
            click.echo("")
            _lead(api, lead_id)
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
