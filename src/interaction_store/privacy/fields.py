"""Which fields of each event type are sealed: those its schema marks ``x-personal-data``."""

from __future__ import annotations

import functools

from interaction_store.events import EVENT_TYPES
from interaction_store.schemas import personal_fields


@functools.cache
def personal_paths() -> dict[str, tuple[str, ...]]:
    """Event type -> the dotted paths of its personal fields (``payload.to_address``,
    ``subject.anonymous_id``), from the models' JSON Schema; every type is listed, most with
    ``subject.anonymous_id`` alone. A path inside another personal field is left out: sealing
    the outer one covers it. Cached: the models do not change in a process."""
    out: dict[str, tuple[str, ...]] = {}
    for name, model in EVENT_TYPES.items():
        paths = personal_fields(model.model_json_schema(ref_template="#/$defs/{model}"))
        out[name] = tuple(
            p for p in paths if not any(p.startswith(f"{outer}.") for outer in paths if outer != p)
        )
    return out
