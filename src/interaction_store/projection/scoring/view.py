"""The lead-scores projection: matches recorded per contact or visitor, the leads they reach
rescored, and the outbox rows written in the same transaction."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from interaction_store.events import (
    EVENT_TYPES,
    AccountMembership,
    ContactsMerged,
    ContactsUnmerged,
    IdentityLinked,
    IdentityUnlinked,
    InteractionEvent,
)
from interaction_store.projection.base import Projection, iso, select_in
from interaction_store.projection.merges import merged_groups
from interaction_store.projection.profiles import LEAD_STATUS
from interaction_store.projection.scoring.files import (
    load_models,
    model_files,
    models_folder,
    read_models,
)
from interaction_store.projection.scoring.leads import (
    ANONYMOUS,
    KIND,
    PROFILES_SUFFIX,
    TableNames,
    column_in,
    lead_contexts,
    leads_of,
    load_matches,
    subject_key,
)
from interaction_store.projection.scoring.model import UNSCORED_TYPES, CompiledRule, ScoringModel
from interaction_store.projection.scoring.outbox import published_ddl
from interaction_store.projection.scoring.points import LeadMatches
from interaction_store.projection.scoring.scores import (
    Crossings,
    outbox_row,
    sales_ready_event_id,
    score_row,
    write_rows,
)
from interaction_store.settings import Settings
from interaction_store.views.base import Cursor, ViewStore, insert_rows

_MATCH_COLUMNS = (
    "model",
    "event_id",
    "rule_id",
    "subject_key",
    "type",
    "occurred_at",
    "points",
    "once_key",
)
_MATCH_KEY = ("model", "event_id", "rule_id")


class ModelsChanged(ValueError):
    """The view was built with other models: rows would mix two definitions."""


@dataclass
class _Changes:
    """What a batch's profile events change: contacts, accounts and leads to rescore fully."""

    contacts: set[str] = field(default_factory=set)
    accounts: set[str] = field(default_factory=set)
    leads: set[str] = field(default_factory=set)


class LeadScores(Projection):
    """Scores every lead under several models; keeps its own profiles so that a shadow copy
    (another instance name, maybe other models) is rebuilt from the log alone.

    How a score is defined, so that the rows are a function of the set of events:

    1. Interactions are matched against the rules per contact (or anonymous visitor) and kept
       as matches, whether or not a lead exists yet: events may arrive before their lead.
    2. A lead's contacts are its parent contact, else the current members of its parent
       account; each with the contacts merged into it and the visitors identified as it. A
       lead with neither parent is not scored, and its row says why.
    3. The score is taken *as of* the lead's latest instant (its creation or its contacts'
       latest matched event): decay and windows count from there, never from the wall clock.
    4. A lead's life is cut into scoring episodes: the first from its creation, then one
       from each ``lead.returned_to_marketing`` (in (occurred_at, event_id) order) to the
       next. In the first it is sales-ready from the first instant, at or after its creation
       and while it is open (not qualified or disqualified), at which the score reaches the
       threshold (the instants are its creation and its contacts' matched events); in a later
       one, at the first matched event, while open, that takes the score from below the
       threshold to it (it must mature again). The row says the current episode's.
    5. One outbox row per (model, lead, episode) that became sales-ready, its event id derived
       from the three (the episode by the event that opened it): a rebuild writes the same
       rows, and within an episode a score that drops and crosses again gets no second one.
       A late event from before a crossing may move it (the row follows, same event id).
    6. A rule with ``lead`` conditions counts only for the leads whose own attributes (topic,
       source) meet them, so two leads of one contact can score differently.
    """

    kind = KIND

    def __init__(self, models: Sequence[ScoringModel], instance: str | None = None) -> None:
        super().__init__(instance)
        if len(self.instance) > 41 - len(PROFILES_SUFFIX):  # its profiles' name must fit too
            raise ValueError(f"a lead-scores view name has at most 32 characters: {instance!r}")
        if not models:
            raise ValueError("a lead-scores view needs at least one scoring model")
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ValueError(f"scoring model names must be unique, got {names}")
        self.models = {m.name: m for m in models}
        self.names = TableNames(self.instance)
        self.profiles = self.names.profiles
        self._dialect = "sqlite"
        digest = hashlib.sha256(f"istore.lead_scores.{self.instance}".encode()).digest()
        self._lock_key = int.from_bytes(digest[:8], "big", signed=True)
        self._by_type: dict[str, list[CompiledRule]] = defaultdict(list)
        for model in models:
            for event_type, rules in model.compile().items():
                self._by_type[event_type].extend(rules)
        scored = frozenset(self._by_type) - UNSCORED_TYPES
        self.event_types = scored | (self.profiles.event_types or frozenset(EVENT_TYPES))

    @classmethod
    def from_settings(cls, settings: Settings, instance: str | None = None) -> LeadScores:
        """The view scoring with every model in ``projections/scoring/``."""
        return cls(load_models(models_folder(settings)), instance)

    @classmethod
    def default_definition(cls, settings: Settings) -> dict[str, Any]:
        """What the view is built from: the text of each model file, by file name."""
        files = model_files(models_folder(settings))
        return {"models": {p.name: p.read_text(encoding="utf-8") for p in files}}

    @classmethod
    def from_definition(
        cls, instance: str, definition: dict[str, Any], settings: Settings
    ) -> LeadScores:
        """The view a recorded definition describes (the shipped models if it names none)."""
        texts = definition.get("models") or cls.default_definition(settings)["models"]
        return cls(read_models(sorted(texts.items())), instance)

    def table(self, name: str) -> str:
        # The profiles' tables are part of this view ("profiles.<table>"), named by them.
        if name.startswith("profiles."):
            return self.profiles.table(name.removeprefix("profiles."))
        return super().table(name)

    @property
    def tables(self) -> dict[str, str]:
        own = {
            "models": "name TEXT PRIMARY KEY, version INTEGER NOT NULL, definition TEXT NOT NULL",
            "matches": "model TEXT NOT NULL, event_id TEXT NOT NULL, rule_id TEXT NOT NULL, "
            "subject_key TEXT NOT NULL, type TEXT NOT NULL, occurred_at TEXT NOT NULL, "
            "points DOUBLE PRECISION NOT NULL, once_key TEXT, "
            "PRIMARY KEY (model, event_id, rule_id)",
            "scores": "lead_id TEXT NOT NULL, model TEXT NOT NULL, model_version INTEGER NOT NULL, "
            "status TEXT NOT NULL, reason TEXT, lead_status TEXT NOT NULL, "
            "score DOUBLE PRECISION, grade TEXT, counted INTEGER NOT NULL, as_of TEXT, "
            "sales_ready BOOLEAN NOT NULL, sales_ready_at TEXT, episode INTEGER NOT NULL, "
            "PRIMARY KEY (lead_id, model)",
            # One row per (model, lead, episode) that became sales-ready; episode_key: the
            # event id of the return to marketing that opened it ('' for the first).
            "outbox": "model TEXT NOT NULL, lead_id TEXT NOT NULL, event_id TEXT NOT NULL, "
            "episode_key TEXT NOT NULL, occurred_at TEXT NOT NULL, "
            "score DOUBLE PRECISION NOT NULL, event TEXT NOT NULL, "
            "PRIMARY KEY (lead_id, model, event_id)",
        }
        return own | {f"profiles.{k}": v for k, v in self.profiles.tables.items()}

    def schema(self, dialect: str) -> list[str]:
        # `apply` has only a cursor; the runner asks for the schema first, so note the dialect.
        self._dialect = dialect
        # Publication state is kept apart from the view's tables: it records what happened to
        # the outbox (and when, by the clock), so it is no function of the events.
        return [*super().schema(dialect), published_ddl(self.names)]

    def indexes(self, dialect: str) -> list[str]:
        p = self.profiles
        return [
            f"CREATE INDEX IF NOT EXISTS {self.table('matches_by_subject')} "
            f"ON {self.table('matches')} (subject_key)",
            # A seller's queue: one model's sales-ready leads, newest first.
            f"CREATE INDEX IF NOT EXISTS {self.table('scores_sales_ready')} "
            f"ON {self.table('scores')} (model, sales_ready, sales_ready_at, lead_id)",
            f"CREATE INDEX IF NOT EXISTS {p.table('contacts_by_merge')} "
            f"ON {p.table('contacts')} (merged_into)",
            f"CREATE INDEX IF NOT EXISTS {p.table('identities_by_contact')} "
            f"ON {p.table('identities')} (contact_id)",
            *p.indexes(dialect),
        ]

    def drop(self, store: ViewStore) -> None:
        super().drop(store)
        with store.transaction() as c:
            c.execute(f"DROP TABLE IF EXISTS {self.names.own('published')}")

    def wants(self, event: InteractionEvent) -> bool:
        if event.type in self._by_type and event.type not in UNSCORED_TYPES:
            s = event.subject
            if s.contact_id is not None or s.anonymous_id is not None:
                return True
        return self.profiles.wants(event)

    def check_models(self, store: ViewStore) -> None:
        """Raise :class:`ModelsChanged` if the view was built with other models."""
        with store.reading() as c:
            self._check_models(c)

    def _check_models(self, cursor: Cursor) -> bool:
        """True when the view has no models yet."""
        cursor.execute(f"SELECT name, definition FROM {self.table('models')}")
        stored = dict(cursor.fetchall())
        if not stored:
            return True
        given = {name: m.definition() for name, m in self.models.items()}
        if stored != given:
            differ = sorted(
                k for k in stored.keys() | given.keys() if stored.get(k) != given.get(k)
            )
            raise ModelsChanged(
                f"view {self.instance} was built with other scoring models (differing: "
                f"{', '.join(differ)}); replay the log into a new view (another instance name) "
                "to score with them, or drop this one"
            )
        return False

    # ------------------------------------------------------------------ apply

    def apply(self, cursor: Cursor, events: Sequence[InteractionEvent]) -> None:
        """1. record the models (refusing changed ones); 2. note what profile events change,
        then fold them; 3. record the batch's matches; 4. rescore the leads they reach."""
        if self._dialect == "postgres":
            # A lead's score reads other partitions' rows (its account's other contacts, its
            # profile events): workers that applied batches side by side under READ COMMITTED
            # would each miss the other's. One batch at a time per view; each statement after
            # the lock sees every batch committed before.
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
        if self._check_models(cursor):
            cursor.executemany(
                f"INSERT INTO {self.table('models')} VALUES (%s, %s, %s)",
                [(m.name, m.version, m.definition()) for m in self.models.values()],
            )
        profile_events = [e for e in events if self.profiles.wants(e)]
        changes = self._changes(cursor, profile_events)
        self.profiles.apply(cursor, profile_events)
        fresh = self._record_matches(cursor, events)
        self._rescore(cursor, changes, fresh)

    def _changes(self, cursor: Cursor, events: Sequence[InteractionEvent]) -> _Changes:
        changes = _Changes()
        relinked: set[str] = set()
        merged: set[str] = set()
        for e in events:
            s, p = e.subject, e.payload
            if isinstance(p, AccountMembership) and s.contact_id is not None:
                changes.contacts.add(str(s.contact_id))
                changes.accounts.add(str(p.account_id))
            elif isinstance(p, IdentityLinked | IdentityUnlinked):
                changes.contacts.add(str(p.contact_id))
                relinked.add(p.anonymous_id)
            elif isinstance(p, ContactsMerged | ContactsUnmerged) and s.contact_id is not None:
                merged.update((str(s.contact_id), str(p.merged_contact_id)))
            elif (e.type in LEAD_STATUS or e.type == "lead.updated") and s.lead_id is not None:
                changes.leads.add(str(s.lead_id))
        # A merge or unmerge reshapes groups: the leads to rescore are those of every contact
        # in the merged contacts' groups before the batch (read here, before the profiles fold
        # it: the group a duplicate leaves) and after it (`leads_of`, the group it joins).
        # A later merge of the same duplicate, or one that wins a tie on event id, moves it
        # out of a group whose leads would otherwise keep its matches.
        changes.contacts |= merged
        changes.contacts.update(*merged_groups(cursor, self.profiles, merged).values())
        # A visitor linked to another contact leaves the leads of the one it was linked to.
        changes.contacts.update(
            column_in(
                cursor, self.profiles.table("identities"), "contact_id", "anonymous_id", relinked
            )
        )
        return changes

    def _record_matches(
        self, cursor: Cursor, events: Sequence[InteractionEvent]
    ) -> dict[tuple[str, str], str]:
        """Store what the rules match; return the earliest new instant per (model, subject)."""
        rows = []
        fresh: dict[tuple[str, str], str] = {}
        for e in events:
            rules = self._by_type.get(e.type)
            if not rules or e.type in UNSCORED_TYPES:
                continue
            subject = subject_key(e)
            if subject is None:
                continue
            at, event_id = iso(e.occurred_at), str(e.event_id)
            for rule in rules:
                if rule.matches(e):
                    once = rule.once_key(e)
                    rows.append(
                        (rule.model, event_id, rule.rule_id, subject, e.type, at, rule.points, once)
                    )
                    key = (rule.model, subject)
                    if key not in fresh or at < fresh[key]:
                        fresh[key] = at
        insert_rows(cursor, self.table("matches"), _MATCH_COLUMNS, rows, _MATCH_KEY)
        return fresh

    def _rescore(
        self, cursor: Cursor, changes: _Changes, fresh: dict[tuple[str, str], str]
    ) -> None:
        n = self.names
        touched = {subject for _, subject in fresh}
        visitors = [s.removeprefix(ANONYMOUS) for s in touched if s.startswith(ANONYMOUS)]
        contacts = {s for s in touched if not s.startswith(ANONYMOUS)}
        contacts.update(
            column_in(cursor, n.prof("identities"), "contact_id", "anonymous_id", visitors)
        )
        full = changes.leads | leads_of(cursor, n, changes.contacts, changes.accounts)
        lead_ids = sorted(full | leads_of(cursor, n, contacts, set()))
        if not lead_ids:
            return
        contexts = lead_contexts(cursor, n, lead_ids)
        matches = load_matches(cursor, n, {s for c in contexts.values() for s in c.subjects})
        stored: dict[tuple[str, str], Crossings] = defaultdict(dict)
        for lead_id, model_name, key, at in select_in(
            cursor,
            f"SELECT lead_id, model, episode_key, occurred_at FROM {self.table('outbox')} "
            "WHERE lead_id IN ({ids})",
            lead_ids,
        ):
            stored[lead_id, model_name][key] = at
        scores: list[tuple[object, ...]] = []
        outbox: list[tuple[object, ...]] = []
        withdrawn: list[tuple[str, str, str]] = []
        for lead_id in lead_ids:
            ctx = contexts.get(lead_id)
            if ctx is None:
                continue
            for model in self.models.values():
                start: str | None = None
                if lead_id not in full:
                    starts = [
                        fresh[k] for k in ((model.name, s) for s in ctx.subjects) if k in fresh
                    ]
                    if not starts:
                        continue  # nothing new for this lead under this model
                    start = min(starts)
                lm = LeadMatches(
                    model,
                    [m for s in ctx.subjects for m in matches.get((model.name, s), ())],
                    ctx.attributes,
                )
                row, changed = score_row(ctx, lm, start, stored[lead_id, model.name])
                scores.append(row)
                episodes = {e.key: e for e in ctx.episodes()}
                for key, crossing in changed.items():
                    if crossing is not None:
                        outbox.append(outbox_row(ctx, lm, episodes[key], crossing))
                    elif key in stored[lead_id, model.name]:  # a late event undid it
                        event_id = sales_ready_event_id(model.name, lead_id, key or None)
                        withdrawn.append((model.name, lead_id, str(event_id)))
        write_rows(cursor, n, scores, outbox, withdrawn)
