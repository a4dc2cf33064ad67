"""``istore erase contact ID``: erase a contact on request and print its receipt."""

from __future__ import annotations

import getpass

import click
import orjson

from interaction_store.cli import USER_ERRORS, fail, main, settings_of
from interaction_store.erasure import Eraser
from interaction_store.log import open_log
from interaction_store.privacy import open_key_store
from interaction_store.views import open_store

ERRORS: tuple[type[Exception], ...] = (*USER_ERRORS, LookupError)


@main.group()
def erase() -> None:
    """Erase a data subject (GDPR Art. 17): see README, "Erasure"."""


@erase.command("contact")
@click.argument("contact_id")
@click.option("--requested-by", help="Who asked (kept in the event and receipt) [default: $USER]")
@click.pass_context
def erase_contact(ctx: click.Context, contact_id: str, requested_by: str | None) -> None:
    """Erase CONTACT_ID with its merged duplicates, visitor ids and only-child leads; print
    the receipt as JSON. Erasing again prints the first receipt."""
    settings = settings_of(ctx)
    try:
        with open_log(settings) as log, open_key_store(settings) as keys:
            store = open_store(settings)
            try:
                receipt, new = Eraser(log, store, keys).erase(
                    contact_id, requested_by or f"cli {getpass.getuser()}"
                )
            finally:
                store.close()
    except ERRORS as exc:
        raise fail(exc) from None
    click.echo(orjson.dumps(receipt, option=orjson.OPT_INDENT_2).decode())
    if not new:
        click.echo(f"(erased before: receipt {receipt['erasure_id']})", err=True)
