"""The consent projection: one audit row per consent-relevant event, folded again per contact
into the state tables whenever one arrives; the merges between contacts, kept as a profiles
fold of their own; and reading a contact back from them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson

from interaction_store.events import InteractionEvent
from interaction_store.projection.base import Projection, chunks, iso, placeholders, select_in
from interaction_store.projection.consent.ledger import CONSENT_TYPES, Ledger, facts_of, src_from
from interaction_store.projection.consent.rules import ConsentRules, RulesFile
from interaction_store.projection.consent.state import CONTACT_FIELDS, PREFERENCES, UnknownContact
from interaction_store.projection.erasure import ERASED_TEXT, ERASED_TYPE, ErasedSubjects
from interaction_store.projection.merges import MERGE_TYPES
from interaction_store.projection.profiles import Profiles
from interaction_store.settings import Settings
from interaction_store.views.base import Cursor, insert_rows, update_rows

_AUDIT_COLUMNS = ("contact_id", "occurred_at", "event_id", "type", "source", "facts", "changes")
_AUDIT_KEY = ("contact_id", "event_id")
_STATE_TABLES = ("contacts", "sources", "lists", "contact_points", "undeliverable")
MERGES_SUFFIX = "_profiles"
_ERASED_FACTS = {"email": ERASED_TEXT, "phone": ERASED_TEXT, "contact_point": ERASED_TEXT}
"""What an erased contact's facts keep of each personal value: a stand-in, so the fold still
runs (the decision for an erased contact is no, whatever its rows say)."""


def forget_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """An audit row's facts without the person's addresses, numbers and bounce texts."""
    out = {
        k: _ERASED_FACTS[k] if k in _ERASED_FACTS and v is not None else v for k, v in facts.items()
    }
    if out.get("reason"):
        out["reason"] = ""  # a bounce's text often quotes the address
    return out


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


class Consent(Projection):
    """The consent view; ``rules`` default to ``projections/consent.toml``.

    It keeps the ``contact.merged`` events in a profiles fold of its own (like the lead
    scores), so that a replay or a shadow copy is rebuilt from the log alone; each contact's
    rows stay its own, and a reader combines a merged group's (``group``)."""

    kind = "consent"

    def __init__(
        self,
        instance: str | None = None,
        rules: ConsentRules | RulesFile | None = None,
        opt_outs: Iterable[str] | None = None,
    ) -> None:
        super().__init__(instance)
        if len(self.instance) > 41 - len(MERGES_SUFFIX):  # its merges' name must fit too
            raise ValueError(f"a consent view name has at most 32 characters: {instance!r}")
        self.merges = Profiles(f"{self.instance}{MERGES_SUFFIX}")
        self._rules = rules if rules is not None else ConsentRules.load()
        # The fold's opt-outs stay those the view was built with: the rows depend on them, so
        # new ones take a replay, not a reload (nor a restart) that would mix the two.
        self.opt_outs = (
            frozenset(opt_outs) if opt_outs is not None else self.rules.opt_outs.enabled()
        )
        self.types = CONSENT_TYPES | self.opt_outs | MERGE_TYPES | {ERASED_TYPE}
        self.erasures = ErasedSubjects(self.table, follow_visitors=False)
        self.event_types = self.types
        # Each table's column names, in order (its definition up to the key clause).
        self._columns = {
            name: tuple(c.split()[0] for c in columns.split(", PRIMARY KEY")[0].split(", "))
            for name, columns in self._own_tables.items()
        }

    @property
    def rules(self) -> ConsentRules:
        """The rules in force. Built from a registered definition, ``consent.toml`` is read
        again when it changes (decisions and defaults follow at once); :attr:`opt_outs` do
        not change with it."""
        rules = self._rules
        return rules.rules if isinstance(rules, RulesFile) else rules

    @classmethod
    def from_settings(cls, settings: Settings, instance: str | None = None) -> Consent:
        """The view with ``consent.toml`` from the settings' projections folder."""
        return cls(instance, ConsentRules.load(settings.projections_dir))

    @classmethod
    def default_definition(cls, settings: Settings) -> dict[str, Any]:
        """What the rows depend on, recorded with the view: the opt-outs of ``consent.toml``
        (its other rules are read when deciding)."""
        rules = ConsentRules.load(settings.projections_dir)
        return {"opt_outs": sorted(rules.opt_outs.enabled())}

    @classmethod
    def from_definition(
        cls, instance: str, definition: dict[str, Any], settings: Settings
    ) -> Consent:
        """The view a recorded definition describes: its opt-outs (a view registered before
        they were recorded: the file's), and ``consent.toml`` read again when it changes."""
        opt_outs = definition.get("opt_outs")
        return cls(instance, RulesFile.of(settings.projections_dir), opt_outs)

    def table(self, name: str) -> str:
        # The merges' tables are part of this view ("profiles.<table>"), named by them.
        if name.startswith("profiles."):
            return self.merges.table(name.removeprefix("profiles."))
        return super().table(name)

    @property
    def tables(self) -> dict[str, str]:
        return self._own_tables | {f"profiles.{k}": v for k, v in self.merges.tables.items()}

    @property
    def _own_tables(self) -> dict[str, str]:
        src = "since TEXT NOT NULL, event_id TEXT NOT NULL, event_type TEXT NOT NULL, note TEXT"
        return {
            # Every consent-relevant event: its own facts, and what it changed once resolved.
            "audit": "contact_id TEXT NOT NULL, occurred_at TEXT NOT NULL, "
            "event_id TEXT NOT NULL, type TEXT NOT NULL, source TEXT NOT NULL, "
            "facts TEXT NOT NULL, changes TEXT NOT NULL, PRIMARY KEY (contact_id, event_id)",
            # The current state; NULL: never recorded (the rules' defaults apply).
            "contacts": "contact_id TEXT PRIMARY KEY, allow_email BOOLEAN, "
            "allow_bulk_email BOOLEAN, allow_prefill BOOLEAN, track_email BOOLEAN, "
            "level TEXT, email TEXT, phone TEXT, is_child BOOLEAN, guardian_contact_id TEXT, "
            "events INTEGER NOT NULL, first_event_at TEXT NOT NULL, last_event_at TEXT NOT NULL",
            # Which event set each value of `contacts`.
            "sources": f"contact_id TEXT NOT NULL, fact TEXT NOT NULL, {src}, "
            "PRIMARY KEY (contact_id, fact)",
            "lists": "contact_id TEXT NOT NULL, list_id TEXT NOT NULL, list_name TEXT NOT NULL, "
            f"member BOOLEAN NOT NULL, {src}, PRIMARY KEY (contact_id, list_id)",
            # topic '' is "every topic" (a key column cannot be NULL in PostgreSQL).
            "contact_points": "contact_id TEXT NOT NULL, channel TEXT NOT NULL, "
            "contact_point TEXT NOT NULL, purpose TEXT NOT NULL, topic TEXT NOT NULL, "
            f"status TEXT NOT NULL, {src}, "
            "PRIMARY KEY (contact_id, channel, contact_point, purpose, topic)",
            "undeliverable": f"contact_id TEXT NOT NULL, address TEXT NOT NULL, {src}, "
            "PRIMARY KEY (contact_id, address)",
        } | self.erasures.tables

    def indexes(self, dialect: str) -> list[str]:
        return [
            f"CREATE INDEX IF NOT EXISTS {self.table('lists_by_list')} "
            f"ON {self.table('lists')} (list_id, member)",
            *self.merges.indexes(dialect),
        ]

    def wants(self, event: InteractionEvent) -> bool:
        return event.type in self.types and event.subject.contact_id is not None

    def apply(self, cursor: Cursor, events: Sequence[InteractionEvent]) -> None:
        self.merges.apply(cursor, [e for e in events if e.type in MERGE_TYPES])
        newly = {sid for kind, sid in self.erasures.record(cursor, events) if kind == "contact"}
        rows = []
        for event in events:
            contact_id = event.subject.contact_id
            if contact_id is None:
                continue
            facts = facts_of(event, self.opt_outs)
            if facts is None:
                continue
            rows.append(
                (
                    str(contact_id),
                    iso(event.occurred_at),
                    str(event.event_id),
                    event.type,
                    event.source,
                    _dumps(facts),
                    "",
                )
            )
        contacts = {r[0] for r in rows}
        erased = newly | {
            sid for _, sid in self.erasures.among(cursor, [("contact", c) for c in contacts])
        }
        if erased:  # an erased contact's facts are never written in clear
            rows = [
                (*r[:5], _dumps(forget_facts(orjson.loads(r[5]))), r[6]) if r[0] in erased else r
                for r in rows
            ]
        insert_rows(cursor, self.table("audit"), _AUDIT_COLUMNS, rows, _AUDIT_KEY)
        if newly:
            contacts |= self._forget(cursor, newly)
        if contacts:
            self._refold(cursor, sorted(contacts))

    def _forget(self, cursor: Cursor, contact_ids: set[str]) -> set[str]:
        """Rewrite newly erased contacts' stored facts without personal values; the contacts
        that have rows (their state is folded again from them)."""
        found: set[str] = set()
        changed: list[tuple[str, str, str]] = []
        for contact_id, event_id, facts in select_in(
            cursor,
            f"SELECT contact_id, event_id, facts FROM {self.table('audit')} "
            "WHERE contact_id IN ({ids})",
            contact_ids,
        ):
            found.add(contact_id)
            forgotten = _dumps(forget_facts(orjson.loads(facts)))
            if forgotten != facts:
                changed.append((forgotten, contact_id, event_id))
        update_rows(cursor, self.table("audit"), ("facts",), _AUDIT_KEY, changed)
        return found

    def _refold(self, cursor: Cursor, contact_ids: list[str]) -> None:
        """Fold each contact's audit again, store what each row changed, rewrite its state."""
        history: dict[str, list[tuple[str, str, str, str, str]]] = defaultdict(list)
        for part in chunks(contact_ids):
            cursor.execute(
                f"SELECT contact_id, occurred_at, event_id, type, facts, changes "
                f"FROM {self.table('audit')} WHERE contact_id IN ({placeholders(len(part))}) "
                "ORDER BY contact_id, occurred_at, event_id",
                part,
            )
            for contact_id, occurred_at, event_id, event_type, facts, stored in cursor.fetchall():
                history[contact_id].append((occurred_at, event_id, event_type, facts, stored))
        resolved: list[tuple[str, str, str]] = []
        state: dict[str, list[tuple[Any, ...]]] = {name: [] for name in _STATE_TABLES}
        for contact_id in contact_ids:
            ledger = Ledger()
            for occurred_at, event_id, event_type, facts, stored in history[contact_id]:
                changes = ledger.resolve(event_type, orjson.loads(facts))
                text = _dumps(changes)
                if text != stored:
                    resolved.append((text, contact_id, event_id))
                ledger.apply(changes, occurred_at, event_id, event_type)
            for name, table_rows in _state_rows(contact_id, ledger).items():
                state[name].extend(table_rows)
        update_rows(cursor, self.table("audit"), ("changes",), _AUDIT_KEY, resolved)
        # Rewritten whole: a late event can move a row's key (a STOP that now knows the number).
        for part in chunks(contact_ids):
            for name in _STATE_TABLES:
                cursor.execute(
                    f"DELETE FROM {self.table(name)} "
                    f"WHERE contact_id IN ({placeholders(len(part))})",
                    part,
                )
        for name, table_rows in state.items():
            insert_rows(cursor, self.table(name), self._columns[name], table_rows)

    # ------------------------------------------------------------------ reading

    def _read(self, cursor: Cursor, contact_id: str, as_of: datetime | None) -> Ledger:
        """A contact's consent now (from the state tables) or as of an instant (its audit)."""
        ledger = Ledger()
        if as_of is not None:
            cursor.execute(
                f"SELECT occurred_at, event_id, type, changes FROM {self.table('audit')} "
                "WHERE contact_id = %s AND occurred_at <= %s ORDER BY occurred_at, event_id",
                (contact_id, iso(as_of)),
            )
            for occurred_at, event_id, event_type, changes in cursor.fetchall():
                ledger.apply(orjson.loads(changes), occurred_at, event_id, event_type)
            if ledger.events == 0:
                self._known(cursor, contact_id)
            return ledger
        cursor.execute(
            f"SELECT {', '.join(PREFERENCES)}, level, {', '.join(CONTACT_FIELDS)}, events, "
            f"first_event_at, last_event_at FROM {self.table('contacts')} WHERE contact_id = %s",
            (contact_id,),
        )
        row = cursor.fetchone()
        if row is None:
            raise UnknownContact(contact_id, self.instance)
        values = dict(zip((*PREFERENCES, "level", *CONTACT_FIELDS), row[:9], strict=True))
        ledger.events, ledger.first, ledger.last = int(row[9]), row[10], row[11]
        cursor.execute(
            f"SELECT fact, since, event_id, event_type, note FROM {self.table('sources')} "
            "WHERE contact_id = %s",
            (contact_id,),
        )
        for name, *src in cursor.fetchall():
            value = values[name]
            if name in PREFERENCES:
                ledger.prefs[name] = (bool(value), src_from(src))
            else:
                value = bool(value) if name == "is_child" else value
                ledger.facts[name] = (value, src_from(src))
        cursor.execute(
            f"SELECT list_id, list_name, member, since, event_id, event_type, note "
            f"FROM {self.table('lists')} WHERE contact_id = %s",
            (contact_id,),
        )
        for list_id, name, member, *src in cursor.fetchall():
            ledger.lists[list_id] = (bool(member), name, src_from(src))
        cursor.execute(
            f"SELECT channel, contact_point, purpose, topic, status, since, event_id, "
            f"event_type, note FROM {self.table('contact_points')} WHERE contact_id = %s",
            (contact_id,),
        )
        for channel, point, purpose, topic, status, *src in cursor.fetchall():
            ledger.points[(channel, point, purpose, topic)] = (status, src_from(src))
        cursor.execute(
            f"SELECT address, since, event_id, event_type, note "
            f"FROM {self.table('undeliverable')} WHERE contact_id = %s",
            (contact_id,),
        )
        for address, *src in cursor.fetchall():
            ledger.bounced[address] = src_from(src)
        return ledger

    def events_by_type(
        self, cursor: Cursor, contact_id: str, as_of: datetime | None
    ) -> dict[str, int]:
        """How many consent-relevant events of each type a contact has (up to ``as_of``)."""
        until = "" if as_of is None else " AND occurred_at <= %s"
        cursor.execute(
            f"SELECT type, COUNT(*) FROM {self.table('audit')} WHERE contact_id = %s{until} "
            "GROUP BY type",
            (contact_id,) if as_of is None else (contact_id, iso(as_of)),
        )
        return {t: int(n) for t, n in cursor.fetchall()}

    def _known(self, cursor: Cursor, contact_id: str) -> None:
        cursor.execute(
            f"SELECT 1 FROM {self.table('contacts')} WHERE contact_id = %s", (contact_id,)
        )
        if cursor.fetchone() is None:
            raise UnknownContact(contact_id, self.instance)


def _state_rows(contact_id: str, ledger: Ledger) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of each state table for one contact."""
    values: dict[str, Any] = {name: v for name, (v, _) in ledger.prefs.items()}
    values.update({name: v for name, (v, _) in ledger.facts.items()})
    contacts = (
        contact_id,
        *(values.get(name) for name in (*PREFERENCES, "level", *CONTACT_FIELDS)),
        ledger.events,
        ledger.first,
        ledger.last,
    )
    sources = [
        (contact_id, name, *src)
        for name, (_, src) in sorted((*ledger.prefs.items(), *ledger.facts.items()))
    ]
    return {
        "contacts": [contacts],
        "sources": sources,
        "lists": [
            (contact_id, list_id, name, member, *src)
            for list_id, (member, name, src) in ledger.lists.items()
        ],
        "contact_points": [
            (contact_id, *key, status, *src) for key, (status, src) in ledger.points.items()
        ],
        "undeliverable": [(contact_id, a, *src) for a, src in ledger.bounced.items()],
    }
