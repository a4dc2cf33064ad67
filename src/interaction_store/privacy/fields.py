"""Which fields of each event type are sealed: those its schema marks ``x-personal-data``
(built-in types from their models; custom types from their JSON Schemas, top-level only)."""

from __future__ import annotations

import functools

from interaction_store import custom_types
from interaction_store.events import ENCRYPTED, EVENT_TYPES, PERSONAL
from interaction_store.schemas import personal_fields


@functools.cache
def sealed_paths() -> dict[str, tuple[str, ...]]:
    """Event type -> the dotted paths of the personal fields the store seals (marked
    ``x-encrypted``): every personal field but the anonymous visitor ids."""
    return _marked(ENCRYPTED)


@functools.cache
def personal_paths() -> dict[str, tuple[str, ...]]:
    """Event type -> the dotted paths of its personal fields (``payload.to_address``,
    ``subject.anonymous_id``), from the models' JSON Schema; every type is listed, most with
    ``subject.anonymous_id`` alone. A path inside another personal field is left out: sealing
    the outer one covers it. Cached: the models do not change in a process."""
    return _marked(PERSONAL)


def sealed_paths_of(event_type: str) -> tuple[str, ...]:
    """The sealed paths of one type, built-in or custom (a custom type's personal fields are
    all sealed: ``payload.<name>``); none for a type the process does not know."""
    custom = custom_types.find(event_type)
    if custom is not None:
        return tuple(f"payload.{name}" for name in custom.sealed)
    return sealed_paths().get(event_type, ())


def personal_paths_of(event_type: str) -> tuple[str, ...]:
    """The personal paths of one type, built-in or custom (see :func:`sealed_paths_of`)."""
    custom = custom_types.find(event_type)
    if custom is not None:
        return ("subject.anonymous_id", *(f"payload.{name}" for name in custom.sealed))
    return personal_paths().get(event_type, ())


def _marked(marker: str) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for name, model in EVENT_TYPES.items():
        schema = model.model_json_schema(ref_template="#/$defs/{model}")
        paths = personal_fields(schema, marker=marker)
        out[name] = tuple(
            p for p in paths if not any(p.startswith(f"{outer}.") for outer in paths if outer != p)
        )
    return out
