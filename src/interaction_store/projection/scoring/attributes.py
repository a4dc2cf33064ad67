"""Attribute paths in scoring rules (``payload.url``, ``correlation.campaign_id``, ...): checked
against the event types a rule matches, and read from events."""

from __future__ import annotations

import enum
import typing
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from interaction_store import custom_types
from interaction_store.events import EVENT_TYPES, Correlation, InteractionEvent, Subject


def _payload_fields(event_type: str) -> dict[str, bool]:
    """A type's payload fields, each with whether it is a mapping (a rule may name its keys):
    a custom type's are its schema's top-level properties."""
    custom = custom_types.find(event_type)
    if custom is not None:
        return {name: name in custom.mappings for name in custom.fields}
    payload = EVENT_TYPES[event_type].model_fields["payload"].annotation
    assert isinstance(payload, type) and issubclass(payload, BaseModel)
    return {
        name: typing.get_origin(info.annotation) is dict
        for name, info in payload.model_fields.items()
    }


def check_path(path: str, types: frozenset[str]) -> None:
    """Raise ValueError unless ``path`` names an attribute some of ``types`` can carry."""
    head, _, rest = path.partition(".")
    if head in ("source", "type") and not rest:
        return
    if head in ("correlation", "subject"):
        fields = Correlation.model_fields if head == "correlation" else Subject.model_fields
        if rest not in fields:
            raise ValueError(f"{path!r}: {head} has no field {rest!r} (it has {', '.join(fields)})")
        return
    if head == "payload" and rest:
        name, _, key = rest.partition(".")
        having = [t for t in sorted(types) if name in _payload_fields(t)]
        if not having:
            known = sorted({f for t in types for f in _payload_fields(t)})
            raise ValueError(
                f"{path!r}: no payload field {name!r} in {', '.join(sorted(types))} "
                f"(their payload fields: {', '.join(known) or 'none'})"
            )
        if key and not any(_payload_fields(t)[name] for t in having):
            raise ValueError(f"{path!r}: payload.{name} is not a mapping, so it has no keys")
        return
    raise ValueError(
        f"{path!r}: name an attribute as payload.<field>, correlation.<field>, "
        "subject.<field>, source or type"
    )


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def getter(path: str) -> Callable[[InteractionEvent], Any]:
    """A function reading one attribute of an event (None when absent)."""
    head, _, rest = path.partition(".")
    if not rest:
        return lambda e: getattr(e, head)
    parts = rest.split(".")

    def get(event: InteractionEvent) -> Any:
        value: Any = getattr(event, head)
        for part in parts:
            value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
            if value is None:
                return None
        return _plain(value)

    return get
