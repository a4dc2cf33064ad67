"""Events about an erased subject: accepted, but stored without their personal fields (the
key that would seal them is destroyed, and the person asked to be forgotten)."""

from __future__ import annotations

from interaction_store.codec import EncodedEvent, decode, decode_document, to_document
from interaction_store.privacy.fields import personal_paths_of

DROPPED_TEXT = "(erased)"
"""Stands in for a personal field the contract requires (a chat message's text)."""


def without_personal_data(record: EncodedEvent) -> EncodedEvent:
    """The record with every ``x-personal-data`` field left out (a required one: replaced by
    ``(erased)``). ``subject.anonymous_id`` stays when it is the event's only subject: it is
    its routing key."""
    doc = to_document(decode(record.value))
    for path in personal_paths_of(record.type):
        head, _, name = path.partition(".")
        part = doc.get(head)
        if not isinstance(part, dict) or name not in part:
            continue
        if path == "subject.anonymous_id" and not (part.get("contact_id") or part.get("lead_id")):
            continue
        del part[name]
    try:
        event = decode_document(doc)
    except ValueError:
        for path in personal_paths_of(record.type):
            head, _, name = path.partition(".")
            field = doc[head]
            if isinstance(field, dict) and name not in field and head == "payload":
                field[name] = DROPPED_TEXT
        event = decode_document(doc)
    return EncodedEvent.of(event)
