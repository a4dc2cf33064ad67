"""The one serializer: events to and from JSON bytes (orjson), with validation and upcasting.

A rejected event raises :class:`EventRejected`, whose violations name the event, the field,
the bad value and the rule it broke, so an upstream system can act on it.
"""

from __future__ import annotations

import gc
import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from interaction_store import custom_types
from interaction_store.custom_types import CHECKED, CustomEvent, CustomType
from interaction_store.events import CURRENT_VERSIONS, EVENT_ADAPTER, EVENT_TYPES, InteractionEvent

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_MAX_VALUE_CHARS = 120

MAX_EVENT_BYTES = 512 * 1024
"""Larger documents are rejected: Kafka's default record limit is 1 MB, and an interaction
that big is a bug upstream (an attachment pasted into a field, say)."""

KEEP_OF_OVERSIZED = 64 * 1024
"""How much of an oversized document a dead letter keeps."""

MAX_DEPTH = 32
"""How deeply objects and arrays may nest in an event. The deepest of the contract is 4;
orjson writes at most 254 levels, and checking a document walks it level by level."""


@dataclass(frozen=True)
class Violation:
    """One broken rule of the contract."""

    field: str
    value: Any
    rule: str
    message: str

    def describe(self) -> str:
        return f"{self.field}={_show(self.value)}: {self.message} [rule: {self.rule}]"


class EventRejected(ValueError):
    """An event that does not meet the contract; nothing of it was stored."""

    def __init__(self, event_id: str | None, event_type: str | None, violations: list[Violation]):
        self.event_id = event_id
        self.event_type = event_type
        self.violations = violations
        who = f"event {event_id or '(no event_id)'}"
        if event_type:
            who += f" ({event_type})"
        super().__init__(f"{who} rejected: " + "; ".join(v.describe() for v in violations))

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its parts when it crosses a process boundary (parallel validation).
        return (EventRejected, (self.event_id, self.event_type, self.violations))

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.event_type,
            "violations": [
                {
                    "field": v.field,
                    "value": _jsonable(v.value),
                    "rule": v.rule,
                    "message": v.message,
                }
                for v in self.violations
            ],
        }


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def _jsonable(value: Any) -> Any:
    """The value as it can be echoed in an answer or a dead letter's header: scalars as they
    are (long text shortened), anything else as JSON only while it stays short (a deeply nested
    or huge value would make the answer itself unwritable), else shortened ``repr``."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else _show(value)
    if isinstance(value, str):
        return value if len(value) <= _MAX_VALUE_CHARS else value[: _MAX_VALUE_CHARS - 3] + "..."
    try:
        dumped = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: too deep, an int past 64 bits, not JSON at all
        return _show(value)
    return value if len(dumped) <= _MAX_VALUE_CHARS else _show(value)


# --------------------------------------------------------------------------- upcasting

UPCASTERS: dict[tuple[str, int], Upcaster] = {}
"""(type, from_version) -> function turning a version-N event document into version N+1."""


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function that lifts ``event_type`` from ``from_version`` to the next one."""

    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(event_type, from_version)] = fn
        return fn

    return register


@upcaster("email.bounced", 1)
def _bounce_v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    # Version 1 said {"hard": true|false}; version 2 names the kind, which leaves room for more.
    raw = doc.get("payload")
    if not isinstance(raw, dict):
        raise EventRejected(
            _str_or_none(doc.get("event_id")),
            "email.bounced",
            [Violation("payload", raw, "dict_type", "the payload must be an object")],
        )
    payload = dict(raw)
    hard = payload.pop("hard", None)
    if not isinstance(hard, bool):
        raise EventRejected(
            _str_or_none(doc.get("event_id")),
            "email.bounced",
            [Violation("payload.hard", hard, "bool", "version 1 bounces need hard: true|false")],
        )
    payload["bounce_type"] = "hard" if hard else "soft"
    return {**doc, "payload": payload, "schema_version": 2}


def upcast(doc: dict[str, Any]) -> dict[str, Any]:
    """Lift an event document to its type's current schema version."""
    event_type = doc["type"]
    current = CURRENT_VERSIONS[event_type]
    version = doc["schema_version"]
    while version < current:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise EventRejected(
                _str_or_none(doc.get("event_id")),
                event_type,
                [
                    Violation(
                        "schema_version",
                        version,
                        "known_schema_version",
                        f"no upcaster from version {version}; current is {current}",
                    )
                ],
            )
        doc = step(doc)
        version = doc["schema_version"]
    return doc


# --------------------------------------------------------------------------- encode / decode


_pauses = 0
_pauses_lock = threading.Lock()
_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one batch. Decoding thousands of events
    makes objects that reference counting frees on its own; the collector, triggered by the
    allocation count, would scan them several times per batch and find nothing (a fifth of the
    publish time, and most of a projection batch's, measured).

    Pauses nest and overlap across threads (the ingest API validates in several at once):
    the collector is switched back on when the last one ends, and only if it was on when the
    first began."""
    global _pauses, _was_enabled
    with _pauses_lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pauses_lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()


def encode(event: InteractionEvent, recorded_at: datetime | None = None) -> bytes:
    """The wire form: compact JSON, absent optional fields left out. ``recorded_at``, when
    given, is the envelope's field of that name (set at ingest, whatever the sender said)."""
    return _wire(event, recorded_at)[0]


def _wire(event: InteractionEvent, recorded_at: datetime | None) -> tuple[bytes, bytes]:
    """The wire form and the content digest: a hash of the canonical JSON without
    ``recorded_at``, which differs between two sendings of the same event."""
    doc = event.model_dump(exclude_none=True)
    sent = doc.pop("recorded_at", None)
    stamped = sent if recorded_at is None else recorded_at
    content = orjson.dumps(doc)
    digest = hashlib.blake2b(content, digest_size=16).digest()
    if stamped is None:
        return content, digest
    doc["recorded_at"] = stamped
    return orjson.dumps(doc), digest


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """A validated event in its wire form, with what the log needs to route and key it."""

    event_id: bytes
    """The 16 bytes of the UUID."""
    type: str
    key: str
    value: bytes
    digest: bytes = b""
    """What the event says, hashed (16 bytes; ``recorded_at`` left out): two events with one
    id and different digests are a conflict, not a duplicate."""

    @classmethod
    def of(cls, event: InteractionEvent, recorded_at: datetime | None = None) -> EncodedEvent:
        value, digest = _wire(event, recorded_at)
        return cls(event.event_id.bytes, event.type, event.key, value, digest)


def content_digest(raw: bytes) -> bytes:
    """The digest (see :attr:`EncodedEvent.digest`) of an event as stored in the log."""
    return _wire(decode(raw), None)[1]


def prepare(raw: bytes | str, recorded_at: datetime | None = None) -> EncodedEvent:
    """Validate and normalise one document (upcast, canonical JSON, ``recorded_at`` set)."""
    return EncodedEvent.of(decode(raw), recorded_at)


def decode(raw: bytes | str | None) -> InteractionEvent:
    """Validate raw JSON bytes into a typed event, upcasting older schema versions.

    Whatever the bytes (none at all, as in a Kafka tombstone; not JSON; NUL characters; nested
    without end; too large), the only error raised is :class:`EventRejected`, naming why."""
    if not isinstance(raw, bytes | str):
        kind = "no value (a tombstone)" if raw is None else f"a {type(raw).__name__}"
        raise EventRejected(
            None,
            None,
            [Violation("(document)", None, "json", f"a record must hold a JSON event, not {kind}")],
        )
    if len(raw) > MAX_EVENT_BYTES:
        raise EventRejected(
            None,
            None,
            [
                Violation(
                    "(document)",
                    f"{len(raw)} bytes",
                    "max_size",
                    f"an event may have at most {MAX_EVENT_BYTES} bytes; "
                    f"a dead letter keeps the first {KEEP_OF_OVERSIZED}",
                )
            ],
        )
    has_nul = b"\\u0000" in raw if isinstance(raw, bytes) else "\\u0000" in raw
    if not has_nul:
        try:
            # Fast path: the current version of a valid event validates in one pass in
            # pydantic-core.
            return EVENT_ADAPTER.validate_json(raw)
        except Exception:  # ValidationError, or any other: the slow path says what is wrong
            pass
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        raise EventRejected(
            None, None, [Violation("(document)", text[:80], "json", f"not valid JSON: {exc}")]
        ) from None
    return decode_document(doc)


def decode_document(doc: Any) -> InteractionEvent:
    """Validate a parsed JSON document (a dict) into a typed event; only
    :class:`EventRejected` is raised, whatever the document."""
    try:
        return _decode_document(doc)
    except EventRejected:
        raise
    except Exception as exc:  # no input may stop a worker: say what broke
        event_id = _str_or_none(doc.get("event_id")) if isinstance(doc, dict) else None
        raise EventRejected(
            event_id[:_MAX_VALUE_CHARS] if event_id else None,
            None,
            [
                Violation(
                    "(document)",
                    None,
                    "readable",
                    f"the event could not be read: {type(exc).__name__}: {_show(str(exc))}",
                )
            ],
        ) from None


def _decode_document(doc: Any) -> InteractionEvent:
    if not isinstance(doc, dict):
        raise EventRejected(
            None,
            None,
            [Violation("(document)", doc, "object", "an event must be a JSON object")],
        )
    event_id = _str_or_none(doc.get("event_id"))
    event_type = doc.get("type")
    structural = _structure_violation(doc)
    if structural is not None:
        raise EventRejected(
            event_id, event_type if isinstance(event_type, str) else None, [structural]
        )
    # Not a string (a list, an object) is unknown too, and unhashable: test that first.
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        custom = custom_types.find(event_type) if isinstance(event_type, str) else None
        if custom is not None:
            return _decode_custom(custom, doc, event_id)
        rule_msg = (
            "type is required"
            if event_type is None
            else f"unknown custom type: no schema streams/schemas/custom/{event_type}.json is "
            "installed"
            if isinstance(event_type, str) and event_type.startswith(custom_types.CUSTOM_PREFIX)
            else "unknown event type; see streams/schemas for the known ones"
        )
        raise EventRejected(event_id, None, [Violation("type", event_type, "known_type", rule_msg)])
    assert isinstance(event_type, str)
    version = doc.get("schema_version")
    current = CURRENT_VERSIONS[event_type]
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= current:
        bad_version = Violation(
            "schema_version",
            version,
            "known_schema_version",
            "schema_version is required"
            if version is None
            else f"{event_type} has schema versions 1 to {current}",
        )
        # Say what else is wrong too, judged against the current version, so the sender can
        # fix everything in one go.
        others = _violations_of(EVENT_TYPES[event_type], {**doc, "schema_version": current})
        raise EventRejected(event_id, event_type, [bad_version, *others])
    if version < current:
        doc = upcast(doc)
    try:
        return EVENT_TYPES[event_type].model_validate(doc)
    except ValidationError as exc:
        raise EventRejected(event_id, event_type, _violations(exc)) from None


def _decode_custom(custom: CustomType, doc: dict[str, Any], event_id: str | None) -> CustomEvent:
    """A custom event: the envelope by the model, the payload by its type's JSON Schema, every
    violation of both named at once."""
    found: list[Violation] = []
    version = doc.get("schema_version")
    if (
        not isinstance(version, int)
        or isinstance(version, bool)
        or not (1 <= version <= custom.schema_version)
    ):
        found.append(
            Violation(
                "schema_version",
                version,
                "known_schema_version",
                "schema_version is required"
                if version is None
                else f"{custom.name} has schema versions 1 to {custom.schema_version}",
            )
        )
    payload = doc.get("payload", {})
    if isinstance(payload, dict):
        found += [Violation(*v) for v in custom.violations(payload)]
    try:
        event = CustomEvent.model_validate(doc, context={CHECKED: True})
    except ValidationError as exc:
        found = [*_violations(exc), *(v for v in found if v.field != "schema_version")]
    if found:
        raise EventRejected(event_id, custom.name, found)
    return event


def _violations_of(model: type[InteractionEvent], doc: dict[str, Any]) -> list[Violation]:
    try:
        model.model_validate(doc)
    except ValidationError as exc:
        return _violations(exc)
    return []


def _structure_violation(doc: Any) -> Violation | None:
    """Nesting too deep, or a NUL character: checked before the model, which would recurse
    into the one and store the other."""
    deep = _too_deep(doc)
    if deep is not None:
        return Violation(
            deep, None, "max_depth", f"objects and arrays may nest at most {MAX_DEPTH} levels deep"
        )
    nul = _nul_path(doc)
    if nul is not None:
        return Violation(
            nul[0],
            nul[1],
            "no_nul",
            "text may not contain the NUL character (PostgreSQL cannot store it)",
        )
    return None


def _too_deep(doc: Any) -> str | None:
    """The path where ``doc`` nests deeper than :data:`MAX_DEPTH`, or None. Iterative: a
    document nested a thousand deep must not exhaust the interpreter's stack."""
    stack: list[tuple[Any, str, int]] = [(doc, "", 1)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, dict):
            items: Iterator[tuple[str, Any]] = ((str(k), v) for k, v in node.items())
        elif isinstance(node, list):
            items = ((str(i), v) for i, v in enumerate(node))
        else:
            continue
        if depth > MAX_DEPTH:
            return path or "(document)"
        for key, value in items:
            if isinstance(value, dict | list):
                stack.append((value, f"{path}.{key}" if path else key, depth + 1))
    return None


def _nul_path(node: Any, path: str = "") -> tuple[str, str] | None:
    """The first string (key or value) holding a NUL character, as (dotted path, value)."""
    if isinstance(node, str):
        return (path or "(document)", node) if "\x00" in node else None
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return here, str(key)
            found = _nul_path(value, here)
            if found is not None:
                return found
    if isinstance(node, list):
        for i, value in enumerate(node):
            found = _nul_path(value, f"{path}.{i}")
            if found is not None:
                return found
    return None


def _violations(exc: ValidationError) -> list[Violation]:
    out = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"]) or "(event)"
        # A missing field's "input" is its parent object: say absent rather than echo it.
        value = None if err["type"] == "missing" else err.get("input")
        out.append(Violation(field, value, err["type"], err["msg"]))
    return out


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def to_document(event: InteractionEvent) -> dict[str, Any]:
    """The event as a JSON-ready dict (what :func:`encode` serializes)."""
    result: dict[str, Any] = orjson.loads(encode(event))
    return result
