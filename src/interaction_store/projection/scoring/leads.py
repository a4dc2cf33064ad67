"""Which contacts and visitors score a lead (its parent contact or its account's members, with
merged contacts and linked visitors), read from the profiles the lead-scores view keeps."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from interaction_store.events import InteractionEvent
from interaction_store.projection.base import select_in
from interaction_store.projection.merges import merged_groups
from interaction_store.projection.profiles import LEAD_STATUS, Profiles
from interaction_store.projection.scoring.points import Match, micros
from interaction_store.views.base import Cursor

KIND = "lead_scores"
PROFILES_SUFFIX = "_profiles"
NO_PARENT = "lead has neither a parent contact nor a parent account"
NOT_CREATED = "no lead.created event yet, so the lead's parent is not known"
ANONYMOUS = "anonymous:"
RETURNED = "lead.returned_to_marketing"


@dataclass(frozen=True)
class Episode:
    """A stretch of a lead's life in which it becomes sales-ready at most once: the first
    from its creation, then one from each return to marketing, each up to the next."""

    number: int
    returned_by: str | None
    """The ``lead.returned_to_marketing`` event that opened it; None for the first."""
    start: str
    end: str | None
    """The next episode's start (excluded); None for the current one."""

    @property
    def key(self) -> str:
        return self.returned_by or ""


def subject_key(event: InteractionEvent) -> str | None:
    """Who an interaction is attributed to: its contact, else its anonymous visitor."""
    s = event.subject
    if s.contact_id is not None:
        return str(s.contact_id)
    if s.anonymous_id is not None:
        return ANONYMOUS + s.anonymous_id
    return None


class TableNames:
    """The table names of one lead-scores view and of the profiles it keeps for itself."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.profiles = Profiles(f"{instance}{PROFILES_SUFFIX}")

    def own(self, short: str) -> str:
        return f"{self.instance}__{short}"

    def prof(self, short: str) -> str:
        return self.profiles.table(short)


@dataclass
class LeadContext:
    """What scoring needs to know about a lead, from the profiles."""

    lead_id: str
    parent_contact_id: str | None
    parent_account_id: str | None
    lead_status: str
    created_at: str | None
    attributes: dict[str, str | None] = field(default_factory=dict)
    """The lead's own attributes (topic, source): what a rule's ``lead`` conditions test."""
    history: list[tuple[str, str, str]] = field(default_factory=list)
    """(occurred_at, type, event_id) of the lead's own events, oldest first."""
    subjects: list[str] = field(default_factory=list)
    """Contacts and ``anonymous:<id>`` visitors whose matches count."""

    @property
    def reason(self) -> str | None:
        if self.created_at is None:
            return NOT_CREATED
        if self.parent_contact_id is None and self.parent_account_id is None:
            return NO_PARENT
        return None

    def open_at(self, instant: str) -> bool:
        status = None
        for at, event_type, _ in self.history:
            if at > instant:
                break
            status = LEAD_STATUS.get(event_type, status)
        return status == "open"

    def episodes(self) -> list[Episode]:
        """The lead's scoring episodes, oldest first: defined by its returns to marketing in
        (occurred_at, event_id) order, so by the set of events, whatever their arrival. A
        return from before the lead's creation opens none."""
        if self.created_at is None:
            return []
        starts: list[tuple[str, str | None]] = [(self.created_at, None)]
        starts += [
            (at, eid) for at, t, eid in self.history if t == RETURNED and at >= self.created_at
        ]
        return [
            Episode(i, eid, at, starts[i + 1][0] if i + 1 < len(starts) else None)
            for i, (at, eid) in enumerate(starts)
        ]


def column_in(
    cursor: Cursor, table: str, column: str, key: str, ids: Iterable[str], member: bool = False
) -> list[str]:
    """``column`` of the rows whose ``key`` is one of ``ids`` (only current members)."""
    only = "member = %s AND " if member else ""
    sql = f"SELECT {column} FROM {table} WHERE {only}{key} IN ({{ids}})"
    return [
        r[0] for r in (select_in(cursor, sql, ids, True) if member else select_in(cursor, sql, ids))
    ]


def leads_of(cursor: Cursor, n: TableNames, contacts: set[str], accounts: set[str]) -> set[str]:
    """The leads whose score the interactions of ``contacts`` (or the membership of
    ``accounts``) can change."""
    everyone = set().union(*merged_groups(cursor, n.profiles, contacts).values())
    leads = set(column_in(cursor, n.prof("leads"), "lead_id", "parent_contact_id", everyone))
    accounts = accounts | set(
        column_in(cursor, n.prof("members"), "account_id", "contact_id", everyone, member=True)
    )
    return leads | set(column_in(cursor, n.prof("leads"), "lead_id", "parent_account_id", accounts))


def lead_contexts(
    cursor: Cursor, n: TableNames, lead_ids: Iterable[str], as_of: str | None = None
) -> dict[str, LeadContext]:
    """The leads (those the profiles know), with the contacts and visitors that score them:
    an account's members of today, or of ``as_of`` (an ISO instant) when one is given."""
    contexts = {
        lead_id: LeadContext(
            lead_id, contact, account, status, created, {"topic": topic, "source": source}
        )
        for lead_id, contact, account, status, created, topic, source in select_in(
            cursor,
            "SELECT lead_id, parent_contact_id, parent_account_id, status, created_at, topic, "
            f"source FROM {n.prof('leads')} WHERE lead_id IN ({{ids}})",
            lead_ids,
        )
    }
    for lead_id, at, event_type, event_id in select_in(
        cursor,
        f"SELECT entity_id, occurred_at, type, event_id FROM {n.prof('events')} "
        "WHERE kind = %s AND entity_id IN ({ids}) ORDER BY entity_id, occurred_at, event_id",
        contexts,
        "lead",
    ):
        contexts[lead_id].history.append((at, event_type, event_id))
    scored = [c for c in contexts.values() if c.reason is None]
    accounts = {
        c.parent_account_id for c in scored if c.parent_account_id and not c.parent_contact_id
    }
    by_account = members_of(cursor, n, accounts, as_of)
    base = {
        c.lead_id: (
            [c.parent_contact_id]
            if c.parent_contact_id is not None
            else by_account.get(c.parent_account_id or "", [])
        )
        for c in scored
    }
    groups = merged_groups(cursor, n.profiles, {x for xs in base.values() for x in xs})
    visitors: dict[str, list[str]] = defaultdict(list)
    for contact, anonymous_id in select_in(
        cursor,
        f"SELECT contact_id, anonymous_id FROM {n.prof('identities')} "
        "WHERE contact_id IN ({ids})",
        {x for g in groups.values() for x in g},
    ):
        visitors[contact].append(ANONYMOUS + anonymous_id)
    for c in scored:
        contacts = sorted({x for b in base[c.lead_id] for x in groups[b]})
        c.subjects = contacts + sorted(v for x in contacts for v in visitors[x])
    return contexts


def members_of(
    cursor: Cursor, n: TableNames, accounts: Iterable[str], as_of: str | None = None
) -> dict[str, list[str]]:
    """Each account's members: today's, or those of ``as_of`` (by their last joined or left
    event at or before it; a contact who left since was a member then, one who joined since
    was not)."""
    by_account: dict[str, list[str]] = defaultdict(list)
    if as_of is None:
        for account, contact in select_in(
            cursor,
            f"SELECT account_id, contact_id FROM {n.prof('members')} WHERE member = %s "
            "AND account_id IN ({ids})",
            accounts,
            True,
        ):
            by_account[account].append(contact)
        return by_account
    # Every contact that was ever a member has a row (member or not); their events say when.
    pairs = select_in(
        cursor,
        f"SELECT account_id, contact_id FROM {n.prof('members')} WHERE account_id IN ({{ids}})",
        accounts,
    )
    last: dict[str, str] = {}
    for entity, event_type in select_in(
        cursor,
        f"SELECT entity_id, type FROM {n.prof('events')} WHERE kind = %s AND occurred_at <= %s "
        "AND entity_id IN ({ids}) ORDER BY entity_id, occurred_at, event_id",
        (f"{account}|{contact}" for account, contact in pairs),
        "member",
        as_of,
    ):
        last[entity] = event_type
    for account, contact in sorted(pairs):
        if last.get(f"{account}|{contact}") == "contact.joined_account":
            by_account[account].append(contact)
    return by_account


def load_matches(
    cursor: Cursor, n: TableNames, subjects: Iterable[str]
) -> dict[tuple[str, str], list[Match]]:
    """(model, subject) -> its matches."""
    out: dict[tuple[str, str], list[Match]] = defaultdict(list)
    for model, event_id, rule_id, subject, event_type, at, points, once in select_in(
        cursor,
        "SELECT model, event_id, rule_id, subject_key, type, occurred_at, points, once_key "
        f"FROM {n.own('matches')} WHERE subject_key IN ({{ids}})",
        subjects,
    ):
        match = Match(event_id, rule_id, event_type, subject, at, micros(at), float(points), once)
        out[(model, subject)].append(match)
    return out
