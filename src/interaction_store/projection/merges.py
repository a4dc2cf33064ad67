"""Merged groups: which contacts were merged into which (``contact.merged``), now or as of an
instant, with the event behind each link, read from the events a profiles fold keeps.

The links are a fold of their own, never written into the rows of the views that follow them:
a view reads the group when it needs it, so a merge (or, later, an unmerge) arriving in any
order changes what is read, not what was stored.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import orjson

from interaction_store.projection.base import select_in
from interaction_store.projection.profiles import Profiles
from interaction_store.views.base import Cursor

MAX_MERGE_HOPS = 10  # a chain of merges longer than this is a data problem, not a view's
MERGE_TYPES = frozenset({"contact.merged"})


@dataclass(frozen=True, order=True)
class MergeLink:
    """A contact merged into another, by the latest ``contact.merged`` naming it."""

    contact_id: str
    into: str
    event_id: str
    at: str
    """The merge's instant, as ``iso()`` text."""

    @property
    def since(self) -> datetime:
        return datetime.fromisoformat(self.at)


def merge_links(
    cursor: Cursor, profiles: Profiles, contacts: Iterable[str], as_of: str | None = None
) -> dict[str, MergeLink]:
    """The link of every contact merged into another in the groups of ``contacts``, each by
    its latest ``contact.merged`` (up to ``as_of``, an ``iso()`` instant, when given).

    A merge event is kept under both of its contacts, so reading a contact's merges tells
    where it went and who came into it; the walk reads each contact it reaches once."""
    read: set[str] = set()
    latest: dict[str, tuple[str, str, str]] = {}  # duplicate -> (at, event id, into)
    frontier = set(contacts)
    until = "" if as_of is None else " AND occurred_at <= %s"
    for _ in range(4 * MAX_MERGE_HOPS):
        if not frontier:
            break
        extra: tuple[object, ...] = ("contact", "contact.merged")
        extra += () if as_of is None else (as_of,)
        rows = select_in(
            cursor,
            f"SELECT occurred_at, event_id, doc FROM {profiles.table('events')} "
            f"WHERE kind = %s AND type = %s{until} AND entity_id IN ({{ids}})",
            frontier,
            *extra,
        )
        read |= frontier
        reached: set[str] = set()
        for at, event_id, doc in rows:
            d = orjson.loads(doc)
            duplicate, into = d["payload"]["merged_contact_id"], d["subject"]["contact_id"]
            if duplicate not in latest or (at, event_id) > latest[duplicate][:2]:
                latest[duplicate] = (at, event_id, into)
            reached.update((duplicate, into))
        frontier = reached - read
    return {
        duplicate: MergeLink(duplicate, into, event_id, at)
        for duplicate, (at, event_id, into) in latest.items()
    }


def root_of(contact: str, links: dict[str, MergeLink]) -> str:
    """The contact a group lives on: followed through its merges (a few hops at most)."""
    for _ in range(MAX_MERGE_HOPS):
        link = links.get(contact)
        if link is None:
            break
        contact = link.into
    return contact


def group_of(contact: str, links: dict[str, MergeLink]) -> list[str]:
    """Every contact of ``contact``'s group, its root first, then the others by id."""
    root = root_of(contact, links)
    members = {c for c in links if root_of(c, links) == root} | {root, contact}
    return [root, *sorted(members - {root})]


def together_since(a: str, b: str, links: dict[str, MergeLink]) -> str | None:
    """When ``a`` and ``b`` came to be one contact (the latest merge on the way from either to
    the first contact both lead to), or None if they are not in one group."""
    paths: list[dict[str, str]] = []
    for start in (a, b):
        reached = {start: ""}  # contact -> the latest merge on the way to it
        latest, contact = "", start
        for _ in range(MAX_MERGE_HOPS):
            link = links.get(contact)
            if link is None:
                break
            latest, contact = max(latest, link.at), link.into
            reached.setdefault(contact, latest)
        paths.append(reached)
    common = [c for c in paths[0] if c in paths[1]]
    if not common:
        return None
    return min(max(paths[0][c], paths[1][c]) for c in common)


def merged_groups(
    cursor: Cursor, profiles: Profiles, contacts: Iterable[str], as_of: str | None = None
) -> dict[str, set[str]]:
    """Each contact's group: the contact it was merged into (following ``contact.merged`` a
    few hops) with every contact merged into that one; as of ``as_of`` when given."""
    contacts = set(contacts)
    links = merge_links(cursor, profiles, contacts, as_of)
    groups: dict[str, set[str]] = defaultdict(set)
    for contact in {*links, *(link.into for link in links.values()), *contacts}:
        groups[root_of(contact, links)].add(contact)
    return {contact: groups[root_of(contact, links)] for contact in contacts}
