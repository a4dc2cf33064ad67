"""The Python read API for services: timelines, consent (as of any instant), send decisions
and lead scores with their explanations, always from the live views."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any
from uuid import UUID

from interaction_store.privacy.master import load_master_key
from interaction_store.privacy.register import ErasureRegister, address_kind
from interaction_store.projection.base import Projection
from interaction_store.projection.consent import (
    AuditEntry,
    Check,
    Consent,
    ConsentState,
    Decision,
    audit_trail,
    consent_state,
    decide,
)
from interaction_store.projection.erasure import ERASED_TEXT
from interaction_store.projection.lookups import LOOKUP_KEYS, find
from interaction_store.projection.profile_read import ProfileReader
from interaction_store.projection.profile_values import Profile
from interaction_store.projection.profiles import Profiles
from interaction_store.projection.registry import ViewError, ViewRegistry, build
from interaction_store.projection.scoring import (
    Explanation,
    LeadScore,
    SalesReadyPage,
    explain,
    lead_scores,
    sales_ready_leads,
)
from interaction_store.projection.timeline import Timeline, TimelinePage, TimelineSettings
from interaction_store.settings import Settings
from interaction_store.views import ViewStore, open_store


class ReadAPI:
    """Reads the live views of a view store (the registry says which instance is live).

    Every read takes the reader's ``permissions``, the read categories of its role (None:
    all of them). Timelines show and count only entries of those categories; lead scores
    count and explain only their events (what the others add is one line of points); consent
    states, audit trails and decisions keep every value and the instant it took effect, but
    name (id, type, details) only the events of those categories."""

    def __init__(self, settings: Settings | None = None, store: ViewStore | None = None) -> None:
        self.settings = settings or Settings()
        self.store = store or open_store(self.settings)
        self._owns_store = store is None
        self.registry = ViewRegistry(self.store)
        self._views: dict[str, Projection] = {}

    def view(self, kind: str) -> Projection:
        """The live projection of a kind (cached; call :meth:`refresh` after a promotion)."""
        if kind not in self._views:
            info = self.registry.live(kind)
            if info is None:
                raise ViewError(
                    f"there is no live {kind} view yet: run `istore run` (or `istore run --once`)"
                )
            self._views[kind] = build(info, self.settings)
        return self._views[kind]

    def refresh(self) -> None:
        self._views.clear()

    def timeline(
        self,
        *,
        contact_id: UUID | str | None = None,
        lead_id: UUID | str | None = None,
        account_id: UUID | str | None = None,
        channels: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
        permissions: Collection[str] | None = None,
        now: datetime | None = None,
        statuses: Sequence[str] | None = None,
        journeys: Sequence[str] | None = None,
        campaigns: Sequence[str] | None = None,
    ) -> TimelinePage:
        """One page of a contact's, lead's or account's timeline, newest first; filters as
        :meth:`Timeline.query` (``statuses``: a message's delivery status; ``journeys``,
        ``campaigns``: its correlation ids)."""
        timeline = self.view("timeline")
        assert isinstance(timeline, Timeline)
        return timeline.query(
            self.store,
            contact_id=contact_id,
            lead_id=lead_id,
            account_id=account_id,
            channels=channels,
            types=types,
            statuses=statuses,
            journeys=journeys,
            campaigns=campaigns,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
            permissions=permissions,
            now=now,
            profiles=self.view("profiles").instance,
        )

    def categories(self) -> dict[str, str]:
        """The read category of each channel (an event type's first part), and of each
        custom type by its name, as the live timeline's settings say; a channel not named has
        none (every reader sees it)."""
        try:
            timeline = self.view("timeline")
            assert isinstance(timeline, Timeline)
            return timeline.settings.categories()
        except ViewError:  # consent or scores read before any timeline was built
            return TimelineSettings.load(self.settings.projections_dir).categories()

    def shown(self, permissions: Collection[str] | None) -> Callable[[str], bool] | None:
        """Whether a reader of ``permissions`` may see an event of a type, by the read
        category of its channel in the timeline's settings (None: it may see every type). A
        type of no category (profile, lead and consent events) is shown to every reader."""
        if permissions is None:
            return None
        categories = self.categories()
        granted = frozenset(permissions)
        if granted >= set(categories.values()):
            return None

        def shown(event_type: str) -> bool:
            category = categories.get(event_type) or categories.get(event_type.split(".", 1)[0])
            return category is None or category in granted

        return shown

    def consent(
        self,
        contact_id: UUID | str,
        as_of: datetime | None = None,
        permissions: Collection[str] | None = None,
    ) -> ConsentState:
        """A contact's consent now, or as it stood at ``as_of``."""
        return consent_state(
            self.store, contact_id, as_of, view=self._consent(), shown=self.shown(permissions)
        )

    def audit(
        self, contact_id: UUID | str, permissions: Collection[str] | None = None
    ) -> list[AuditEntry]:
        """Every consent change of a contact, oldest first, with its source event."""
        return audit_trail(
            self.store, contact_id, view=self._consent(), shown=self.shown(permissions)
        )

    def may_send(
        self,
        contact_id: UUID | str,
        channel: str,
        purpose: str,
        list_id: str | None = None,
        as_of: datetime | None = None,
        permissions: Collection[str] | None = None,
        **options: Any,
    ) -> Decision:
        """May this message go to this contact (now or at ``as_of``)? With the reasons; no
        for an erased contact, or to an address of an erased person (:meth:`suppressed`)."""
        view, shown = self._consent(), self.shown(permissions)
        state = consent_state(self.store, contact_id, as_of, view=view, shown=shown)
        topic, point = options.get("topic"), options.get("contact_point")
        decision = decide(state, view.rules, channel, purpose, list_id, topic, point, shown)
        return self.suppressed(decision, state, channel, point)

    def suppressed(
        self,
        decision: Decision,
        state: ConsentState,
        channel: str,
        contact_point: str | None = None,
    ) -> Decision:
        """The decision with the erasure register's word: no for an erased contact, and no
        to an address or number of an erased person under any contact id (its consent given
        before the erasure never comes back). The reason names the erasure, not the
        address."""
        register = self.register
        receipt = register.receipt_of(state.contact_id)
        extra = None
        if receipt is not None:
            extra = Check(
                "erased",
                False,
                f"contact {state.contact_id} was erased at {receipt['requested_at']} "
                f"(erasure {receipt['erasure_id']}): nothing is sent to it",
            )
        elif channel != "push":
            kind = address_kind(channel)
            point = contact_point or (state.email if kind == "email" else state.phone).value
            hit = register.suppressed(kind, point) if point and point != ERASED_TEXT else None
            if hit is not None:
                extra = Check(
                    "suppressed",
                    False,
                    f"this {kind} belonged to a contact erased at {hit[1]} (erasure {hit[0]}): "
                    "it is on the suppression list, so nothing is sent to it",
                )
        if extra is None:
            return decision
        checks = [*decision.checks, extra]
        return Decision(False, [c.reason for c in checks if not c.passed], checks)

    @cached_property
    def register(self) -> ErasureRegister:
        """Receipts and the suppression list (the master key is loaded once it holds some)."""
        return ErasureRegister(self.store, lambda: load_master_key(self.settings))

    def lead_scores(
        self,
        lead_id: UUID | str,
        as_of: datetime | None = None,
        permissions: Collection[str] | None = None,
    ) -> list[LeadScore]:
        """A lead's score under each model (or why it is not scored)."""
        return lead_scores(
            self.store,
            lead_id,
            instance=self.view("lead_scores").instance,
            as_of=as_of,
            shown=self.shown(permissions),
        )

    def explain(
        self,
        lead_id: UUID | str,
        model: str,
        as_of: datetime | None = None,
        permissions: Collection[str] | None = None,
    ) -> Explanation:
        """The events and rules behind a lead's score under one model."""
        return explain(
            self.store,
            lead_id,
            model,
            instance=self.view("lead_scores").instance,
            as_of=as_of,
            shown=self.shown(permissions),
        )

    def sales_ready_leads(
        self,
        model: str,
        *,
        limit: int = 50,
        cursor: str | None = None,
        lead_status: str | None = None,
    ) -> SalesReadyPage:
        """A seller's queue: one page of the leads sales-ready under ``model`` in their
        current scoring episode, the most recently sales-ready first."""
        return sales_ready_leads(
            self.store,
            model,
            instance=self.view("lead_scores").instance,
            limit=limit,
            cursor=cursor,
            lead_status=lead_status,
        )

    def profile(
        self,
        kind: str,
        subject_id: UUID | str,
        as_of: datetime | None = None,
        permissions: Collection[str] | None = None,
        fields: Collection[str] | None = None,
        now: datetime | None = None,
    ) -> Profile:
        """A contact's, account's or lead's profile (now or as of ``as_of``), each value with
        the event that set it. ``permissions``: the reader's read categories (registrations,
        cases and engagement counters of the others are left out); ``fields``: the personal
        field groups it may see (``names``, ``contact_points``; None: all). A merged-away
        contact's profile has ``merged_into`` (the surviving contact, in the end)."""
        if kind not in ("contact", "account", "lead"):
            raise ValueError(f"kind {kind!r}: must be contact, account or lead")
        try:
            sid = str(subject_id if isinstance(subject_id, UUID) else UUID(str(subject_id)))
        except ValueError:
            raise ValueError(f"{kind}_id {subject_id!r}: not a UUID") from None
        profiles = self.view("profiles")
        assert isinstance(profiles, Profiles)
        try:
            timeline = self.view("timeline")
        except ViewError:
            timeline = None
        assert timeline is None or isinstance(timeline, Timeline)
        reader, shown = ProfileReader(profiles, timeline), self.shown(permissions)
        # No snapshot (a BEGIN and a COMMIT fewer on PostgreSQL): as for a timeline page, a
        # change committed between the read's four statements is at worst one read early.
        with self.store.reading(snapshot=False) as c:
            if kind == "account":
                return reader.account(c, sid, as_of, shown, now)
            if kind == "lead":
                return reader.lead(c, sid, as_of, shown, now)
            profile = reader.contact(c, sid, as_of, shown, fields, now)
            if profile.merged_into is None:
                return profile
            return Profile("contact", sid, as_of, merged_into=reader.survivor(c, sid, as_of))

    def find_contacts(
        self, key: str, value: str, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[tuple[str, str | None]], str | None]:
        """The contacts whose ``key`` (email, phone, external_id, anonymous_id) is ``value``
        (normalised: see :func:`~interaction_store.projection.lookups.normal_value`), as
        (contact id, the contact it was merged into or None), in id order; and the cursor of
        the next page (None: no more)."""
        if key not in LOOKUP_KEYS:
            raise ValueError(f"lookup key {key!r}: must be one of {', '.join(LOOKUP_KEYS)}")
        if not isinstance(value, str) or not value.strip() or len(value) > 320:
            raise ValueError(f"{key} {value!r}: must be 1 to 320 characters")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 500:
            raise ValueError(f"limit {limit!r}: must be a whole number from 1 to 500")
        after = None
        if cursor is not None:
            try:
                after = str(UUID(cursor))
            except ValueError:
                raise ValueError(f"cursor {cursor!r}: not a cursor this lookup gave") from None
        profiles = self.view("profiles")
        assert isinstance(profiles, Profiles)
        if profiles.index is None:
            raise ViewError(f"the profiles view {profiles.instance!r} keeps no lookup index")
        digest = profiles.index.digest(key, value)
        with self.store.reading(snapshot=False) as c:
            ids = find(c, profiles.table("lookup"), key, digest, after, limit + 1)
            merged: dict[str, str | None] = {}
            for contact_id in ids[:limit]:
                c.execute(
                    f"SELECT merged_into FROM {profiles.table('contacts')} WHERE contact_id = %s",
                    (contact_id,),
                )
                row = c.fetchone()
                merged[contact_id] = None if row is None or row[0] is None else str(row[0])
        more = len(ids) > limit
        return list(merged.items()), (ids[limit - 1] if more else None)

    def positions(self) -> dict[str, dict[tuple[str, int], int]]:
        """Each live view's last applied offset per partition."""
        from interaction_store.log import open_log

        with open_log(self.settings) as log:
            parts = [(t.name, p) for t in log.catalog.event_topics for p in log.partitions(t.name)]
        return {
            info.instance: self.store.tracked(info.instance, parts)
            for info in self.registry.all()
            if info.status == "live"
        }

    def _consent(self) -> Consent:
        view = self.view("consent")
        assert isinstance(view, Consent)
        return view

    def close(self) -> None:
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> ReadAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
