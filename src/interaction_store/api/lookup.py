"""Whether the live views know a contact, lead or account: what tells an unknown id (404) from a
known one that has nothing to show this caller (an empty page, the default consent, a lead not
scored yet).

An id is known when any live view holds a row about it:

- a contact: the profiles (its own contact row, an account membership, a linked visitor, a lead
  it is the parent of), a timeline entry of any category, or the consent view;
- a lead: the profiles (any lead event), a timeline entry, or a lead-scores row;
- an account: the profiles (``account.created`` or ``.updated``, a membership, a lead it is the
  parent of), or a timeline entry of its own (an activity about the account alone).

Existence is not filtered by the caller's categories: an id is not an interaction, and a
timeline that shows a caller nothing answers an empty page, not a 404 that would say whether
hidden entries exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from interaction_store.projection.registry import ViewError
from interaction_store.read import ReadAPI

Subject = Literal["contact", "lead", "account"]

_Probe = tuple[str, str, str, tuple[str, ...]]
"""(view kind, table, condition on the id, parameters before the id)."""

PROBES: dict[Subject, tuple[_Probe, ...]] = {
    "contact": (
        ("profiles", "contacts", "contact_id = %s", ()),
        ("timeline", "entries", "subject_kind = %s AND subject_id = %s", ("contact",)),
        ("consent", "contacts", "contact_id = %s", ()),
        ("profiles", "members", "contact_id = %s", ()),
        ("profiles", "identities", "contact_id = %s", ()),
        ("profiles", "leads", "parent_contact_id = %s", ()),
    ),
    "lead": (
        ("profiles", "leads", "lead_id = %s", ()),
        ("timeline", "entries", "subject_kind = %s AND subject_id = %s", ("lead",)),
        ("lead_scores", "scores", "lead_id = %s", ()),
    ),
    "account": (
        ("profiles", "accounts", "account_id = %s", ()),
        ("timeline", "entries", "subject_kind = %s AND subject_id = %s", ("account",)),
        ("profiles", "members", "account_id = %s", ()),
        ("profiles", "leads", "parent_account_id = %s", ()),
    ),
}
"""Every probe reads an indexed column (a primary key or its first columns, or an index)."""


def probed_kinds(subject: Subject) -> tuple[str, ...]:
    """The view kinds whose rows decide whether a ``subject`` id is known."""
    return tuple(dict.fromkeys(kind for kind, *_ in PROBES[subject]))


def known(read: ReadAPI, subject: Subject, subject_id: str) -> bool:
    """True when a live view holds a row about ``subject_id`` (a canonical UUID string)."""
    probes = list(_tables(read, subject))
    if not probes:
        return False
    with read.store.reading() as cursor:
        for table, condition, params in probes:
            cursor.execute(
                f"SELECT 1 FROM {table} WHERE {condition} LIMIT 1", (*params, subject_id)
            )
            if cursor.fetchone() is not None:
                return True
    return False


def _tables(read: ReadAPI, subject: Subject) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """The probes of the views that are live (a kind with no live view holds nothing yet)."""
    for kind, table, condition, params in PROBES[subject]:
        try:
            view = read.view(kind)
        except ViewError:
            continue
        yield view.table(table), condition, params
