"""What a view keeps to forget erased people whatever the order events arrive in: the subjects
``contact.erased`` names (the contact, its merged duplicates, its leads) and, for views that
show visitors, the anonymous ids linked to them.

Forgetting is monotone: a subject once erased stays erased, and any event about it that
arrives later (an older interaction replayed after the erasure, a visitor linked to an erased
contact) is stored already forgotten. So a view is the same function of the set of events
with erasures as without them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from interaction_store.events import ContactErased, IdentityLinked, InteractionEvent
from interaction_store.privacy.fields import sealed_paths_of
from interaction_store.privacy.sealing import stand_in
from interaction_store.projection.base import select_in
from interaction_store.views.base import Cursor, insert_rows

ERASED_TYPE = "contact.erased"
ERASURE_TYPES = frozenset({ERASED_TYPE, "identity.linked"})
"""What a view that follows visitors reads to know who is erased."""

ERASED_TEXT = "(erased)"
"""Stands in for a personal value a view forgot where a value is needed (a key column)."""

Subject = tuple[str, str]
"""(kind, id): ("contact", id), ("lead", id) or ("anonymous", id)."""


def named_by(event: InteractionEvent) -> list[Subject]:
    """The subjects an erasure event erases by name (visitors are found through links)."""
    p = event.payload
    if event.type != ERASED_TYPE or not isinstance(p, ContactErased):
        return []
    contacts = [event.subject.contact_id, *p.merged_contact_ids]
    return [("contact", str(c)) for c in contacts if c is not None] + [
        ("lead", str(lead)) for lead in p.lead_ids
    ]


def forget_document(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored event document without its personal fields (the sealed ones: the anonymous
    ids stay): each as a replay reads it once the key is destroyed (:func:`stand_in`)."""
    out = dict(doc)
    event_type = str(doc.get("type"))
    for path in sealed_paths_of(event_type):
        head, _, name = path.partition(".")
        part = out.get(head)
        if isinstance(part, dict) and part.get(name) is not None:
            out[head] = {**part, name: stand_in(event_type, path, erased=True)}
    return out


class ErasedSubjects:
    """A view's own record of erased subjects: tables ``erased`` and (``follow_visitors``)
    ``erased_links`` of the view that owns it, rebuilt with it from the log alone."""

    def __init__(self, table: Any, follow_visitors: bool) -> None:
        self._table = table  # the owning view's table(name) -> its full name
        self.follow_visitors = follow_visitors

    @property
    def tables(self) -> dict[str, str]:
        out = {
            # No event id: which of two erasures of one subject came first is no concern of
            # a view's rows (they must not depend on arrival).
            "erased": "subject_kind TEXT NOT NULL, subject_id TEXT NOT NULL, "
            "PRIMARY KEY (subject_kind, subject_id)"
        }
        if self.follow_visitors:
            out["erased_links"] = (
                "anonymous_id TEXT NOT NULL, contact_id TEXT NOT NULL, "
                "PRIMARY KEY (anonymous_id, contact_id)"
            )
        return out

    def record(self, cursor: Cursor, events: Sequence[InteractionEvent]) -> set[Subject]:
        """Note the batch's erasures (and visitor links); the subjects erased by them, among
        them those already erased (forgetting again changes nothing)."""
        erased: set[Subject] = set()
        links: list[tuple[str, str]] = []
        for event in events:
            erased.update(named_by(event))
            p = event.payload
            if self.follow_visitors and isinstance(p, IdentityLinked):
                links.append((p.anonymous_id, str(p.contact_id)))
        if self.follow_visitors:
            insert_rows(
                cursor,
                self._table("erased_links"),
                ("anonymous_id", "contact_id"),
                links,
                ("anonymous_id", "contact_id"),
            )
            erased |= self._visitors(cursor, erased, links)
        insert_rows(
            cursor,
            self._table("erased"),
            ("subject_kind", "subject_id"),
            sorted(erased),
            ("subject_kind", "subject_id"),
        )
        return erased

    def _visitors(
        self, cursor: Cursor, erased: set[Subject], links: list[tuple[str, str]]
    ) -> set[Subject]:
        """Visitors linked to a contact erased now, or newly linked to one erased before."""
        contacts = {sid for kind, sid in erased if kind == "contact"}
        out = {
            ("anonymous", anonymous_id)
            for (anonymous_id,) in select_in(
                cursor,
                f"SELECT anonymous_id FROM {self._table('erased_links')} "
                "WHERE contact_id IN ({ids})",
                contacts,
            )
        }
        before = {
            contact_id
            for (contact_id,) in select_in(
                cursor,
                f"SELECT subject_id FROM {self._table('erased')} "
                "WHERE subject_kind = %s AND subject_id IN ({ids})",
                {c for _, c in links} - contacts,
                "contact",
            )
        }
        out |= {("anonymous", a) for a, c in links if c in before}
        return out

    def among(self, cursor: Cursor, subjects: Iterable[Subject]) -> set[Subject]:
        """Which of ``subjects`` are erased."""
        by_kind: dict[str, set[str]] = {}
        for kind, sid in subjects:
            by_kind.setdefault(kind, set()).add(sid)
        out: set[Subject] = set()
        for kind, ids in by_kind.items():
            for (sid,) in select_in(
                cursor,
                f"SELECT subject_id FROM {self._table('erased')} "
                "WHERE subject_kind = %s AND subject_id IN ({ids})",
                ids,
                kind,
            ):
                out.add((kind, sid))
        return out
