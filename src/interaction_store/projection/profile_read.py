"""Profile reads: a contact, account or lead as the profiles view holds it, each value with the
event that set it, now or as of an instant.

The profiles view keeps every profile event per entity; a read folds the entity's events up to
``as_of`` again (a handful per entity), so a past state costs what the present one does. The
engagement counters are counted from the timeline view, over its window.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from interaction_store.projection.base import iso, placeholders
from interaction_store.projection.profile_values import (
    FIELD_GROUPS,
    Engagement,
    Profile,
    Recorded,
    Shown,
    Source,
    instant,
    lead_values,
    leads,
    memberships,
    open_cases,
    origin_of,
    registrations,
    source_of,
)
from interaction_store.projection.profiles import Profiles
from interaction_store.projection.timeline import Timeline
from interaction_store.projection.timeline.query import timelines_of
from interaction_store.views.base import Cursor

_MAX_HOPS = 16


class ProfileReader:
    """Reads profiles from the profiles view (and counters from the timeline view)."""

    def __init__(self, profiles: Profiles, timeline: Timeline | None) -> None:
        self.profiles = profiles
        self.timeline = timeline

    def load(
        self,
        c: Cursor,
        wanted: list[tuple[str, Collection[str], bool]],
        as_of: datetime | None,
    ) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """In one statement, the stored events up to ``as_of``, oldest first, by kind and entity,
        of each (kind, ids, prefix): the entities with these ids, or (prefix) those whose id
        starts with ``<id>|``."""
        conditions: list[str] = []
        params: list[Any] = []
        for kind, ids, prefix in wanted:
            if not ids:
                continue
            if prefix:
                for entity in sorted(ids):
                    conditions.append("(kind = %s AND entity_id >= %s AND entity_id < %s)")
                    params += [kind, f"{entity}|", f"{entity}}}"]
            else:
                conditions.append(f"(kind = %s AND entity_id IN ({placeholders(len(ids))}))")
                params += [kind, *sorted(ids)]
        out: dict[str, dict[str, list[dict[str, Any]]]] = {}
        if not conditions:
            return out
        until = ""
        if as_of is not None:
            until, params = " AND occurred_at <= %s", [*params, iso(as_of)]
        c.execute(
            f"SELECT kind, entity_id, doc FROM {self.profiles.table('events')} "
            f"WHERE ({' OR '.join(conditions)}){until} "
            "ORDER BY kind, entity_id, occurred_at, event_id",
            params,
        )
        for kind, entity_id, doc in c.fetchall():
            out.setdefault(str(kind), {}).setdefault(str(entity_id), []).append(orjson.loads(doc))
        return out

    def related(self, c: Cursor, column: str, value: str) -> tuple[list[str], list[str]]:
        """The memberships (``account|contact``) and leads of a contact or an account."""
        member, lead = f"{column}_id", f"parent_{column}_id"
        c.execute(
            f"SELECT 'member', account_id || '|' || contact_id FROM "
            f"{self.profiles.table('members')} WHERE {member} = %s UNION ALL "
            f"SELECT 'lead', lead_id FROM {self.profiles.table('leads')} WHERE {lead} = %s",
            (value, value),
        )
        rows = c.fetchall()
        return [str(r[1]) for r in rows if r[0] == "member"], [
            str(r[1]) for r in rows if r[0] == "lead"
        ]

    # ------------------------------------------------------------------ contact

    def contact(
        self,
        c: Cursor,
        contact_id: str,
        as_of: datetime | None,
        shown: Shown,
        fields: Collection[str] | None,
        now: datetime | None = None,
    ) -> Profile:
        profile = Profile("contact", contact_id, as_of)
        member_ids, lead_ids = self.related(c, "contact", contact_id)
        found = self.load(
            c,
            [
                ("contact", [contact_id], False),
                ("member", member_ids, False),
                ("lead", lead_ids, False),
                ("registration", [contact_id], True),
                ("case", [contact_id], True),
            ],
            as_of,
        )
        docs = found.get("contact", {}).get(contact_id, [])
        values: dict[str, Recorded] = {}
        for d in docs:
            payload = d["payload"]
            if d["type"] == "contact.merged":
                if payload["merged_contact_id"] == contact_id:
                    profile.merged_into = Recorded(d["subject"]["contact_id"], source_of(d))
                else:
                    profile.merged_from.append(str(payload["merged_contact_id"]))
                continue
            if d["type"] == "contact.created" and profile.origin is None:
                profile.origin = origin_of(d)
            if d["type"] in ("contact.created", "contact.updated"):
                for name, value in payload.items():
                    if value is not None:
                        values[name] = Recorded(value, source_of(d))
        profile.events = len(docs)
        granted = set(FIELD_GROUPS) if fields is None else set(fields)
        for group, names in FIELD_GROUPS.items():
            if group not in granted:
                profile.withheld += list(names)
        hidden = set(profile.withheld)
        order = ("first_name", "last_name", "email", "phone", "external_id", "is_child")
        for name in (*order, "guardian_contact_id"):
            if name not in hidden:
                profile.fields[name] = values.get(name, Recorded(None))
        profile.merged_from = sorted(set(profile.merged_from))
        profile.memberships = memberships(found.get("member", {}))
        profile.leads = leads(found.get("lead", {}))
        if shown is None or shown("event.registered"):
            profile.registrations = registrations(found.get("registration", {}))
        else:
            profile.withheld.append("registrations")
        if shown is None or shown("activity.case_opened"):
            profile.open_cases = open_cases(found.get("case", {}))
        else:
            profile.withheld.append("open_cases")
        self._engage(c, profile, ("contact", contact_id), as_of, shown, now)
        return profile

    def survivor(self, c: Cursor, contact_id: str, as_of: datetime | None) -> Recorded | None:
        """Where a merged-away contact went in the end (following merges of merges)."""
        found: Recorded | None = None
        current, seen = contact_id, {contact_id}
        for _ in range(_MAX_HOPS):
            into: Recorded | None = None
            docs = self.load(c, [("contact", [current], False)], as_of).get("contact", {})
            for d in docs.get(current, []):
                if d["type"] == "contact.merged" and d["payload"]["merged_contact_id"] == current:
                    into = Recorded(str(d["subject"]["contact_id"]), source_of(d))
            if into is None or into.value in seen:
                break
            found, current = into, into.value
            seen.add(current)
        return found

    # ------------------------------------------------------------------ account, lead

    def account(
        self,
        c: Cursor,
        account_id: str,
        as_of: datetime | None,
        shown: Shown,
        now: datetime | None = None,
    ) -> Profile:
        profile = Profile("account", account_id, as_of)
        member_ids, lead_ids = self.related(c, "account", account_id)
        wanted = [("account", [account_id], False), ("member", member_ids, False)]
        found = self.load(c, [*wanted, ("lead", lead_ids, False)], as_of)
        docs = found.get("account", {}).get(account_id, [])
        profile.events = len(docs)
        name: Recorded = Recorded(None)
        for d in docs:
            if profile.origin is None:
                profile.origin = origin_of(d)
            name = Recorded(d["payload"].get("name"), source_of(d))
        profile.fields["name"] = name
        profile.memberships = memberships(found.get("member", {}))
        profile.leads = leads(found.get("lead", {}))
        self._engage(c, profile, ("account", account_id), as_of, shown, now)
        return profile

    def lead(
        self,
        c: Cursor,
        lead_id: str,
        as_of: datetime | None,
        shown: Shown,
        now: datetime | None = None,
    ) -> Profile:
        profile = Profile("lead", lead_id, as_of)
        docs = self.load(c, [("lead", [lead_id], False)], as_of).get("lead", {}).get(lead_id, [])
        profile.events = len(docs)
        values = lead_values(docs)
        created = next((d for d in docs if d["type"] == "lead.created"), None)
        if created is not None:
            profile.origin = origin_of(created)
        for name in ("parent_contact_id", "parent_account_id", "topic", "status"):
            profile.fields[name] = values.get(name, Recorded(None))
        self._engage(c, profile, ("lead", lead_id), as_of, shown, now)
        return profile

    # ------------------------------------------------------------------ engagement

    def _engage(
        self,
        c: Cursor,
        profile: Profile,
        subject: tuple[str, str],
        as_of: datetime | None,
        shown: Shown,
        now: datetime | None,
    ) -> None:
        """Per channel: the entries the timeline counts in its window (the windowed channels
        from ``window_days`` before ``as_of``/now; the others whatever their age), up to
        ``as_of``, of the categories the reader may read."""
        timeline = self.timeline
        if timeline is None:
            return
        s = timeline.settings
        end = as_of or now or datetime.now(UTC)
        start = end - timedelta(days=s.window_days)
        profile.window_start = start
        channels = [ch for ch in s.channels if shown is None or shown(f"{ch}.x")]
        profile.withheld += [f"engagement.{ch}" for ch in s.channels if ch not in channels]
        windowed = [ch for ch in channels if ch in s.windowed_channels]
        if not channels:
            return
        owners, args = [], []
        for kind, ids in timelines_of(c, subject, self.profiles):
            if ids:
                owners.append(f"(subject_kind = %s AND subject_id IN ({placeholders(len(ids))}))")
                args += [kind, *sorted(ids)]
        if not owners:
            return
        window = (
            f"(occurred_at >= %s OR channel NOT IN ({placeholders(len(windowed))}))"
            if windowed
            else "1 = 1"
        )
        c.execute(
            "SELECT channel, COUNT(DISTINCT event_id), "
            "MAX(occurred_at || ' ' || event_id || ' ' || type) "
            f"FROM {timeline.table('entries')} WHERE ({' OR '.join(owners)}) "
            f"AND channel IN ({placeholders(len(channels))}) AND {window} AND occurred_at <= %s "
            "GROUP BY channel ORDER BY channel",
            (*args, *channels, *([iso(start), *windowed] if windowed else []), iso(end)),
        )
        for channel, count, latest in c.fetchall():
            at, event_id, event_type = str(latest).split(" ", 2)
            profile.engagement.append(
                Engagement(str(channel), int(count), Source(event_id, event_type, instant(at)))
            )
