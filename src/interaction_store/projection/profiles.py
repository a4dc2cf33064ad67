"""Profiles: contacts, accounts, memberships, leads, opportunities and identities, as the other
views need.

Every profile event is kept per entity; an entity's row is folded again from all of its events
in (occurred_at, event_id) order whenever one arrives, so the rows are a function of the set of
events, not of the order they came in.

The live profiles view (built :meth:`Profiles.from_settings`, with a blind index) also keeps a
contact's event registrations and cases (without their personal fields: kinds ``registration``
and ``case``, read back by :mod:`interaction_store.projection.profile_read`) and the contact
lookup index (:mod:`interaction_store.projection.lookups`). The copies other views keep for
themselves do neither.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from interaction_store.codec import to_document
from interaction_store.events import (
    EVENT_TYPES,
    AccountMembership,
    ContactsMerged,
    ContactsUnmerged,
    IdentityLinked,
    IdentityUnlinked,
    InteractionEvent,
    OpportunityCreated,
    OpportunityLost,
    OpportunityStageChanged,
    OpportunityWon,
)
from interaction_store.projection.base import Projection, chunks, iso, placeholders, select_in
from interaction_store.projection.erasure import ERASED_TYPE, forget_document, named_by
from interaction_store.projection.lookups import DDL as LOOKUP_DDL
from interaction_store.projection.lookups import BlindIndex, erased_among
from interaction_store.projection.merges import MERGE_TYPES, MERGED, MergeState, merge_states
from interaction_store.views.base import Cursor, insert_rows, update_rows

if TYPE_CHECKING:
    from interaction_store.settings import Settings

PROFILE_PREFIXES = ("contact.", "account.", "lead.", "opportunity.", "identity.")
PROFILE_TYPES = frozenset(t for t in EVENT_TYPES if t.startswith(PROFILE_PREFIXES))

LEAD_STATUS = {
    "lead.created": "open",
    "lead.qualified": "qualified",
    "lead.returned_to_marketing": "open",
    "lead.disqualified": "disqualified",
}

OPPORTUNITY_STATUS = {"opportunity.won": "won", "opportunity.lost": "lost"}

_DEALS = (OpportunityCreated, OpportunityStageChanged, OpportunityWon, OpportunityLost)

LEAD_FIELDS = ("topic", "source")
"""A lead's own attributes (besides its parents): what scoring rules may test."""

ACTIVITY_TYPES = frozenset(
    t for t in EVENT_TYPES if t.startswith("event.") or t.startswith("activity.case_")
)
"""What the live profiles keep beside the profile events: registrations and cases."""

ACTIVITY_KINDS = {"event": "registration", "activity": "case"}
"""The entity kind an activity is kept under (per contact and event, or contact and case)."""

CONTACT_FIELDS = ("first_name", "last_name", "email", "phone", "is_child", "guardian_contact_id")
ACCOUNT_FIELDS = ("name", "street", "city", "postal_code", "country", "primary_contact_id")
"""An account's fields: company data, none of it personal."""
ACCOUNT_TYPES = ("account.created", "account.updated")

_EVENT_COLUMNS = ("kind", "entity_id", "occurred_at", "event_id", "type", "doc")
_EVENT_KEY = ("kind", "entity_id", "event_id")
_MERGE_COLUMNS = ("contact_id", "into_contact_id", "event_id", "merged_at", "status", "note")
_MERGED_INTO = 1 + len(CONTACT_FIELDS)  # the column of a contact's row that says where it went

_FOLDS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    # entity kind -> (table, its columns in the order a fold returns them, its key)
    "contact": (
        "contacts",
        ("contact_id", *CONTACT_FIELDS, "merged_into", "created_at", "updated_at"),
        ("contact_id",),
    ),
    "member": (
        "members",
        ("account_id", "contact_id", "member", "since"),
        ("account_id", "contact_id"),
    ),
    "account": (
        "accounts",
        ("account_id", *ACCOUNT_FIELDS, "created_at", "updated_at"),
        ("account_id",),
    ),
    "lead": (
        "leads",
        (
            "lead_id",
            "parent_contact_id",
            "parent_account_id",
            "topic",
            "source",
            "status",
            "created_at",
            "updated_at",
        ),
        ("lead_id",),
    ),
    "identity": ("identities", ("anonymous_id", "contact_id", "linked_at"), ("anonymous_id",)),
    "opportunity": (
        "opportunities",
        (
            "opportunity_id",
            "lead_id",
            "contact_id",
            "account_id",
            "name",
            "stage",
            "status",
            "value",
            "currency",
            "reason",
            "created_at",
            "closed_at",
            "updated_at",
        ),
        ("opportunity_id",),
    ),
}

_KEPT_BARE = frozenset(ACTIVITY_KINDS.values())
"""Kinds whose events are kept without their personal fields (a profile shows none of them)."""

TABLE_COLUMNS = {table: columns for table, columns, _ in _FOLDS.values()}
"""Each folded table's columns (the ``events`` table aside)."""


class Profiles(Projection):
    """Who is who: the rows the timeline, consent and lead-score views look people up in."""

    kind = "profiles"
    event_types = PROFILE_TYPES

    def __init__(self, instance: str | None = None, index: BlindIndex | None = None) -> None:
        """``index``: keep activities and the contact lookup index too (the live view)."""
        super().__init__(instance)
        self.index = index
        if index is not None:
            self.event_types = PROFILE_TYPES | ACTIVITY_TYPES

    @classmethod
    def from_settings(cls, settings: Settings, instance: str | None = None) -> Profiles:
        """The live kind: with the lookup index under the settings' master key."""
        from interaction_store.privacy.master import load_master_key

        return cls(instance, BlindIndex(lambda: load_master_key(settings)))

    @property
    def tables(self) -> dict[str, str]:
        extra = {"lookup": LOOKUP_DDL} if self.index is not None else {}
        return extra | {
            "events": "kind TEXT NOT NULL, entity_id TEXT NOT NULL, occurred_at TEXT NOT NULL, "
            "event_id TEXT NOT NULL, type TEXT NOT NULL, doc TEXT NOT NULL, "
            "PRIMARY KEY (kind, entity_id, event_id)",
            "contacts": "contact_id TEXT PRIMARY KEY, first_name TEXT, last_name TEXT, "
            "email TEXT, phone TEXT, is_child BOOLEAN, guardian_contact_id TEXT, "
            "merged_into TEXT, created_at TEXT, updated_at TEXT NOT NULL",
            "accounts": "account_id TEXT PRIMARY KEY, name TEXT, street TEXT, city TEXT, "
            "postal_code TEXT, country TEXT, primary_contact_id TEXT, created_at TEXT, "
            "updated_at TEXT NOT NULL",
            "members": "account_id TEXT NOT NULL, contact_id TEXT NOT NULL, "
            "member BOOLEAN NOT NULL, since TEXT NOT NULL, PRIMARY KEY (account_id, contact_id)",
            "leads": "lead_id TEXT PRIMARY KEY, parent_contact_id TEXT, parent_account_id TEXT, "
            "topic TEXT, source TEXT, status TEXT NOT NULL, created_at TEXT, "
            "updated_at TEXT NOT NULL",
            # reason: personal (why it was lost, in the seller's words), forgotten on erasure.
            "opportunities": "opportunity_id TEXT PRIMARY KEY, lead_id TEXT, contact_id TEXT, "
            "account_id TEXT, name TEXT, stage TEXT, status TEXT NOT NULL, "
            "value DOUBLE PRECISION, currency TEXT, reason TEXT, created_at TEXT, "
            "closed_at TEXT, updated_at TEXT NOT NULL",
            "identities": "anonymous_id TEXT PRIMARY KEY, contact_id TEXT NOT NULL, "
            "linked_at TEXT NOT NULL",
            # Every contact named as a duplicate: merged (its contacts row's merged_into),
            # unmerged again, or its merge ignored because it would make a cycle (the note).
            "merges": "contact_id TEXT PRIMARY KEY, into_contact_id TEXT NOT NULL, "
            "event_id TEXT NOT NULL, merged_at TEXT NOT NULL, status TEXT NOT NULL, "
            "note TEXT NOT NULL",
        }

    def indexes(self, dialect: str) -> list[str]:
        return [
            f"CREATE INDEX IF NOT EXISTS {self.table('members_by_contact')} "
            f"ON {self.table('members')} (contact_id)",
            f"CREATE INDEX IF NOT EXISTS {self.table('leads_by_contact')} "
            f"ON {self.table('leads')} (parent_contact_id)",
            f"CREATE INDEX IF NOT EXISTS {self.table('leads_by_account')} "
            f"ON {self.table('leads')} (parent_account_id)",
            # The timeline looks up who was merged into, or identified as, a contact.
            f"CREATE INDEX IF NOT EXISTS {self.table('contacts_by_merge')} "
            f"ON {self.table('contacts')} (merged_into)",
            f"CREATE INDEX IF NOT EXISTS {self.table('identities_by_contact')} "
            f"ON {self.table('identities')} (contact_id)",
            f"CREATE INDEX IF NOT EXISTS {self.table('opportunities_by_contact')} "
            f"ON {self.table('opportunities')} (contact_id)",
            f"CREATE INDEX IF NOT EXISTS {self.table('opportunities_by_lead')} "
            f"ON {self.table('opportunities')} (lead_id)",
        ] + (
            [
                f"CREATE INDEX IF NOT EXISTS {self.table('lookup_by_contact')} "
                f"ON {self.table('lookup')} (contact_id)"
            ]
            if self.index is not None
            else []
        )

    def wants(self, event: InteractionEvent) -> bool:
        return event.type.startswith(PROFILE_PREFIXES) or (
            self.index is not None and event.type in ACTIVITY_TYPES
        )

    def entities(self, event: InteractionEvent) -> list[tuple[str, str]]:
        """The (kind, id) of every entity an event changes."""
        s, p = event.subject, event.payload
        t = event.type
        if t in ACTIVITY_TYPES:
            ref = getattr(p, "event_ref", None) or getattr(p, "case_id", None)
            if self.index is None or s.contact_id is None or ref is None:
                return []
            return [(ACTIVITY_KINDS[event.channel], f"{s.contact_id}|{ref}")]
        if t in ("contact.created", "contact.updated") and s.contact_id:
            return [("contact", str(s.contact_id))]
        if isinstance(p, ContactsMerged | ContactsUnmerged) and s.contact_id:
            return [("contact", str(s.contact_id)), ("contact", str(p.merged_contact_id))]
        if isinstance(p, AccountMembership) and s.contact_id:
            return [("member", f"{p.account_id}|{s.contact_id}")]
        if t in ACCOUNT_TYPES:
            account = s.account_id
            return [("account", str(account))] if account else []
        if t.startswith("lead.") and s.lead_id and t != "lead.sales_ready":
            return [("lead", str(s.lead_id))]
        if isinstance(p, IdentityLinked | IdentityUnlinked):
            return [("identity", p.anonymous_id)]
        if isinstance(p, _DEALS):
            return [("opportunity", p.opportunity_id)]
        # Kept with each entity it erases, so its fold knows, whenever its events arrive.
        return named_by(event)

    def apply(self, cursor: Cursor, events: Sequence[InteractionEvent]) -> None:
        """1. keep each event under the entities it changes, an erased entity's without its
        personal fields; 2. forget those of entities erased by this batch; 3. fold again."""
        found: list[tuple[str, str, InteractionEvent]] = []
        touched: dict[str, set[str]] = defaultdict(set)
        for event in events:
            for kind, entity in self.entities(event):
                found.append((kind, entity, event))
                touched[kind].add(entity)
        if not found:
            return
        newly = {(k, e) for k, e, event in found if event.type == ERASED_TYPE}
        owners = {(k, e, ev.event_id): _owners(k, e, ev) for k, e, ev in found}
        erased = newly | self._erased(cursor, {o for os in owners.values() for o in os})
        rows = []
        for kind, entity, event in found:
            doc = to_document(event)
            if erased.intersection(owners[kind, entity, event.event_id]) or kind in _KEPT_BARE:
                doc = forget_document(doc)
            rows.append(
                (
                    kind,
                    entity,
                    iso(event.occurred_at),
                    str(event.event_id),
                    event.type,
                    orjson.dumps(doc).decode(),
                )
            )
        insert_rows(cursor, self.table("events"), _EVENT_COLUMNS, rows, _EVENT_KEY)
        if newly:
            touched["opportunity"].update(self._forget(cursor, newly))
        histories: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for kind, ids in touched.items():
            if kind in _KEPT_BARE:
                continue  # read back event by event: no row to fold
            history = histories[kind] = self._history(cursor, kind, sorted(ids))
            fold = getattr(self, f"_fold_{kind}")
            table, columns, key = _FOLDS[kind]
            states = self._merges(cursor, history) if kind == "contact" else {}
            folded = [fold(entity_id, docs) for entity_id, docs in history.items()]
            if states:
                folded = [_merged_into(row, states.get(row[0])) for row in folded]
            gone = [(entity_id,) for entity_id, row in zip(history, folded, strict=True) if not row]
            update = [c for c in columns if c not in key]
            insert_rows(cursor, self.table(table), columns, [r for r in folded if r], key, update)
            if gone:
                cursor.executemany(f"DELETE FROM {self.table(table)} WHERE {key[0]} = %s", gone)
        if self.index is not None:
            self._index(cursor, self.index, histories, erased)

    def _index(
        self,
        cursor: Cursor,
        index: BlindIndex,
        histories: dict[str, dict[str, list[dict[str, Any]]]],
        erased: set[tuple[str, str]],
    ) -> None:
        """Make the lookup rows of the contacts and visitors folded again: none for an erased
        contact, nor for a visitor linked to one (whichever arrived first)."""
        contacts: dict[str, dict[str, Any] | None] = {}
        for contact_id, docs in histories.get("contact", {}).items():
            if ("contact", contact_id) in erased:
                contacts[contact_id] = None
                continue
            values: dict[str, Any] = {}
            for d in docs:
                if d["type"] in ("contact.created", "contact.updated"):
                    values |= {k: v for k, v in d["payload"].items() if v is not None}
            contacts[contact_id] = values
        links = {
            a: docs[-1]["payload"]["contact_id"]
            for a, docs in histories.get("identity", {}).items()
        }
        gone = {c for (k, c) in erased if k == "contact"}
        gone |= erased_among(cursor, self.table("events"), set(links.values()) - gone)
        visitors = {a: (None if c in gone else c) for a, c in links.items()}
        index.refresh(cursor, self.table("lookup"), contacts, visitors)

    def _merges(
        self, cursor: Cursor, history: dict[str, list[dict[str, Any]]]
    ) -> dict[str, MergeState]:
        """The merge state of the groups of the contacts folded that a merge or unmerge
        names (a new one can end or make a cycle elsewhere in its group): recorded in the
        merges table, and the contacts it names added to ``history`` to be folded again."""
        named = {c for c, docs in history.items() if any(d["type"] in MERGE_TYPES for d in docs)}
        if not named:
            return {}
        states = merge_states(cursor, self, named)
        more = sorted(states.keys() - history.keys())
        if more:
            history.update(self._history(cursor, "contact", more))
        rows = [(c, s.into, s.event_id, s.at, s.status, s.note) for c, s in sorted(states.items())]
        update = _MERGE_COLUMNS[1:]
        insert_rows(cursor, self.table("merges"), _MERGE_COLUMNS, rows, ("contact_id",), update)
        return states

    def _erased(self, cursor: Cursor, subjects: set[tuple[str, str]]) -> set[tuple[str, str]]:
        """Those of ``subjects`` (contacts and leads) an erasure stored before names."""
        out: set[tuple[str, str]] = set()
        for kind in ("contact", "lead"):
            out |= {
                (kind, entity)
                for (entity,) in select_in(
                    cursor,
                    f"SELECT entity_id FROM {self.table('events')} WHERE kind = %s "
                    "AND type = %s AND entity_id IN ({ids})",
                    {e for k, e in subjects if k == kind},
                    kind,
                    ERASED_TYPE,
                )
            }
        return out

    def _forget(self, cursor: Cursor, entities: set[tuple[str, str]]) -> set[str]:
        """Rewrite the stored events of newly erased entities, and of the opportunities with
        them, without their personal fields; return those opportunities (to fold again)."""
        deals: set[str] = set()
        for kind, column in (("contact", "contact_id"), ("lead", "lead_id")):
            deals.update(
                entity
                for (entity,) in select_in(
                    cursor,
                    f"SELECT opportunity_id FROM {self.table('opportunities')} "
                    f"WHERE {column} IN ({{ids}})",
                    {e for k, e in entities if k == kind},
                )
            )
        changed: list[tuple[str, str, str, str]] = []
        for kind, ids in (
            ("contact", {e for k, e in entities if k == "contact"}),
            ("lead", {e for k, e in entities if k == "lead"}),
            ("opportunity", deals),
        ):
            for entity, event_id, doc in select_in(
                cursor,
                f"SELECT entity_id, event_id, doc FROM {self.table('events')} "
                "WHERE kind = %s AND entity_id IN ({ids})",
                ids,
                kind,
            ):
                stored = orjson.loads(doc)
                forgotten = forget_document(stored)
                if forgotten != stored:
                    changed.append((orjson.dumps(forgotten).decode(), kind, entity, event_id))
        update_rows(cursor, self.table("events"), ("doc",), _EVENT_KEY, changed)
        return deals

    def _history(
        self, cursor: Cursor, kind: str, ids: list[str]
    ) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for part in chunks(ids):
            cursor.execute(
                f"SELECT entity_id, doc FROM {self.table('events')} WHERE kind = %s "
                f"AND entity_id IN ({placeholders(len(part))}) "
                "ORDER BY entity_id, occurred_at, event_id",
                (kind, *part),
            )
            for entity_id, doc in cursor.fetchall():
                out[entity_id].append(orjson.loads(doc))
        return out

    # Each fold makes one entity's row from its whole history, oldest first.

    def _fold_contact(self, contact_id: str, docs: list[dict[str, Any]]) -> tuple[Any, ...]:
        row: dict[str, Any] = dict.fromkeys(CONTACT_FIELDS)
        created = None
        for d in docs:
            payload = d["payload"]
            if d["type"] in MERGE_TYPES:
                continue  # where it went takes its whole group (``_merges``)
            if d["type"] == "contact.created" and created is None:
                created = d["occurred_at"]
            for f in CONTACT_FIELDS:
                if payload.get(f) is not None:
                    row[f] = payload[f]
        return (
            contact_id,
            *(row[f] for f in CONTACT_FIELDS),
            None,
            created and iso_text(created),
            iso_of(docs[-1]),
        )

    def _fold_member(self, key: str, docs: list[dict[str, Any]]) -> tuple[Any, ...]:
        account_id, contact_id = key.split("|", 1)
        last = docs[-1]
        return (account_id, contact_id, last["type"] == "contact.joined_account", iso_of(last))

    def _fold_account(self, account_id: str, docs: list[dict[str, Any]]) -> tuple[Any, ...]:
        # Like a contact: each field as the latest event that gives it says; an update that
        # arrives before its account.created leaves created_at null until that one comes.
        row: dict[str, Any] = dict.fromkeys(ACCOUNT_FIELDS)
        created = None
        for d in docs:
            if d["type"] == "account.created" and created is None:
                created = iso_of(d)
            for f in ACCOUNT_FIELDS:
                if d["payload"].get(f) is not None:
                    row[f] = d["payload"][f]
        return (account_id, *(row[f] for f in ACCOUNT_FIELDS), created, iso_of(docs[-1]))

    def _fold_lead(self, lead_id: str, docs: list[dict[str, Any]]) -> tuple[Any, ...]:
        parent_contact = parent_account = topic = source = created = None
        status = "open"
        for d in docs:
            p = d["payload"]
            if d["type"] == "lead.created":
                parent_contact = p.get("parent_contact_id") or parent_contact
                parent_account = p.get("parent_account_id") or parent_account
                topic = p.get("topic") or topic
                source = p.get("source") or source
                created = created or iso_of(d)
            elif d["type"] == "lead.updated":
                if p.get("parent_contact_id") or p.get("parent_account_id"):
                    # The parents move together: the one not named is cleared.
                    parent_contact = p.get("parent_contact_id")
                    parent_account = p.get("parent_account_id")
                topic = p["topic"] if p.get("topic") is not None else topic
                source = p.get("source") or source
            status = LEAD_STATUS.get(d["type"], status)
        return (
            lead_id,
            parent_contact,
            parent_account,
            topic,
            source,
            status,
            created,
            iso_of(docs[-1]),
        )

    def _fold_opportunity(self, deal_id: str, docs: list[dict[str, Any]]) -> tuple[Any, ...]:
        row: dict[str, Any] = dict.fromkeys(_FOLDS["opportunity"][1])
        row.update(opportunity_id=deal_id, status="open")
        for d in docs:
            p, s = d["payload"], d["subject"]
            for key in ("contact_id", "account_id"):
                row[key] = s.get(key) or row[key]
            for key in ("lead_id", "name", "stage", "value", "currency", "reason"):
                if p.get(key) not in (None, ""):
                    row[key] = p[key]
            if d["type"] == "opportunity.created":
                row["created_at"] = row["created_at"] or iso_of(d)
            if d["type"] in OPPORTUNITY_STATUS:
                row["status"] = OPPORTUNITY_STATUS[d["type"]]
                row["closed_at"] = iso_of(d)
                row["reason"] = p.get("reason") or None
        row["updated_at"] = iso_of(docs[-1])
        return tuple(row.values())

    def _fold_identity(self, anonymous_id: str, docs: list[dict[str, Any]]) -> tuple[Any, ...]:
        """The contact the visitor is linked to; none (the row goes) once unlinked from it."""
        linked: dict[str, Any] | None = None
        for d in docs:
            if d["type"] == "identity.linked":
                linked = d
            elif (
                d["type"] == "identity.unlinked"
                and linked is not None
                and d["payload"]["contact_id"] == linked["payload"]["contact_id"]
            ):
                linked = None  # an unlink from another contact undoes nothing current
        if linked is None:
            return ()
        return (anonymous_id, linked["payload"]["contact_id"], iso_of(linked))


def _owners(kind: str, entity: str, event: InteractionEvent) -> set[tuple[str, str]]:
    """Whose erasure forgets this stored event: its entity, and an opportunity's people."""
    owners = {(kind, entity)}
    if kind == "opportunity":
        s = event.subject
        owners.update((k, str(i)) for k, i in (("contact", s.contact_id), ("lead", s.lead_id)) if i)
    return owners


def iso_text(text: str) -> str:
    """An ISO timestamp from a stored document, normalised like :func:`iso`."""
    from datetime import datetime

    return iso(datetime.fromisoformat(text))


def iso_of(doc: dict[str, Any]) -> str:
    return iso_text(doc["occurred_at"])


def _merged_into(row: tuple[Any, ...], state: MergeState | None) -> tuple[Any, ...]:
    """A contact's row saying the contact it is merged into, by its group's merge state."""
    into = state.into if state is not None and state.status == MERGED else None
    return (*row[:_MERGED_INTO], into, *row[_MERGED_INTO + 1 :])
