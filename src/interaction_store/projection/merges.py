"""Merged groups: which contacts were merged into which (``contact.merged``, undone by
``contact.unmerged``), now or as of an instant, with the event behind each link, read from
the events a profiles fold keeps.

The links are a fold of their own, never written into the rows of the views that follow them:
a view reads the group when it needs it, so a merge or an unmerge arriving in any
order changes what is read, not what was stored.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import orjson

from interaction_store.projection.base import select_in
from interaction_store.views.base import Cursor

if TYPE_CHECKING:  # profiles.py folds its contacts' links with this module
    from interaction_store.projection.profiles import Profiles

MAX_MERGE_HOPS = 10  # a chain of merges longer than this is a data problem, not a view's
MERGE_TYPES = frozenset({"contact.merged", "contact.unmerged"})
MERGED, UNMERGED, IGNORED = "merged", "unmerged", "ignored"


@dataclass(frozen=True, order=True)
class MergeLink:
    """A contact merged into another, by the latest ``contact.merged`` naming it (not undone
    by a later ``contact.unmerged``)."""

    contact_id: str
    into: str
    event_id: str
    at: str
    """The merge's instant, as ``iso()`` text."""

    @property
    def since(self) -> datetime:
        return datetime.fromisoformat(self.at)


@dataclass(frozen=True)
class MergeState:
    """Where a contact named as a duplicate stands: ``merged`` into ``into`` (by
    ``event_id``), ``unmerged`` from it again, or the merge ``ignored`` because it would make a
    cycle of merges (``note`` says which)."""

    contact_id: str
    into: str
    event_id: str
    at: str
    status: str
    note: str = ""


# (occurred_at, event_id, type, survivor, duplicate): one merge or unmerge
MergeEvent = tuple[str, str, str, str, str]


def fold_merges(events: Iterable[MergeEvent]) -> dict[str, MergeState]:
    """Each duplicate's state, a function of the set of merge and unmerge events.

    1. Per duplicate, its events in (occurred_at, event_id) order: a merge links it to its
       subject; an unmerge from the contact it is linked to undoes the link (one from another
       contact changes nothing: it undoes a merge that a later one already replaced).
    2. Links that close a cycle (A into B, B into A, or longer): in each cycle the latest
       merge (by occurred_at, event_id) is the one that made it; it is ignored, and said so.
    """
    by_duplicate: dict[str, list[MergeEvent]] = defaultdict(list)
    for e in events:
        by_duplicate[e[4]].append(e)
    states: dict[str, MergeState] = {}
    for duplicate, history in by_duplicate.items():
        state: MergeState | None = None
        for at, event_id, event_type, survivor, _ in sorted(set(history)):
            if survivor == duplicate:
                continue  # refused at ingest; an old record of one is no link
            if event_type == "contact.merged":
                state = MergeState(duplicate, survivor, event_id, at, MERGED)
            elif state is not None and state.status == MERGED and state.into == survivor:
                state = MergeState(duplicate, survivor, event_id, at, UNMERGED)
        if state is not None:
            states[duplicate] = state
    links = {c: s for c, s in states.items() if s.status == MERGED}
    done: set[str] = set()
    for start in sorted(links):
        path: list[str] = []
        contact = start
        while contact in links and contact not in done and contact not in path:
            path.append(contact)
            contact = links[contact].into
        if contact in path:  # a cycle: from contact round to itself
            cycle = path[path.index(contact) :]
            last = max(cycle, key=lambda c: (links[c].at, links[c].event_id))
            s = links[last]
            ring = " -> ".join([*cycle[cycle.index(last) :], *cycle[: cycle.index(last)], last])
            note = f"ignored: merging {last} into {s.into} would make a cycle ({ring})"
            states[last] = MergeState(last, s.into, s.event_id, s.at, IGNORED, note)
        done.update(path)
    return states


def links_of(states: dict[str, MergeState]) -> dict[str, MergeLink]:
    """The merges in force: each merged contact's link to the contact it went into."""
    return {
        c: MergeLink(c, s.into, s.event_id, s.at) for c, s in states.items() if s.status == MERGED
    }


def merge_states(
    cursor: Cursor, profiles: Profiles, contacts: Iterable[str], as_of: str | None = None
) -> dict[str, MergeState]:
    """The state of every contact named as a duplicate in the groups of ``contacts`` (all
    their merges and unmerges, up to ``as_of``, an ``iso()`` instant, when given).

    A merge or unmerge event is kept under both of its contacts, so reading a contact's tells
    where it went and who came into it; the walk reads each contact it reaches once."""
    read: set[str] = set()
    found: set[MergeEvent] = set()
    frontier = set(contacts)
    until = "" if as_of is None else " AND occurred_at <= %s"
    for _ in range(4 * MAX_MERGE_HOPS):
        if not frontier:
            break
        extra: tuple[object, ...] = ("contact", *sorted(MERGE_TYPES))
        extra += () if as_of is None else (as_of,)
        rows = select_in(
            cursor,
            f"SELECT occurred_at, event_id, type, doc FROM {profiles.table('events')} "
            f"WHERE kind = %s AND type IN (%s, %s){until} AND entity_id IN ({{ids}})",
            frontier,
            *extra,
        )
        read |= frontier
        reached: set[str] = set()
        for at, event_id, event_type, doc in rows:
            d = orjson.loads(doc)
            duplicate, into = d["payload"]["merged_contact_id"], d["subject"]["contact_id"]
            found.add((at, event_id, event_type, into, duplicate))
            reached.update((duplicate, into))
        frontier = reached - read
    return fold_merges(found)


def merge_links(
    cursor: Cursor, profiles: Profiles, contacts: Iterable[str], as_of: str | None = None
) -> dict[str, MergeLink]:
    """The link of every contact merged into another in the groups of ``contacts`` (merges
    undone and merges that would make a cycle left out), as of ``as_of`` when given."""
    return links_of(merge_states(cursor, profiles, contacts, as_of))


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
