"""Consent over a merged group: each contact's own state (folded from its own events, as
always) combined by the ``[merges]`` rules of ``consent.toml`` when a reader asks.

Combining at read time keeps the rows each contact's own: a merge arriving before or after
the duplicate's events, or undone later, changes what is read, never what was stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from interaction_store.projection.base import iso
from interaction_store.projection.consent.rules import ConsentRules
from interaction_store.projection.consent.state import (
    LEVELS,
    PREFERENCES,
    ConsentState,
    ListMembership,
    PointConsent,
    Recorded,
    Source,
)
from interaction_store.projection.merges import MergeLink, together_since

# (contact, what it recorded): a value of one contact of the group.
Held = tuple[str, Recorded[Any]]


def group_state(
    contact_id: str,
    members: Sequence[str],
    states: dict[str, ConsentState],
    links: dict[str, MergeLink],
    rules: ConsentRules,
) -> ConsentState:
    """The consent of ``contact_id``'s group. ``members``: the group, the contact it lives on
    first; ``states``: the own state of each member the consent view knows."""
    root = members[0]
    own = {m: _tagged(s, m, contact_id, links) for m, s in states.items()}
    base = own.get(contact_id) or next(iter(own.values()))

    def held(pick: Callable[[ConsentState], Recorded[Any]]) -> list[Held]:
        return [(m, pick(s)) for m, s in own.items() if pick(s).source is not None]

    merge = rules.merges
    preferences = {
        name: _restrictive(
            held(_preference(name)),
            lambda v: int(bool(v)),
            merge.preferences == "latest",
            links,
        )
        or base.preferences[name]
        for name in PREFERENCES
    }
    level = _restrictive(
        held(lambda s: s.level), lambda v: LEVELS[v], merge.level == "latest", links
    )
    # A child anywhere in the group is a child (the cautious reading, whatever the rules).
    child = _restrictive(held(lambda s: s.is_child), lambda v: int(not v), False, links)

    def survivor(pick: Callable[[ConsentState], Recorded[Any]]) -> Recorded[Any]:
        values = held(pick)
        ours = [r for m, r in values if m == root]
        return ours[0] if ours else max((r for _, r in values), key=_at, default=pick(base))

    lists: dict[str, ListMembership] = {}
    points: dict[tuple[str, str, str, str | None], PointConsent] = {}
    for s in own.values():
        for list_id, m in s.lists.items():
            if list_id not in lists or _src_at(m.source) > _src_at(lists[list_id].source):
                lists[list_id] = m
        for p in s.contact_points:
            key = (p.channel, p.contact_point, p.purpose, p.topic)
            if key not in points or _src_at(p.source) > _src_at(points[key].source):
                points[key] = p
    return ConsentState(
        contact_id=contact_id,
        as_of=base.as_of,
        preferences=preferences,
        level=level or base.level,
        is_child=child or base.is_child,
        guardian_contact_id=survivor(lambda s: s.guardian_contact_id),
        email=survivor(lambda s: s.email),
        phone=survivor(lambda s: s.phone),
        lists=dict(sorted(lists.items())),
        contact_points=[points[k] for k in sorted(points, key=_point_order)],
        undeliverable=_undeliverable(own),
        events=sum(s.events for s in own.values()),
        merged=sorted(links[m] for m in members if m in links),
    )


def _restrictive(
    values: list[Held], rank: Callable[[Any], int], latest: bool, links: dict[str, MergeLink]
) -> Recorded[Any] | None:
    """One value of the group from the members' own (None: nobody recorded one).

    ``latest``: the latest. Else a value stands unless a later one was given on a contact by
    then merged with its own (that one speaks for both); of those standing, the lowest
    ``rank`` wins, the latest of equals giving the reason."""
    if not values:
        return None
    if latest:
        return max((r for _, r in values), key=_at)
    standing = [
        (m, r)
        for m, r in values
        if not any(
            x != m and _at(rx) > _at(r) and _merged_before(m, x, rx, links) for x, rx in values
        )
    ]
    return max(standing, key=lambda held: (-rank(held[1].value), _at(held[1])))[1]


def _merged_before(a: str, b: str, given: Recorded[Any], links: dict[str, MergeLink]) -> bool:
    together = together_since(a, b, links)
    return together is not None and given.source is not None and iso(given.source.since) > together


def _undeliverable(own: dict[str, ConsentState]) -> dict[str, Source]:
    """Each address that hard-bounced on a contact of the group, unless a contact of the group
    opted it in, or took it as its address, after the bounce."""
    bounced: dict[str, Source] = {}
    for s in own.values():
        for address, src in s.undeliverable.items():
            if address not in bounced or _src_at(src) > _src_at(bounced[address]):
                bounced[address] = src
    confirmed: dict[str, list[Source]] = {}
    for s in own.values():
        if s.email.value is not None and s.email.source is not None:
            confirmed.setdefault(s.email.value, []).append(s.email.source)
        for p in s.contact_points:
            if p.channel == "email" and p.status == "opted_in":
                confirmed.setdefault(p.contact_point, []).append(p.source)
    return {
        address: src
        for address, src in sorted(bounced.items())
        if not any(_src_at(c) > _src_at(src) for c in confirmed.get(address, []))
    }


def _tagged(
    state: ConsentState, member: str, contact_id: str, links: dict[str, MergeLink]
) -> ConsentState:
    """A member's state with each source naming the member, when it is not the contact read."""
    if member == contact_id:
        return state
    link = links.get(member)

    def tag(src: Source) -> Source:
        return Source(src.since, src.event_id, src.event_type, src.note, member, link)

    return state.with_sources(tag)


def _preference(name: str) -> Callable[[ConsentState], Recorded[Any]]:
    return lambda s: s.preferences[name]


def _at(r: Recorded[Any]) -> tuple[datetime, str]:
    return r.at


def _src_at(src: Source) -> tuple[datetime, str]:
    return (src.since, src.event_id or "")


def _point_order(key: tuple[str, str, str, str | None]) -> tuple[str, str, str, str]:
    channel, point, purpose, topic = key
    return (channel, point, purpose, topic or "")
