"""Erasing a contact on request (GDPR Art. 17): who goes with it, the ``contact.erased``
event, the data keys destroyed, the dead letters removed, the suppression list, the receipt.
``istore erase contact`` and ``DELETE /v1/contacts/{id}`` both come here.

The steps, in an order that a crash at any point and a second run complete:
1. the receipt: a contact erased before answers with its first receipt;
2. who: the contact's merged group, the visitors linked to it, the leads whose only parent it
   is, and its addresses and numbers, read from the live views (404 if none knows it);
3. the suppression list gets the addresses' keyed hashes (before the views forget them);
4. ``contact.erased`` is published (a deterministic id: a second run finds it in the log);
5. every subject's data key is destroyed (a tombstone stays);
6. the view database's dead letters about them are deleted;
7. the receipt is stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from interaction_store.codec import EncodedEvent, decode_document
from interaction_store.events import EVENT_TYPES
from interaction_store.log.base import EventLog
from interaction_store.privacy.keystore import KeyStore
from interaction_store.privacy.register import ErasureRegister, address_kind
from interaction_store.projection.base import select_in
from interaction_store.projection.consent import Consent
from interaction_store.projection.erasure import ERASED_TEXT
from interaction_store.projection.merges import merged_groups
from interaction_store.projection.profiles import Profiles
from interaction_store.projection.registry import ViewRegistry
from interaction_store.projection.runner import DEAD_LETTERS, dead_letters_ddl
from interaction_store.projection.timeline import Timeline
from interaction_store.views.base import Cursor, ViewStore

_NAMESPACE = uuid.UUID("6f0c3b1e-2d4a-5e8f-9a7b-0c1d2e3f4a5b")
PENDING_LOG = (
    "the log: events stored before sealing was in place (by an older version) hold their "
    "personal fields in clear; every later one holds them sealed under the data keys "
    "destroyed here"
)


class UnknownSubject(LookupError):
    """No view knows the contact to erase."""

    def __init__(self, contact_id: str) -> None:
        super().__init__(contact_id)
        self.contact_id = contact_id

    def __str__(self) -> str:
        return (
            f"contact {self.contact_id}: no view knows it (not in the profiles, timeline or "
            "consent view); check the id, or run the projection worker if it was just published"
        )


def erasure_id(contact_id: str) -> str:
    """One id per contact's erasure: a second request finds the first."""
    return str(uuid.uuid5(_NAMESPACE, f"erasure:{contact_id}"))


def parse_contact_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"contact id {value!r}: not a UUID") from None


class Eraser:
    """Erases contacts from a log, a view store and a key store."""

    def __init__(
        self,
        log: EventLog,
        store: ViewStore,
        keys: KeyStore,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.log = log
        self.store = store
        self.keys = keys
        self.register = ErasureRegister(store, keys.master)
        self.clock = clock

    def erase(self, contact_id: str, requested_by: str) -> tuple[dict[str, Any], bool]:
        """The receipt, and whether this call erased (False: erased before, same receipt)."""
        contact_id = parse_contact_id(contact_id)
        found = self.register.receipt_of(contact_id)
        if found is not None:
            return found, False
        now = self.clock()
        request = erasure_id(contact_id)
        who = self._who(contact_id)
        suppressed = self.register.suppress(who["addresses"], request, now)
        position = self._publish(contact_id, request, requested_by, who, now)
        subjects = [*who["contacts"], *who["leads"], *who["anonymous"]]
        destroyed = sum(self.keys.destroy(s) for s in subjects)
        letters = self._drop_dead_letters(set(subjects))
        receipt = {
            "erasure_id": request,
            "contact_id": contact_id,
            "requested_by": requested_by,
            "requested_at": now.isoformat(),
            "event": {"type": "contact.erased", **position},
            "erased": {
                "contacts": who["contacts"],
                "leads": who["leads"],
                "anonymous_ids": len(who["anonymous"]),
            },
            "destroyed": [
                {
                    "what": "data keys (tombstones left: later data about them is not kept)",
                    "where": self.keys.where,
                    "subjects": len(subjects),
                    "keys_destroyed": destroyed,
                },
                {
                    "what": "dead letters holding their events",
                    "where": f"table {DEAD_LETTERS} of the view database",
                    "rows": letters,
                },
                {
                    "what": "personal fields in the views (timeline previews, consent "
                    "addresses, profile names, e-mails and phones)",
                    "where": "every view, as it applies the erasure event at "
                    f"{position['topic']}/{position['partition']}@{position['offset']}",
                },
            ],
            "suppressed": {
                "what": "keyed hashes of the addresses and numbers (consent never returns)",
                "hashes": suppressed,
            },
            "pending": [
                PENDING_LOG,
                f"the dead-letter topic {self.log.catalog.dead_letter.name}: a rejected "
                "document naming the person is sealed under their key (destroyed here); one "
                "naming nobody is kept as sent until the topic's retention",
                "the intake topic (publishers writing straight to Kafka): records in clear "
                "until its retention",
                "backups of the log and of the view database taken before now",
            ],
        }
        return self.register.save(receipt), True

    # ------------------------------------------------------------------ the steps

    def _who(self, contact_id: str) -> dict[str, Any]:
        # Only live views are read: their tables exist (a view never built knows nobody).
        registry = ViewRegistry(self.store)
        live = {
            k: i.instance for k in ("profiles", "timeline", "consent") if (i := registry.live(k))
        }
        profiles = Profiles(live["profiles"]) if "profiles" in live else None
        timeline = Timeline(live["timeline"]) if "timeline" in live else None
        consent = Consent(live["consent"]) if "consent" in live else None
        group, anonymous, leads = [contact_id], [], []
        addresses: set[tuple[str, str]] = set()
        with self.store.reading() as c:
            known = (
                (profiles and _has(c, profiles.table("contacts"), "contact_id", contact_id))
                or (consent and _has(c, consent.table("contacts"), "contact_id", contact_id))
                or (timeline and _has(c, timeline.table("entries"), "subject_id", contact_id))
            )
            if not known:
                raise UnknownSubject(contact_id)
            if profiles is not None:
                group = sorted(merged_groups(c, profiles, [contact_id])[contact_id])
                anonymous = _select(c, "anonymous_id", profiles.table("identities"), group)
                leads = _select(
                    c,
                    "lead_id",
                    profiles.table("leads"),
                    group,
                    "parent_contact_id",
                    " AND parent_account_id IS NULL",
                )
                addresses |= _addresses(c, profiles.table("contacts"), group)
            if consent is not None:
                addresses |= _addresses(c, consent.table("contacts"), group)
                for channel, point in select_in(
                    c,
                    f"SELECT channel, contact_point FROM {consent.table('contact_points')} "
                    "WHERE contact_id IN ({ids})",
                    group,
                ):
                    if channel != "push" and point not in ("*", ERASED_TEXT):
                        addresses.add((address_kind(channel), point))
        return {
            "contacts": group,
            "leads": sorted(set(leads)),
            "anonymous": sorted(set(anonymous)),
            "addresses": sorted(addresses),
        }

    def _publish(
        self,
        contact_id: str,
        request: str,
        requested_by: str,
        who: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        event = EVENT_TYPES["contact.erased"].model_validate(
            {
                "event_id": str(uuid.uuid5(_NAMESPACE, f"contact.erased:{contact_id}")),
                "type": "contact.erased",
                "schema_version": 1,
                "occurred_at": now,
                "source": requested_by,
                "subject": {"contact_id": contact_id},
                "payload": {
                    "request_id": request,
                    "merged_contact_ids": [c for c in who["contacts"] if c != contact_id],
                    "lead_ids": who["leads"],
                },
            }
        )
        # A second run after a crash publishes the same id: the log answers with the first
        # copy's position (a duplicate, or a conflict on its other instant).
        (result,) = self.log.append([EncodedEvent.of(event, now)])
        p = result.position
        return {
            "event_id": str(event.event_id),
            "topic": p.topic,
            "partition": p.partition,
            "offset": p.offset,
        }

    def _drop_dead_letters(self, subjects: set[str]) -> int:
        """Delete the dead letters (set aside by a view) of the subjects' events."""
        self.store.ensure([dead_letters_ddl(self.store.dialect)])
        doomed: list[tuple[str, str]] = []
        with self.store.transaction() as c:
            c.execute(f"SELECT view_name, event_id, event FROM {DEAD_LETTERS}")
            for view_name, event_id, raw in c.fetchall():
                if raw is not None and _about(bytes(raw), subjects):
                    doomed.append((view_name, event_id))
            c.executemany(
                f"DELETE FROM {DEAD_LETTERS} WHERE view_name = %s AND event_id = %s", doomed
            )
        return len(doomed)


def _about(raw: bytes, subjects: set[str]) -> bool:
    """Whether a stored event names one of the subjects (read loosely: a dead letter may
    not pass the contract, and its personal data must go all the same)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    try:
        s = decode_document(doc).subject
        ids = {str(s.contact_id), str(s.lead_id), str(s.anonymous_id)}
    except ValueError:
        subject = doc.get("subject") if isinstance(doc, dict) else None
        ids = {str(v) for v in subject.values()} if isinstance(subject, dict) else set()
    return bool(ids & subjects)


def _has(cursor: Cursor, table: str, column: str, value: str) -> bool:
    cursor.execute(f"SELECT 1 FROM {table} WHERE {column} = %s LIMIT 1", (value,))
    return cursor.fetchone() is not None


def _select(
    cursor: Cursor,
    column: str,
    table: str,
    contacts: list[str],
    by: str = "contact_id",
    extra: str = "",
) -> list[str]:
    sql = f"SELECT {column} FROM {table} WHERE {by} IN ({{ids}}){extra}"
    return [str(r[0]) for r in select_in(cursor, sql, contacts)]


def _addresses(cursor: Cursor, table: str, contacts: list[str]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    sql = f"SELECT email, phone FROM {table} WHERE contact_id IN ({{ids}})"
    for email, phone in select_in(cursor, sql, contacts):
        for kind, value in (("email", email), ("phone", phone)):
            if value and value != ERASED_TEXT:
                out.add((kind, value))
    return out
