"""Events about an erased subject: accepted, but stored without their personal fields (the
key that would seal them is destroyed, and the person asked to be forgotten)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from interaction_store.codec import EncodedEvent, decode, decode_document, to_document
from interaction_store.privacy.fields import personal_paths
from interaction_store.privacy.keystore import KeyStore, open_key_store
from interaction_store.privacy.sqlite import KEYS_FILE
from interaction_store.settings import Settings

ErasedCheck = Callable[[Iterable[str]], set[str]]
"""Which of some subjects (event keys) were erased."""

DROPPED_TEXT = "(erased)"
"""Stands in for a personal field the contract requires (a chat message's text)."""


def without_personal_data(record: EncodedEvent) -> EncodedEvent:
    """The record with every ``x-personal-data`` field left out (a required one: replaced by
    ``(erased)``). ``subject.anonymous_id`` stays when it is the event's only subject: it is
    its routing key."""
    doc = to_document(decode(record.value))
    for path in personal_paths()[record.type]:
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
        for path in personal_paths()[record.type]:
            head, _, name = path.partition(".")
            field = doc[head]
            if isinstance(field, dict) and name not in field and head == "payload":
                field[name] = DROPPED_TEXT
        event = decode_document(doc)
    return EncodedEvent.of(event)


def tombstone_check(keys: KeyStore) -> ErasedCheck:
    """The subjects among some that were erased (tombstones in the key store)."""

    def erased(subjects: Iterable[str]) -> set[str]:
        return set(keys.get_many(subjects).erased)

    return erased


def erasure_check_of(settings: Settings) -> tuple[KeyStore | None, ErasedCheck | None]:
    """The key store and its tombstone check, if this store can have erased anyone: on the
    embedded store once ``keys.sqlite`` exists, elsewhere once a master key is set (an
    erasure needs both). Else (None, None): nothing to check, and no key made for it."""
    if settings.postgres_dsn is None:
        if not (settings.data_dir / KEYS_FILE).exists():
            return None, None
    elif settings.master_key is None and settings.master_key_file is None:
        return None, None
    keys = open_key_store(settings)
    return keys, tombstone_check(keys)
