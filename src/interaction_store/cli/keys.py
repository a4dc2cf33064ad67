"""``istore keys``: the API keys of the HTTP API and their roles; ``istore openapi``: the API's
OpenAPI document (written to, or checked against, ``docs/openapi.json``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from interaction_store.api.access import (
    AccessConfig,
    AccessError,
    add_key,
    known_categories,
    revoke_key,
)
from interaction_store.cli import USER_ERRORS, fail, main, settings_of

ERRORS: tuple[type[Exception], ...] = (*USER_ERRORS, AccessError)

OPENAPI_FILE = Path("docs/openapi.json")
"""Relative to the working folder: the checkout's root when run from source."""


@main.group()
def keys() -> None:
    """API keys of the HTTP API (stored hashed in the access file, ISTORE_ACCESS_FILE)."""


@keys.command("create")
@click.argument("name")
@click.option("--role", required=True, help="A role of the access file (e.g. marketing)")
@click.pass_context
def create(ctx: click.Context, name: str, role: str) -> None:
    """Add a key NAME with ROLE; print the key (shown only this once)."""
    settings = settings_of(ctx)
    path = settings.access_path
    try:
        if path.parent == settings.data_dir:
            settings.private_data_dir()
        key = add_key(path, name, role, known_categories(settings))
    except ERRORS as exc:
        raise fail(exc) from exc
    click.echo(
        f"key {name!r} (role {role}) added to {path}; keep it now, it is not stored:", err=True
    )
    click.echo(key)


@keys.command("list")
@click.pass_context
def list_keys(ctx: click.Context) -> None:
    """The roles and the keys' names and roles (never the keys)."""
    settings = settings_of(ctx)
    path = settings.access_path
    try:
        config = AccessConfig.load(path, known_categories(settings))
    except ERRORS as exc:
        raise fail(exc) from exc
    click.echo(f"# {path}")
    click.echo("roles:")
    for role in config.roles.values():
        rights = [r for r in ("consent", "scores", "publish") if getattr(role, r)]
        read = ", ".join(sorted(role.read)) or "(no interaction category)"
        click.echo(f"  {role.name}: reads {read}; {', '.join(rights) or 'nothing else'}")
    click.echo("keys:")
    for name, role_name in sorted(config.keys.values()):
        click.echo(f"  {name}: {role_name}")
    if not config.keys:
        click.echo("  (none: istore keys create NAME --role ROLE)")


@keys.command("revoke")
@click.argument("name")
@click.pass_context
def revoke(ctx: click.Context, name: str) -> None:
    """Remove the key NAME. No restart needed: running services read the access file again
    when it changes, and refuse the key within about a second."""
    settings = settings_of(ctx)
    path = settings.access_path
    try:
        revoke_key(path, name, known_categories(settings))
    except ERRORS as exc:
        raise fail(exc) from exc
    click.echo(f"key {name!r} removed from {path}")


def openapi_document() -> str:
    """The OpenAPI document of the full app (every role's routes), as stable JSON text."""
    from interaction_store.api import create_app
    from interaction_store.api.services import Services
    from interaction_store.settings import Settings

    settings = Settings()
    app = create_app(settings, Services(settings))
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@main.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=OPENAPI_FILE,
    show_default=True,
    help="Where to write it ('-' for stdout)",
)
@click.option("--check", is_flag=True, help="Fail if the file differs from the app's document")
def openapi(out: Path, check: bool) -> None:
    """Write the HTTP API's OpenAPI document (or check the checked-in one is current)."""
    text = openapi_document()
    if str(out) == "-":
        sys.stdout.write(text)
        return
    if check:
        current = out.read_text(encoding="utf-8") if out.exists() else ""
        if current != text:
            raise click.ClickException(
                f"{out} is out of date with the app: run `istore openapi` and commit it"
            )
        click.echo(f"{out} is current")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out}")
