"""Where personal fields are sealed and opened: the ingest seals each valid event's personal
fields before it reaches a log; the projection worker and the subject access export open them
where they are needed. Nothing else holds a data key.

Which fields: every path :func:`sealed_paths` gives for the event's type: the personal fields
but the anonymous visitor ids, which key an anonymous visitor's events and the views' rows
about it (pseudonymous, like the contact ids; an erasure makes the views forget whom they
were linked to).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID, uuid4

import orjson
from pydantic import BaseModel

from interaction_store.codec import EncodedEvent, EventRejected, Violation
from interaction_store.events import EVENT_TYPES, SUBJECT_KEYS, InteractionEvent
from interaction_store.log.base import DeadLetter, LogRecord
from interaction_store.privacy.cipher import SealedFieldError, is_sealed, open, seal
from interaction_store.privacy.dropping import DROPPED_TEXT, without_personal_data
from interaction_store.privacy.fields import sealed_paths, sealed_paths_of
from interaction_store.privacy.keystore import KeyStore, open_key_store
from interaction_store.settings import Settings

log = logging.getLogger(__name__)

UNREADABLE_TEXT = "(unreadable)"
"""Stands in for a required text field whose sealed text does not open (damaged): the view
shows it so, and the worker goes on."""


def _paths(event_type: str) -> tuple[tuple[str, str, str], ...]:
    """(path, part, field name) of each sealed field of a type."""
    if event_type in EVENT_TYPES:
        return _built_in_paths(event_type)
    return _split(sealed_paths_of(event_type))  # a custom type's: installed per process


@functools.cache
def _built_in_paths(event_type: str) -> tuple[tuple[str, str, str], ...]:
    return _split(sealed_paths().get(event_type, ()))


def _split(paths: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
    out = []
    for path in paths:
        head, name = path.split(".", 1)
        out.append((path, head, name))
    return tuple(out)


def sealer_of(settings: Settings) -> Sealer:
    """The sealer of a store: its master key (refusing to go on without one, naming the
    setting; the embedded default makes one on first use) and its key store. The store's
    entry points call this before they publish anything: no plaintext for lack of a key."""
    return Sealer(open_key_store(settings))


def opener_of(settings: Settings) -> Opener:
    """The opener of a store (see :func:`sealer_of`)."""
    return Opener(open_key_store(settings))


class _Keyed:
    """Holds a key store, or a function that opens it when first needed (a log whose events
    have no personal field never needs the master key)."""

    def __init__(self, keys: KeyStore | Callable[[], KeyStore]) -> None:
        self._keys = keys

    @property
    def keys(self) -> KeyStore:
        if not isinstance(self._keys, KeyStore):
            self._keys = self._keys()
        return self._keys

    def close(self) -> None:
        """Close the key store, if it was opened."""
        if isinstance(self._keys, KeyStore):
            self._keys.close()


class Sealer(_Keyed):
    """Seals the personal fields of encoded events with their subjects' data keys (made on
    first use): one key-store lookup per batch."""

    @classmethod
    def lazy(cls, settings: Settings) -> Sealer:
        """A sealer that opens the store's key store at the first personal field."""
        return cls(lambda: open_key_store(settings))

    def seal(self, records: Sequence[EncodedEvent]) -> tuple[list[EncodedEvent], set[int]]:
        """The records with their personal fields sealed, and the indexes of those whose
        subject was erased: stored without personal fields instead. The content digest stays
        the clear content's: a duplicate sent again is still a duplicate (nonces differ)."""
        out = list(records)
        todo: list[tuple[int, dict[str, Any], list[tuple[str, dict[str, Any], str]]]] = []
        for i, record in enumerate(records):
            paths = _paths(record.type)
            if not paths:
                continue  # most events: no personal field
            doc = orjson.loads(record.value)
            fields = []
            for path, head, name in paths:
                part = doc.get(head)
                if isinstance(part, dict) and part.get(name) is not None:
                    fields.append((path, part, name))
            if fields:
                todo.append((i, doc, fields))
        if not todo:
            return out, set()
        lookup = self.keys.get_or_create_many({records[i].key for i, _, _ in todo})
        erased: set[int] = set()
        for i, doc, fields in todo:
            record = records[i]
            key = lookup.keys.get(record.key)
            if key is None:
                dropped = without_personal_data(record)
                out[i] = dataclasses.replace(dropped, digest=record.digest)
                erased.add(i)
                continue
            event_id = UUID(bytes=record.event_id)
            for path, part, name in fields:
                part[name] = seal(key, record.key, event_id, path, part[name])
            out[i] = dataclasses.replace(record, value=orjson.dumps(doc))
        return out, erased


LETTER_PATH = "(dead letter)"
"""The path a sealed dead letter's content is sealed for (its associated data)."""


def letter_subject(original: bytes) -> str | None:
    """The subject a rejected document names (its key, read loosely: it failed the contract),
    or None when it names none that could be an event's key."""
    try:
        doc = orjson.loads(original)
    except orjson.JSONDecodeError:
        return None
    subject = doc.get("subject") if isinstance(doc, dict) else None
    if not isinstance(subject, dict):
        return None
    # The event key's order (InteractionEvent.key): contact, lead, anonymous, account.
    for name in SUBJECT_KEYS:
        value = subject.get(name)
        if not isinstance(value, str):
            continue
        if name == "anonymous_id":
            if 0 < len(value.strip()) <= 200:
                return value.strip()
            continue
        try:
            return str(UUID(value))
        except ValueError:
            continue
    return None


def seal_letters(sealer: Sealer, letters: Sequence[DeadLetter]) -> list[DeadLetter]:
    """Dead letters whose document names a subject, sealed under its data key: the document,
    the reason and the details (which echo the refused values) become one sealed text, and
    the headers keep what routes and counts them (the fields and rules that failed). A
    subject already erased: the document is not kept at all. A document naming no subject
    cannot be erased by anyone's request and is kept as sent."""
    subjects = [letter_subject(letter.original) for letter in letters]
    wanted = {s for s in subjects if s is not None}
    if not wanted:
        return list(letters)
    lookup = sealer.keys.get_or_create_many(wanted)
    out: list[DeadLetter] = []
    for letter, subject in zip(letters, subjects, strict=True):
        if subject is None:
            out.append(letter)
            continue
        found = letter.details.get("violations")
        violations = [
            # The value a violation echoes is the person's: it goes into the sealed part.
            {k: v.get(k) for k in ("field", "rule", "message")}
            for v in (found if isinstance(found, list) else [])
            if isinstance(v, dict)
        ]
        fields = [str(v["field"]) for v in violations] or ["(document)"]
        rules = [str(v["rule"]) for v in violations] or [str(letter.details.get("rule", ""))]
        # What the details say besides the violations' values (a conflict's rule, positions
        # and digests) stays readable.
        summary: dict[str, Any] = {
            **{k: v for k, v in letter.details.items() if k != "violations"},
            "sealed": True,
            "subject": subject,
        }
        if isinstance(found, list):
            summary["violations"] = violations
        key = lookup.keys.get(subject)
        if key is None:
            summary["erased"] = True
            out.append(
                DeadLetter(
                    b"",
                    f"rejected; its subject {subject} is erased, so the document is not kept",
                    letter.source,
                    summary,
                )
            )
            continue
        letter_id = uuid4()
        summary["letter_id"] = str(letter_id)
        content = {
            "original": letter.original.decode("utf-8", "replace"),
            "reason": letter.reason,
            "details": letter.details,
        }
        sealed = seal(key, subject, letter_id, LETTER_PATH, content)
        # A rejection's reason echoes the refused values: it is sealed with the document. A
        # conflict's names ids, positions and digests only, and stays.
        reason = (
            f"rejected ({', '.join(rules)}) at {', '.join(fields)}; the document and the "
            f"reason are sealed under the data key of subject {subject}"
            if isinstance(found, list)
            else f"{letter.reason} (the document: sealed under {subject}'s data key)"
        )
        out.append(DeadLetter(sealed.encode(), reason, letter.source, summary))
    return out


def open_letter(keys: KeyStore, record_value: bytes, details: dict[str, Any]) -> Any:
    """A sealed dead letter's content ({original, reason, details}), or None if it does not
    open (its subject erased, or not a sealed letter)."""
    subject, letter_id = details.get("subject"), details.get("letter_id")
    if not details.get("sealed") or not isinstance(subject, str) or not letter_id:
        return None
    key = keys.get(subject)
    if key is None:
        return None
    try:
        return open(key, subject, UUID(str(letter_id)), LETTER_PATH, record_value.decode())
    except (SealedFieldError, ValueError):
        return None


def letter_original(keys: KeyStore, record: LogRecord) -> bytes | None:
    """The document a dead letter holds, as it was sent: opened when sealed (None if it no
    longer opens: its subject erased), else the record's bytes."""
    try:
        details = orjson.loads(record.headers.get("istore.details", "{}"))
    except orjson.JSONDecodeError:
        details = {}
    if not isinstance(details, dict) or not details.get("sealed"):
        return record.value
    content = open_letter(keys, record.value or b"", details)
    return None if content is None else str(content["original"]).encode()


def refuse_sealed_input(record: EncodedEvent) -> EventRejected | None:
    """A publisher's event whose personal field already holds sealed text: refused (only the
    store seals, and a foreign ``enc:v1:`` text would never open)."""
    paths = _paths(record.type)
    if not paths or b'"enc:v1:' not in record.value:
        return None
    doc = orjson.loads(record.value)
    for path, head, name in paths:
        part = doc.get(head)
        if isinstance(part, dict) and is_sealed(part.get(name)):
            return EventRejected(
                str(UUID(bytes=record.event_id)),
                record.type,
                [
                    Violation(
                        path,
                        part[name],
                        "sealed_by_store",
                        "personal fields are sealed by the store: send them in clear "
                        "(see docs/privacy.md)",
                    )
                ],
            )
    return None


class Opener(_Keyed):
    """Opens the sealed personal fields of decoded events with their subjects' data keys:
    one key-store lookup per batch, no key ever made. A field that does not open stands in as
    erased (its subject's key was destroyed: absent, or ``(erased)`` where the contract
    requires a text) or unreadable (damaged: absent, ``(unreadable)``, or an empty form)."""

    def __init__(self, keys: KeyStore | Callable[[], KeyStore]) -> None:
        super().__init__(keys)
        self.unreadable = 0
        """Fields that did not open though their key exists (damaged), since this opener was
        made: the worker logs each."""

    @classmethod
    def lazy(cls, settings: Settings) -> Opener:
        """An opener that opens the store's key store at the first sealed field."""
        return cls(lambda: open_key_store(settings))

    def open_events(self, events: Sequence[InteractionEvent]) -> list[InteractionEvent]:
        out = list(events)
        todo: list[tuple[int, list[tuple[str, str, str, str]]]] = []
        for i, event in enumerate(events):
            paths = _paths(event.type)
            if not paths:
                continue
            found = []
            for path, head, name in paths:
                value = getattr(getattr(event, head), name, None)
                if type(value) is str and is_sealed(value):
                    found.append((path, head, name, value))
            if found:
                todo.append((i, found))
        if not todo:
            return out
        lookup = self.keys.get_many({events[i].key for i, _ in todo})
        for i, found in todo:
            event = events[i]
            key = lookup.keys.get(event.key)
            updates: dict[str, dict[str, Any]] = {"payload": {}, "subject": {}}
            for path, head, name, text in found:
                if key is None:
                    gone = event.key in lookup.erased
                    updates[head][name] = stand_in(event.type, path, gone)
                    if not gone:
                        self._note(event, path, f"no data key for subject {event.key!r}")
                    continue
                try:
                    updates[head][name] = open(key, event.key, event.event_id, path, text)
                except SealedFieldError as exc:
                    updates[head][name] = stand_in(event.type, path, False)
                    self._note(event, path, str(exc))
            changed: dict[str, Any] = {}
            for head, fields in updates.items():
                if fields:
                    part: BaseModel = getattr(event, head)
                    changed[head] = part.model_copy(update=fields)
            out[i] = event.model_copy(update=changed)
        return out

    def _note(self, event: InteractionEvent, path: str, why: str) -> None:
        self.unreadable += 1
        log.warning("event %s (%s): %s unreadable: %s", event.event_id, event.type, path, why)


def stand_in(event_type: str, path: str, erased: bool) -> Any:
    """What a sealed field that does not open reads as: a text saying why (``(erased)``, its
    subject's key destroyed; ``(unreadable)``, damaged), or, for a form's fields, none. A
    view that forgets an erased subject's fields writes the same, so that a replay after the
    erasure (the key gone) gives the views the live erasure left."""
    head, name = path.split(".", 1)
    if event_type not in EVENT_TYPES:  # a custom type's personal fields are all text
        return DROPPED_TEXT if erased else UNREADABLE_TEXT
    model = EVENT_TYPES[event_type].model_fields[head].annotation
    info = model.model_fields[name]  # type: ignore[union-attr]
    if info.default_factory is not None:
        return info.default_factory()
    return DROPPED_TEXT if erased else UNREADABLE_TEXT
