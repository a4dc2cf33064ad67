"""The lead-scores view: each lead scored by each scoring model from its contacts' interactions,
explainable, with a ``lead.sales_ready`` outbox written in the same transaction."""

from __future__ import annotations

import hashlib
import math
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from interaction_store.codec import decode, to_document
from interaction_store.events import (
    CURRENT_VERSIONS,
    EVENT_TYPES,
    AccountMembership,
    ContactsMerged,
    IdentityLinked,
    InteractionEvent,
)
from interaction_store.log.base import EventLog
from interaction_store.projection.base import Projection, chunks, iso, placeholders
from interaction_store.projection.profiles import LEAD_STATUS, Profiles
from interaction_store.projection.scoring_model import (
    UNSCORED_TYPES,
    CompiledRule,
    LeadMatches,
    Match,
    ScoringModel,
    load_models,
    model_files,
    models_folder,
    read_models,
)
from interaction_store.settings import Settings
from interaction_store.views.base import Cursor, ViewStore

KIND = "lead_scores"
PROFILES_SUFFIX = "_profiles"
SALES_READY_NAMESPACE = uuid.UUID("6f1d3c52-8a51-4c1e-9d0e-5b7c2a40e1a7")
SALES_READY_SOURCE = "istore.lead_scores"
NO_PARENT = "lead has neither a parent contact nor a parent account"
NOT_CREATED = "no lead.created event yet, so the lead's parent is not known"
ANONYMOUS = "anonymous:"
MAX_MERGE_HOPS = 10

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(text: str) -> int:
    """An ISO instant as integer microseconds since the epoch."""
    return (datetime.fromisoformat(text) - _EPOCH) // _MICROSECOND


def subject_key(event: InteractionEvent) -> str | None:
    """Who an interaction is attributed to: its contact, else its anonymous visitor."""
    s = event.subject
    if s.contact_id is not None:
        return str(s.contact_id)
    if s.anonymous_id is not None:
        return ANONYMOUS + s.anonymous_id
    return None


def sales_ready_event_id(model: str, lead_id: str) -> uuid.UUID:
    """The same id for a (model, lead) in every rebuild, so the log keeps one event."""
    return uuid.uuid5(SALES_READY_NAMESPACE, f"{model}|{lead_id}")


# --------------------------------------------------------------------------- errors


class UnknownLead(LookupError):
    def __init__(self, lead_id: str, instance: str) -> None:
        self.lead_id = lead_id
        super().__init__(f"no lead {lead_id} in the {instance} view (no event about it yet?)")


class UnknownModel(LookupError):
    def __init__(self, model: str, known: Iterable[str]) -> None:
        self.model = model
        super().__init__(f"no scoring model {model!r} in this view; it has {', '.join(known)}")


class ModelsChanged(ValueError):
    """The view was built with other models: rows would mix two definitions."""


# --------------------------------------------------------------------------- read results


@dataclass(frozen=True)
class LeadScore:
    """A lead's score under one model."""

    lead_id: str
    model: str
    model_version: int
    status: str
    """``scored`` or ``not_scored`` (then ``reason`` says why)."""
    reason: str | None
    lead_status: str
    score: float | None
    grade: str | None
    counted: int
    """How many events count in the score."""
    as_of: datetime | None
    threshold: float
    sales_ready: bool
    """The lead reached the threshold (it is marketing-qualified) at or before ``as_of``."""
    sales_ready_at: datetime | None


@dataclass(frozen=True)
class ExplainedEvent:
    """One event behind a score: the rule it matched and what it adds."""

    event_id: str
    type: str
    occurred_at: datetime
    subject: str
    rule_id: str
    rule: str
    points: float
    decayed_points: float


@dataclass(frozen=True)
class SetAsideEvent:
    """An event a rule matched that does not count at ``as_of``, and why."""

    event_id: str
    type: str
    occurred_at: datetime
    subject: str
    rule_id: str
    reason: str


@dataclass(frozen=True)
class RuleSummary:
    rule_id: str
    description: str
    points: float
    counted: int
    set_aside: int
    total: float


@dataclass(frozen=True)
class Explanation:
    """The events and rules behind a lead's score; ``events`` sum to ``score``."""

    lead_id: str
    model: str
    model_version: int
    status: str
    reason: str | None
    as_of: datetime | None
    score: float | None
    grade: str | None
    threshold: float
    sales_ready_at: datetime | None
    subjects: tuple[str, ...] = ()
    """The contacts (and identified visitors) whose interactions count."""
    events: tuple[ExplainedEvent, ...] = ()
    set_aside: tuple[SetAsideEvent, ...] = ()
    rules: tuple[RuleSummary, ...] = ()


# --------------------------------------------------------------------------- leads and contacts


class _Names:
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
    history: list[tuple[str, str]] = field(default_factory=list)
    """(occurred_at, type) of the lead's own events, oldest first."""
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
        for at, event_type in self.history:
            if at > instant:
                break
            status = LEAD_STATUS.get(event_type, status)
        return status == "open"

    def reopenings(self) -> list[str]:
        return [at for at, t in self.history if LEAD_STATUS.get(t) == "open"]


def _select(cursor: Cursor, sql: str, ids: Iterable[str], *extra: object) -> list[tuple[Any, ...]]:
    """Run ``sql`` (with ``{ids}`` for an IN list) over chunks of ``ids``; extra params first."""
    out: list[tuple[Any, ...]] = []
    for part in chunks(sorted(set(ids))):
        cursor.execute(sql.format(ids=placeholders(len(part))), (*extra, *part))
        out.extend(cursor.fetchall())
    return out


def _column(
    cursor: Cursor, table: str, column: str, key: str, ids: Iterable[str], member: bool = False
) -> list[str]:
    """``column`` of the rows whose ``key`` is one of ``ids`` (only current members)."""
    only = "member = %s AND " if member else ""
    sql = f"SELECT {column} FROM {table} WHERE {only}{key} IN ({{ids}})"
    return [
        r[0] for r in (_select(cursor, sql, ids, True) if member else _select(cursor, sql, ids))
    ]


def merged_groups(cursor: Cursor, n: _Names, contacts: Iterable[str]) -> dict[str, set[str]]:
    """Each contact's group: the contact it was merged into (following ``contact.merged`` a
    few hops) with every contact merged into that one."""
    contacts = set(contacts)
    into: dict[str, str] = {}
    frontier = contacts
    for _ in range(MAX_MERGE_HOPS):  # up to the survivors
        rows = _select(
            cursor,
            f"SELECT contact_id, merged_into FROM {n.prof('contacts')} "
            "WHERE merged_into IS NOT NULL AND contact_id IN ({ids})",
            frontier,
        )
        into.update(rows)
        frontier = {target for _, target in rows} - into.keys()
        if not frontier:
            break
    root: dict[str, str] = {}
    for contact in contacts:
        r = contact
        for _ in range(MAX_MERGE_HOPS):
            r = into.get(r, r)
        root[contact] = r
    owner = {r: r for r in root.values()}
    frontier = set(owner)
    for _ in range(MAX_MERGE_HOPS):  # and down to everyone merged into them
        rows = _select(
            cursor,
            f"SELECT contact_id, merged_into FROM {n.prof('contacts')} "
            "WHERE merged_into IN ({ids})",
            frontier,
        )
        frontier = set()
        for contact, target in sorted(rows):
            if contact not in owner:
                owner[contact] = owner[target]
                frontier.add(contact)
        if not frontier:
            break
    groups: dict[str, set[str]] = defaultdict(set)
    for contact, r in owner.items():
        groups[r].add(contact)
    return {contact: groups[root[contact]] for contact in contacts}


def leads_of(cursor: Cursor, n: _Names, contacts: set[str], accounts: set[str]) -> set[str]:
    """The leads whose score the interactions of ``contacts`` (or the membership of
    ``accounts``) can change."""
    everyone = set().union(*merged_groups(cursor, n, contacts).values())
    leads = set(_column(cursor, n.prof("leads"), "lead_id", "parent_contact_id", everyone))
    accounts = accounts | set(
        _column(cursor, n.prof("members"), "account_id", "contact_id", everyone, member=True)
    )
    return leads | set(_column(cursor, n.prof("leads"), "lead_id", "parent_account_id", accounts))


def lead_contexts(cursor: Cursor, n: _Names, lead_ids: Iterable[str]) -> dict[str, LeadContext]:
    """The leads (those the profiles know), with the contacts and visitors that score them."""
    contexts = {
        lead_id: LeadContext(lead_id, contact, account, status, created)
        for lead_id, contact, account, status, created in _select(
            cursor,
            "SELECT lead_id, parent_contact_id, parent_account_id, status, created_at "
            f"FROM {n.prof('leads')} WHERE lead_id IN ({{ids}})",
            lead_ids,
        )
    }
    for lead_id, at, event_type in _select(
        cursor,
        f"SELECT entity_id, occurred_at, type FROM {n.prof('events')} "
        "WHERE kind = %s AND entity_id IN ({ids}) ORDER BY entity_id, occurred_at, event_id",
        contexts,
        "lead",
    ):
        contexts[lead_id].history.append((at, event_type))
    scored = [c for c in contexts.values() if c.reason is None]
    by_account: dict[str, list[str]] = defaultdict(list)
    for account, contact in _select(
        cursor,
        f"SELECT account_id, contact_id FROM {n.prof('members')} WHERE member = %s "
        "AND account_id IN ({ids})",
        {c.parent_account_id for c in scored if c.parent_account_id and not c.parent_contact_id},
        True,
    ):
        by_account[account].append(contact)
    base = {
        c.lead_id: (
            [c.parent_contact_id]
            if c.parent_contact_id is not None
            else by_account.get(c.parent_account_id or "", [])
        )
        for c in scored
    }
    groups = merged_groups(cursor, n, {x for xs in base.values() for x in xs})
    visitors: dict[str, list[str]] = defaultdict(list)
    for contact, anonymous_id in _select(
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


def load_matches(
    cursor: Cursor, n: _Names, subjects: Iterable[str]
) -> dict[tuple[str, str], list[Match]]:
    """(model, subject) -> its matches."""
    out: dict[tuple[str, str], list[Match]] = defaultdict(list)
    for model, event_id, rule_id, subject, event_type, at, points, once in _select(
        cursor,
        "SELECT model, event_id, rule_id, subject_key, type, occurred_at, points, once_key "
        f"FROM {n.own('matches')} WHERE subject_key IN ({{ids}})",
        subjects,
    ):
        match = Match(event_id, rule_id, event_type, subject, at, micros(at), float(points), once)
        out[(model, subject)].append(match)
    return out


def stored_models(cursor: Cursor, n: _Names) -> dict[str, ScoringModel]:
    cursor.execute(f"SELECT name, definition FROM {n.own('models')} ORDER BY name")
    return {name: ScoringModel.model_validate_json(d) for name, d in cursor.fetchall()}


# --------------------------------------------------------------------------- the projection


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
    4. The lead is sales-ready from the first instant, at or after its creation and while it
       is open (not qualified or disqualified), at which the score reaches the threshold;
       the instants are its creation, its reopenings and its contacts' matched events.
    5. One outbox row per (model, lead), its event id derived from both: a rebuild writes the
       same row, and a lead whose score drops and crosses again gets no second one. A late
       event from before the crossing may move it (the row follows, same event id).
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
        self.names = _Names(self.instance)
        self.profiles = self.names.profiles
        self._dialect = "sqlite"
        digest = hashlib.sha256(f"istore.lead_scores.{self.instance}".encode()).digest()
        self._lock_key = int.from_bytes(digest[:8], "big", signed=True)
        self._by_type: dict[str, list[CompiledRule]] = defaultdict(list)
        for model in models:
            for event_type, rules in model.compile().items():
                self._by_type[event_type].extend(rules)

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
            "sales_ready BOOLEAN NOT NULL, sales_ready_at TEXT, PRIMARY KEY (lead_id, model)",
            "outbox": "model TEXT NOT NULL, lead_id TEXT NOT NULL, event_id TEXT NOT NULL, "
            "occurred_at TEXT NOT NULL, score DOUBLE PRECISION NOT NULL, event TEXT NOT NULL, "
            "PRIMARY KEY (model, lead_id)",
        }
        return own | {f"profiles.{k}": v for k, v in self.profiles.tables.items()}

    def schema(self, dialect: str) -> list[str]:
        # `apply` has only a cursor; the runner asks for the schema first, so note the dialect.
        self._dialect = dialect
        # Publication state is kept apart from the view's tables: it records what happened to
        # the outbox (and when, by the clock), so it is no function of the events.
        return [*super().schema(dialect), _published_ddl(self.names)]

    def indexes(self, dialect: str) -> list[str]:
        p = self.profiles
        return [
            f"CREATE INDEX IF NOT EXISTS {self.table('matches_by_subject')} "
            f"ON {self.table('matches')} (subject_key)",
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
        for e in events:
            s, p = e.subject, e.payload
            if isinstance(p, AccountMembership) and s.contact_id is not None:
                changes.contacts.add(str(s.contact_id))
                changes.accounts.add(str(p.account_id))
            elif isinstance(p, IdentityLinked):
                changes.contacts.add(str(p.contact_id))
                relinked.add(p.anonymous_id)
            elif isinstance(p, ContactsMerged) and s.contact_id is not None:
                changes.contacts.update((str(s.contact_id), str(p.merged_contact_id)))
            elif e.type in LEAD_STATUS and s.lead_id is not None:
                changes.leads.add(str(s.lead_id))
        # A visitor linked to another contact leaves the leads of the one it was linked to.
        changes.contacts.update(
            _column(
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
        if rows:
            cursor.executemany(
                f"INSERT INTO {self.table('matches')} VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (model, event_id, rule_id) DO NOTHING",
                rows,
            )
        return fresh

    def _rescore(
        self, cursor: Cursor, changes: _Changes, fresh: dict[tuple[str, str], str]
    ) -> None:
        n = self.names
        touched = {subject for _, subject in fresh}
        visitors = [s.removeprefix(ANONYMOUS) for s in touched if s.startswith(ANONYMOUS)]
        contacts = {s for s in touched if not s.startswith(ANONYMOUS)}
        contacts.update(
            _column(cursor, n.prof("identities"), "contact_id", "anonymous_id", visitors)
        )
        full = changes.leads | leads_of(cursor, n, changes.contacts, changes.accounts)
        lead_ids = sorted(full | leads_of(cursor, n, contacts, set()))
        if not lead_ids:
            return
        contexts = lead_contexts(cursor, n, lead_ids)
        matches = load_matches(cursor, n, {s for c in contexts.values() for s in c.subjects})
        previous = {
            (lead_id, model): at
            for lead_id, model, at in _select(
                cursor,
                f"SELECT lead_id, model, sales_ready_at FROM {self.table('scores')} "
                "WHERE lead_id IN ({ids})",
                lead_ids,
            )
        }
        scores, outbox, withdrawn = [], [], []
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
                    model, [m for s in ctx.subjects for m in matches.get((model.name, s), ())]
                )
                before = previous.get((lead_id, model.name))
                row, crossing, recomputed = _score(ctx, lm, start, before)
                scores.append(row)
                if crossing is None and before is not None:
                    withdrawn.append((model.name, lead_id))  # a late event undid the crossing
                elif crossing is not None and recomputed:
                    outbox.append(_outbox_row(ctx, lm, crossing))
        _write(cursor, n, scores, outbox, withdrawn)


def _score(
    ctx: LeadContext, lm: LeadMatches, start: str | None, previous: str | None
) -> tuple[tuple[object, ...], str | None, bool]:
    """The lead's row under one model, its sales-ready instant, and whether that instant was
    recomputed. ``start``: the earliest instant anything changed (None: anything may have)."""
    model = lm.model
    head: tuple[object, ...] = (ctx.lead_id, model.name, model.version)
    if ctx.reason is not None or ctx.created_at is None:
        row = (*head, "not_scored", ctx.reason, ctx.lead_status, None, None, 0, None, False, None)
        return row, None, True
    as_of = max(ctx.created_at, lm.latest or ctx.created_at)
    result = lm.evaluate(micros(as_of))
    crossing: str | None = previous
    recomputed = not (previous is not None and start is not None and previous < start)
    if recomputed:  # else nothing before `start` changed, so neither did the crossing
        crossing = _first_sales_ready(ctx, lm, start)
    row = (*head, "scored", None, ctx.lead_status, result.score, result.grade, len(result.terms))
    return (*row, as_of, crossing is not None, crossing), crossing, recomputed


def _first_sales_ready(ctx: LeadContext, lm: LeadMatches, start: str | None) -> str | None:
    """The first instant the open lead's score reaches the threshold (from ``start`` on: the
    instants before it were checked already and fell short)."""
    created = ctx.created_at
    assert created is not None
    instants = {created: micros(created)}
    instants.update((at, us) for at, us in lm.instants().items() if at > created)
    instants.update((at, micros(at)) for at in ctx.reopenings() if at > created)
    threshold = lm.model.sales_ready_threshold
    for at in sorted(instants):
        if start is not None and at < start:
            continue
        if ctx.open_at(at) and lm.score_at(instants[at]) >= threshold:
            return at
    return None


def _outbox_row(ctx: LeadContext, lm: LeadMatches, at: str) -> tuple[object, ...]:
    model = lm.model
    score = lm.score_at(micros(at))
    event_id = sales_ready_event_id(model.name, ctx.lead_id)
    subject = {"lead_id": ctx.lead_id}
    if ctx.parent_contact_id is not None:
        subject["contact_id"] = ctx.parent_contact_id
    if ctx.parent_account_id is not None:
        subject["account_id"] = ctx.parent_account_id
    event = EVENT_TYPES["lead.sales_ready"].model_validate(
        {
            "event_id": event_id,
            "type": "lead.sales_ready",
            "schema_version": CURRENT_VERSIONS["lead.sales_ready"],
            "occurred_at": at,
            "source": SALES_READY_SOURCE,
            "subject": subject,
            "payload": {
                "model": model.name,
                "score": score,
                "threshold": model.sales_ready_threshold,
            },
        }
    )
    document = orjson.dumps(to_document(event)).decode()
    return (model.name, ctx.lead_id, str(event_id), at, score, document)


def _write(
    cursor: Cursor,
    n: _Names,
    scores: list[tuple[object, ...]],
    outbox: list[tuple[object, ...]],
    withdrawn: list[tuple[str, str]],
) -> None:
    if scores:
        cursor.executemany(
            f"INSERT INTO {n.own('scores')} VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (lead_id, model) DO UPDATE SET model_version = EXCLUDED.model_version, "
            "status = EXCLUDED.status, reason = EXCLUDED.reason, "
            "lead_status = EXCLUDED.lead_status, score = EXCLUDED.score, "
            "grade = EXCLUDED.grade, counted = EXCLUDED.counted, as_of = EXCLUDED.as_of, "
            "sales_ready = EXCLUDED.sales_ready, sales_ready_at = EXCLUDED.sales_ready_at",
            scores,
        )
    if outbox:
        # A late event can move the crossing earlier: the row follows (same event id).
        cursor.executemany(
            f"INSERT INTO {n.own('outbox')} VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (model, lead_id) DO UPDATE SET occurred_at = EXCLUDED.occurred_at, "
            "score = EXCLUDED.score, event = EXCLUDED.event",
            outbox,
        )
    if withdrawn:
        cursor.executemany(
            f"DELETE FROM {n.own('outbox')} WHERE model = %s AND lead_id = %s", withdrawn
        )


def _published_ddl(n: _Names) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {n.own('published')} (event_id TEXT PRIMARY KEY, "
        "model TEXT NOT NULL, lead_id TEXT NOT NULL, published_at TEXT NOT NULL)"
    )


# --------------------------------------------------------------------------- reading


def lead_scores(
    store: ViewStore,
    lead_id: str | uuid.UUID,
    *,
    instance: str = KIND,
    as_of: datetime | None = None,
) -> list[LeadScore]:
    """A lead's score under each model, as stored, or recomputed as of another instant."""
    n, lead = _Names(instance), str(lead_id)
    with store.reading() as c:
        c.execute(
            "SELECT model, model_version, status, reason, lead_status, score, grade, counted, "
            f"as_of, sales_ready_at FROM {n.own('scores')} WHERE lead_id = %s ORDER BY model",
            (lead,),
        )
        rows = c.fetchall()
        if not rows:
            raise UnknownLead(lead, instance)
        models = stored_models(c, n)
        out = []
        for name, version, status, reason, lead_status, score, grade, counted, at, ready in rows:
            if as_of is not None and status == "scored":
                at = _instant(as_of)
                result = _matches(c, n, lead, models[name])[1].evaluate(micros(at))
                score, grade, counted = result.score, result.grade, len(result.terms)
                ready = ready if ready is not None and ready <= at else None
            score = None if score is None else float(score)
            threshold = models[name].sales_ready_threshold
            head = (lead, name, version, status, reason, lead_status, score, grade, counted)
            out.append(LeadScore(*head, _when(at), threshold, ready is not None, _when(ready)))
        return out


def explain(
    store: ViewStore,
    lead_id: str | uuid.UUID,
    model: str,
    *,
    instance: str = KIND,
    as_of: datetime | None = None,
) -> Explanation:
    """The events and rules behind a lead's score under ``model`` (as of the stored instant,
    or ``as_of``); the events' decayed points sum to the score."""
    n, lead = _Names(instance), str(lead_id)
    with store.reading() as c:
        models = stored_models(c, n)
        if model not in models:
            raise UnknownModel(model, models)
        c.execute(
            f"SELECT status, reason, as_of, sales_ready_at FROM {n.own('scores')} "
            "WHERE lead_id = %s AND model = %s",
            (lead, model),
        )
        row = c.fetchone()
        if row is None:
            raise UnknownLead(lead, instance)
        status, reason, at, ready = row
        m = models[model]
        ctx, lm = _matches(c, n, lead, m)
    explained = Explanation(
        lead, model, m.version, status, reason, None, None, None, m.sales_ready_threshold, None
    )
    if status != "scored":
        return explained
    at = _instant(as_of) if as_of is not None else at
    result = lm.evaluate(micros(at))
    described = {r.id: r.description for r in m.rules}
    events = tuple(
        ExplainedEvent(
            *_identity(t.match), described[t.match.rule_id], t.match.points, round(t.decayed, 6)
        )
        for t in result.terms
    )
    aside = tuple(SetAsideEvent(*_identity(a.match), a.reason) for a in result.set_aside)
    rules = tuple(
        RuleSummary(
            r.id,
            r.description,
            r.points,
            counted=sum(1 for e in events if e.rule_id == r.id),
            set_aside=sum(1 for a in aside if a.rule_id == r.id),
            total=round(math.fsum(e.decayed_points for e in events if e.rule_id == r.id), 6),
        )
        for r in m.rules
    )
    return replace(
        explained,
        as_of=_when(at),
        score=result.score,
        grade=result.grade,
        sales_ready_at=_when(ready if ready is not None and ready <= at else None),
        subjects=tuple(ctx.subjects),
        events=events,
        set_aside=aside,
        rules=rules,
    )


def _matches(
    cursor: Cursor, n: _Names, lead_id: str, model: ScoringModel
) -> tuple[LeadContext, LeadMatches]:
    ctx = lead_contexts(cursor, n, [lead_id])[lead_id]
    by_subject = load_matches(cursor, n, ctx.subjects)
    found = [m for s in ctx.subjects for m in by_subject.get((model.name, s), ())]
    return ctx, LeadMatches(model, found)


def _identity(m: Match) -> tuple[str, str, datetime, str, str]:
    return m.event_id, m.event_type, datetime.fromisoformat(m.occurred_at), m.subject_key, m.rule_id


def _instant(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"as_of must be timezone-aware, got {moment!r}")
    return iso(moment)


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


# --------------------------------------------------------------------------- the outbox


def publish_outbox(
    store: ViewStore, log: EventLog, *, instance: str = KIND, batch_size: int = 500
) -> int:
    """Publish the ``lead.sales_ready`` events not yet published; return how many.

    Each batch is published, then marked. A crash between the two publishes the batch again
    next time, and the log, which skips event ids it holds, keeps one copy.
    """
    n = _Names(instance)
    store.ensure([_published_ddl(n)])
    with store.reading() as c:
        c.execute(
            f"SELECT o.event_id, o.model, o.lead_id, o.event FROM {n.own('outbox')} o "
            f"WHERE NOT EXISTS (SELECT 1 FROM {n.own('published')} p "
            "WHERE p.event_id = o.event_id) ORDER BY o.occurred_at, o.event_id"
        )
        pending = c.fetchall()
    done = 0
    for part in chunks(pending, batch_size):
        log.publish([decode(doc) for _, _, _, doc in part])
        now = datetime.now(UTC).isoformat()
        with store.transaction() as c:
            c.executemany(
                f"INSERT INTO {n.own('published')} VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (event_id) DO NOTHING",
                [(event_id, model, lead, now) for event_id, model, lead, _ in part],
            )
        done += len(part)
    return done
