"""The contact lookup index of the profiles view: (key, keyed hash of the normalised value) ->
contact, for email, phone, external id and anonymous visitor id.

A blind index: the table holds HMAC-SHA256 of each value under a key derived from the master
key (HKDF, its own ``info``), never the value, so the table alone tells nobody whose address is
in it; only a process holding the master key can ask. Rows are made again from the folded
profile whenever a contact or a visitor link changes, and an erased contact has none.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Collection, Iterable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from interaction_store.privacy.master import MasterKey
from interaction_store.privacy.register import normal_address
from interaction_store.projection.base import chunks, placeholders, select_in
from interaction_store.views.base import Cursor, insert_rows

LOOKUP_KEYS = ("email", "phone", "external_id", "anonymous_id")
"""What a contact can be found by."""

CONTACT_KEYS = ("email", "phone", "external_id")
"""The keys a contact's own events set (the anonymous id comes from ``identity.linked``)."""

TABLE = "lookup"
COLUMNS = ("lookup_key", "digest", "contact_id")
DDL = (
    "lookup_key TEXT NOT NULL, digest TEXT NOT NULL, contact_id TEXT NOT NULL, "
    "PRIMARY KEY (lookup_key, digest, contact_id)"
)
_HKDF_INFO = b"interaction-store contact lookup v1"


def normal_value(key: str, value: str) -> str:
    """One spelling per value: e-mail case-folded and trimmed, phone numbers without spaces,
    dashes, dots, slashes or parentheses, ids trimmed."""
    if key == "email":
        return normal_address("email", value)
    if key == "phone":
        return normal_address("phone", value)
    return value.strip()


class BlindIndex:
    """Keyed hashes of lookup values; the key is derived once, when first needed."""

    def __init__(self, master: MasterKey | Callable[[], MasterKey]) -> None:
        self._master = master
        self._key: bytes | None = None

    def digest(self, key: str, value: str) -> str:
        if self._key is None:
            master = self._master() if callable(self._master) else self._master
            hkdf = HKDF(hashes.SHA256(), 32, salt=None, info=_HKDF_INFO)
            self._key = hkdf.derive(master.secret)
        text = f"{key}:{normal_value(key, value)}".encode()
        return hmac.new(self._key, text, hashlib.sha256).hexdigest()

    def contact_rows(self, contact_id: str, values: dict[str, Any]) -> list[tuple[str, str, str]]:
        """A contact's rows from its folded values (``email``, ``phone``, ``external_id``)."""
        return [
            (key, self.digest(key, str(values[key])), contact_id)
            for key in CONTACT_KEYS
            if values.get(key) and normal_value(key, str(values[key]))
        ]

    def refresh(
        self,
        cursor: Cursor,
        table: str,
        contacts: dict[str, dict[str, Any] | None],
        visitors: dict[str, str | None],
    ) -> None:
        """Make the rows of these contacts (their values; None: erased, no rows at all) and
        these visitors (the contact each is linked to; None: none, or an erased one) again."""
        rows: list[tuple[str, str, str]] = []
        gone = sorted(c for c, values in contacts.items() if values is None)
        kept = sorted(c for c, values in contacts.items() if values is not None)
        _delete(cursor, f"DELETE FROM {table} WHERE contact_id IN ({{ids}})", gone)
        _delete(
            cursor,
            f"DELETE FROM {table} WHERE lookup_key <> 'anonymous_id' AND contact_id IN ({{ids}})",
            kept,
        )
        for contact_id in kept:
            rows += self.contact_rows(contact_id, contacts[contact_id] or {})
        digests = {a: self.digest("anonymous_id", a) for a in visitors}
        _delete(
            cursor,
            f"DELETE FROM {table} WHERE lookup_key = 'anonymous_id' AND digest IN ({{ids}})",
            sorted(digests.values()),
        )
        rows += [("anonymous_id", digests[a], c) for a, c in visitors.items() if c is not None]
        insert_rows(cursor, table, COLUMNS, sorted(set(rows)), COLUMNS)


def _delete(cursor: Cursor, statement: str, ids: Collection[str]) -> None:
    for part in chunks(sorted(ids)):
        cursor.execute(statement.format(ids=placeholders(len(part))), part)


def find(
    cursor: Cursor,
    table: str,
    key: str,
    digest: str,
    after: str | None,
    limit: int,
) -> list[str]:
    """The ids of contacts with this digest under ``key``, in id order after ``after``."""
    params: list[Any] = [key, digest]
    where = "lookup_key = %s AND digest = %s"
    if after is not None:
        where += " AND contact_id > %s"
        params.append(after)
    cursor.execute(
        f"SELECT contact_id FROM {table} WHERE {where} ORDER BY contact_id LIMIT %s",
        (*params, limit),
    )
    return [str(row[0]) for row in cursor.fetchall()]


def erased_among(cursor: Cursor, events_table: str, contacts: Iterable[str]) -> set[str]:
    """Which of these contacts an erasure the profiles keep names."""
    return {
        str(entity)
        for (entity,) in select_in(
            cursor,
            f"SELECT entity_id FROM {events_table} WHERE kind = %s AND type = %s "
            "AND entity_id IN ({ids})",
            set(contacts),
            "contact",
            "contact.erased",
        )
    }
