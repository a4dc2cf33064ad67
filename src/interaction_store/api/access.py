"""Who may do what over HTTP: API keys (stored as SHA-256 hashes) mapped to roles, in a TOML
file (``ISTORE_ACCESS_FILE``, default ``<data_dir>/access.toml``).

A role lists the interaction categories it may read (the read permissions of the timeline,
one per marketing entity in the seeds: marketing emails, events, forms, websites, push
notifications, SMS; plus chats and sales/service activities), whether it may read consent
state and lead scores, whether it may publish, and whether it may export everything about a
contact (subject access; what it then sees is still limited to its read categories)::

    [roles.marketing]
    read = ["marketing_email", "sms", "push_notification", "website", "marketing_form", "event"]
    consent = true
    scores = true
    publish = false

    [keys.campaign-dashboard]
    role = "marketing"
    sha256 = "9f86d0..."   # of the key; the key itself is shown once, by `istore keys create`

Keys are random 32-byte tokens, so one SHA-256 is enough (no salt or slow hash is needed to
resist guessing); the file never holds a key itself.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interaction_store import custom_types
from interaction_store.projection.timeline.settings import TimelineSettings
from interaction_store.settings import Settings

CATEGORIES = (
    "marketing_email",
    "sms",
    "push_notification",
    "website",
    "marketing_form",
    "event",
    "chat",
    "activity",
    "opportunity",
)
"""Every read permission a built-in timeline entry can need (``projections/timeline.toml``);
:func:`known_categories` adds those its custom types need."""


def known_categories(settings: Settings) -> tuple[str, ...]:
    """The built-in categories and those ``timeline.toml`` gives custom types (its
    ``[custom."custom.<name>"]`` tables), which roles may then name ("*" includes them)."""
    custom_types.ensure(settings.streams_dir)
    custom = TimelineSettings.load(settings.projections_dir).custom.values()
    return CATEGORIES + tuple(sorted({c.category for c in custom} - set(CATEGORIES)))


KEY_PREFIX = "istore_"

DEFAULT_ROLES = """\
# Roles of the HTTP API. `read`: the interaction categories a role's timeline shows (entries
# of any other category are neither returned nor counted); `consent` / `scores`: may read
# consent state and decisions / lead scores; `publish`: may POST events; `erase`: may erase a
# contact (DELETE /v1/contacts/{id}) and read erasure receipts; `export`: may export everything
# about a contact (subject access: its events of the `read` categories, and its consent, scores
# and profile); `profile`: the personal fields of a profile it sees (GET /v1/contacts/{id}):
# "names" (first and last name), "contact_points" (email, phone, external id); `lookup`: the
# keys it may find contacts by (GET /v1/contacts?email=...): email, phone, external_id,
# anonymous_id.
# Categories: marketing_email, sms, push_notification, website, marketing_form, event, chat,
# activity, opportunity ("*" for all).

[roles.admin]
read = ["*"]
consent = true
scores = true
publish = true
erase = true
export = true
profile = ["names", "contact_points"]
lookup = ["email", "phone", "external_id", "anonymous_id"]

[roles.marketing]
read = ["marketing_email", "sms", "push_notification", "website", "marketing_form", "event"]
consent = true
scores = true
publish = false
profile = ["names", "contact_points"]
lookup = ["email", "anonymous_id"]

[roles.sales]
read = ["marketing_email", "event", "marketing_form", "website", "chat", "activity", "opportunity"]
consent = false
scores = true
publish = false
profile = ["names", "contact_points"]
lookup = ["email", "phone", "external_id", "anonymous_id"]

[roles.service]
read = ["chat", "activity"]
consent = true
scores = false
publish = false
profile = ["names", "contact_points"]
lookup = ["email", "phone", "external_id", "anonymous_id"]

[roles.publisher]
read = []
consent = false
scores = false
publish = true

# The data-protection officer's desk: erasure and its receipts, subject access (every
# category, for the export only), nothing else.
[roles.privacy]
read = ["*"]
consent = false
scores = false
publish = false
erase = true
export = true

# Keys: `istore keys create NAME --role ROLE` adds one here and prints the key once.
"""


class AccessError(ValueError):
    """A broken access file: names the file, the entry and the problem."""


@dataclass(frozen=True)
class Role:
    name: str
    read: frozenset[str]
    consent: bool = False
    scores: bool = False
    publish: bool = False
    erase: bool = False
    export: bool = False
    profile: frozenset[str] = frozenset()
    """The personal field groups of a profile it sees: names, contact_points."""
    lookup: frozenset[str] = frozenset()
    """The keys it may find contacts by: email, phone, external_id, anonymous_id."""


@dataclass(frozen=True)
class Principal:
    """The caller behind an API key."""

    key_name: str
    role: Role


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass
class AccessConfig:
    roles: dict[str, Role]
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    """sha256 -> (key name, role name)."""
    source: str = "(access config)"

    @classmethod
    def load(cls, path: Path, categories: tuple[str, ...] = CATEGORIES) -> AccessConfig:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise AccessError(
                f"{path}: no access file: create it with `istore keys create NAME --role ROLE`"
            ) from None
        return cls.from_toml(text, str(path), categories)

    @classmethod
    def from_toml(
        cls, text: str, source: str = "(access config)", categories: tuple[str, ...] = CATEGORIES
    ) -> AccessConfig:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise AccessError(f"{source}: not valid TOML: {exc}") from exc
        return cls.from_dict(doc, source, categories)

    @classmethod
    def from_dict(
        cls,
        doc: Mapping[str, Any],
        source: str = "(access config)",
        categories: tuple[str, ...] = CATEGORIES,
    ) -> AccessConfig:
        unknown = sorted(set(doc) - {"roles", "keys"})
        if unknown:
            raise AccessError(f"{source}: unknown section(s) {unknown}; expected roles, keys")
        roles = {
            name: _role(name, body, source, categories)
            for name, body in _table(doc, "roles", source)
        }
        keys: dict[str, tuple[str, str]] = {}
        for name, body in _table(doc, "keys", source):
            where = f"{source}: keys.{name}"
            if not isinstance(body, Mapping):
                raise AccessError(f"{where} must be a table with role and sha256")
            extra = sorted(set(body) - {"role", "sha256"})
            if extra:
                raise AccessError(f"{where}: unknown field(s) {extra}; expected role, sha256")
            role = body.get("role")
            if role not in roles:
                raise AccessError(
                    f"{where}.role={role!r} is not a role of this file (roles: {sorted(roles)})"
                )
            digest = body.get("sha256")
            if not isinstance(digest, str) or len(digest) != 64 or not _is_hex(digest):
                raise AccessError(f"{where}.sha256={digest!r} must be 64 hex digits")
            if digest.lower() in keys:
                raise AccessError(f"{where}: the same key as keys.{keys[digest.lower()][0]}")
            keys[digest.lower()] = (name, role)
        return cls(roles, keys, source)

    def authenticate(self, key: str | None) -> Principal | None:
        """The caller a key stands for, or None for a missing or unknown key."""
        if not key:
            return None
        entry = self.keys.get(hash_key(key))
        if entry is None:
            return None
        name, role = entry
        return Principal(name, self.roles[role])


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


def _table(doc: Mapping[str, Any], name: str, source: str) -> list[tuple[str, Any]]:
    value = doc.get(name, {})
    if not isinstance(value, Mapping):
        raise AccessError(f"{source}: [{name}] must be a table")
    return list(value.items())


_FLAGS = ("consent", "scores", "publish", "erase", "export")
_LISTS = {
    "profile": ("names", "contact_points"),
    "lookup": ("email", "phone", "external_id", "anonymous_id"),
}


def _role(name: str, body: Any, source: str, known: tuple[str, ...]) -> Role:
    where = f"{source}: roles.{name}"
    if not isinstance(body, Mapping):
        raise AccessError(f"{where} must be a table")
    extra = sorted(set(body) - {"read", *_FLAGS, *_LISTS})
    if extra:
        expected = ", ".join((*_FLAGS, *_LISTS))
        raise AccessError(f"{where}: unknown field(s) {extra}; expected read, {expected}")
    read = body.get("read", [])
    if not isinstance(read, list) or not all(isinstance(c, str) for c in read):
        raise AccessError(f"{where}.read={read!r} must be a list of categories")
    categories: set[str] = set()
    for category in read:
        if category == "*":
            categories.update(known)
        elif category in known:
            categories.add(category)
        else:
            raise AccessError(
                f"{where}.read: unknown category {category!r} (known: {', '.join(known)}; a "
                'custom type\'s is its [custom."custom.<name>"] category in timeline.toml)'
            )
    flags: dict[str, bool] = {}
    for flag in _FLAGS:
        value = body.get(flag, False)
        if not isinstance(value, bool):
            raise AccessError(f"{where}.{flag}={value!r} must be true or false")
        flags[flag] = value
    lists: dict[str, frozenset[str]] = {}
    for setting, known in _LISTS.items():
        value = body.get(setting, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise AccessError(f"{where}.{setting}={value!r} must be a list of names")
        wrong = sorted(set(value) - set(known))
        if wrong:
            raise AccessError(
                f"{where}.{setting}: unknown name(s) {wrong} (known: {', '.join(known)})"
            )
        lists[setting] = frozenset(value)
    return Role(
        name,
        frozenset(categories),
        profile=lists["profile"],
        lookup=lists["lookup"],
        **flags,
    )


def add_key(path: Path, name: str, role: str, categories: tuple[str, ...] = CATEGORIES) -> str:
    """Add a key named ``name`` with ``role`` to the access file (created with the default
    roles when missing); return the new key, which is not stored anywhere."""
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise AccessError(f"key name {name!r} may hold only letters, digits, '-' and '_'")
    text = path.read_text(encoding="utf-8") if path.exists() else DEFAULT_ROLES
    config = AccessConfig.from_toml(text, str(path), categories)
    if role not in config.roles:
        raise AccessError(f"role {role!r} is not in {path} (roles: {sorted(config.roles)})")
    if any(existing == name for existing, _ in config.keys.values()):
        raise AccessError(f"{path} has a key named {name!r} already: revoke it first")
    key = new_key()
    entry = f'\n[keys.{name}]\nrole = "{role}"\nsha256 = "{hash_key(key)}"\n'
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text.rstrip("\n") + "\n" + entry, encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return key


def revoke_key(path: Path, name: str, categories: tuple[str, ...] = CATEGORIES) -> None:
    """Remove the key named ``name`` from the access file."""
    text = path.read_text(encoding="utf-8")
    config = AccessConfig.from_toml(text, str(path), categories)
    if not any(existing == name for existing, _ in config.keys.values()):
        raise AccessError(f"{path} has no key named {name!r}")
    out: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("["):
            skipping = stripped == f"[keys.{name}]"
        if not skipping:
            out.append(line)
    AccessConfig.from_toml(
        "".join(out), str(path), categories
    )  # still valid before it replaces the file
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(out), encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
