"""``istore export contact ID``: the subject access export, the same document as
``GET /v1/contacts/{id}/export``, to stdout or a file."""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from pathlib import Path
from uuid import UUID

import click

from interaction_store.api.access import AccessConfig, AccessError, known_categories
from interaction_store.api.export import export_document
from interaction_store.cli import fail, main, settings_of
from interaction_store.cli.views import ERRORS
from interaction_store.log import open_log
from interaction_store.privacy.keystore import open_key_store
from interaction_store.privacy.sealing import Opener
from interaction_store.read import ReadAPI
from interaction_store.subject_access import UnknownPerson, find_person

EXPORT_ERRORS: tuple[type[Exception], ...] = (*ERRORS, LookupError, AccessError)


@main.command("export")
@click.argument("kind", type=click.Choice(["contact"]))
@click.argument("id")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the document to this file (made 0600: it holds personal data); default stdout",
)
@click.option(
    "--role",
    help="Export as this role of the access file sees it (its read categories); default "
    "every category",
)
@click.pass_context
def export(ctx: click.Context, kind: str, id: str, output: Path | None, role: str | None) -> None:
    """Everything the store holds about a contact (subject access) as one JSON document:
    its merged group, linked visitors and leads, their profile, consent and audit trail, lead
    scores, timeline and every event about them."""
    settings = settings_of(ctx)
    try:
        try:
            contact_id = str(UUID(id))
        except ValueError:
            raise ValueError(f"contact id {id!r}: not a UUID") from None
        permissions = None
        name = "cli"
        if role is not None:
            known = known_categories(settings)
            roles = AccessConfig.load(settings.access_path, known).roles
            if role not in roles:
                raise AccessError(
                    f"--role {role!r}: no such role in {settings.access_path} "
                    f"(roles: {', '.join(sorted(roles))})"
                )
            permissions, name = roles[role].read, role
        with ExitStack() as stack, ReadAPI(settings) as read, open_log(settings) as log:
            try:
                person = find_person(read, contact_id)
            except UnknownPerson as exc:
                raise LookupError(
                    f"{exc} (check the id, or let the views catch up with the log: istore run)"
                ) from None
            keys = stack.enter_context(open_key_store(settings))
            pieces = export_document(read, log, person, name, permissions, Opener(keys))
            if output is None:
                stream = sys.stdout.buffer
                for piece in pieces:
                    stream.write(piece)
                stream.write(b"\n")
                stream.flush()
                return
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(fd, "wb") as out:
                for piece in pieces:
                    out.write(piece)
                out.write(b"\n")
            click.echo(f"contact {contact_id}: exported to {output}", err=True)
    except EXPORT_ERRORS as exc:
        raise fail(exc) from exc
