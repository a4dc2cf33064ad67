"""The published JSON Schemas and the models agree both ways: a document generated from a
schema is accepted by the store, the store's form of it validates against the current
version's schema, and a document changed in one place is accepted exactly when it is valid.

The schemas say three rules with keywords of their own, which JSON Schema validators skip and
other languages must check themselves (README, "The event contract"): ``x-utc-range`` (an
instant's bounds in UTC), ``x-not-before`` (one field's instant not before another's) and real
calendar days (``format: date-time``, asserted here). The validator below checks all three."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from interaction_store.codec import EventRejected, decode, to_document
from interaction_store.events import AWARE_PATTERN, CURRENT_VERSIONS
from interaction_store.schemas import version_file
from interaction_store.settings import Settings

SCHEMAS = Settings().streams_dir / "schemas"
# A sample of the files (generating from one takes about a minute on a loaded 2-core box):
# the older version, and those whose models check what plain JSON Schema cannot.
FILES = [
    "email.bounced.v1.json",
    "consent.preferences_changed.json",
    "activity.appointment.json",
    "chat.message.json",
]


def _instant(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text.upper())
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _utc_range(_v: Any, bounds: dict[str, str], instance: Any, _s: Any) -> Iterator[Any]:
    when = _instant(instance)
    low, high = _instant(bounds["minimum"]), _instant(bounds["exclusiveMaximum"])
    assert low is not None and high is not None
    # The year first, as the store does: comparing near year 1 or 9999 overflows.
    if when is not None and not (low.year - 1 <= when.year <= high.year and low <= when < high):
        yield jsonschema.ValidationError(f"{instance!r} is outside {bounds}")


def _not_before(_v: Any, pairs: dict[str, str], instance: Any, _s: Any) -> Iterator[Any]:
    for later, earlier in pairs.items() if isinstance(instance, dict) else ():
        a, b = _instant(instance.get(later)), _instant(instance.get(earlier))
        if a is not None and b is not None and a < b:
            yield jsonschema.ValidationError(f"{later} is before {earlier}")


FORMATS = jsonschema.FormatChecker()
FORMATS.checks("date-time")(lambda text: not isinstance(text, str) or _instant(text) is not None)
Contract = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"x-utc-range": _utc_range, "x-not-before": _not_before}
)


@cache
def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return loaded


@cache
def generated(name: str) -> st.SearchStrategy[dict[str, Any]]:
    # Without $id: hypothesis-jsonschema would resolve "#/$defs/..." against it and fail.
    local = {k: v for k, v in schema(name).items() if k != "$id"}
    found: st.SearchStrategy[dict[str, Any]] = from_schema(local, custom_formats=INSTANTS)
    return found


@cache
def contract(name: str) -> Any:
    return Contract(schema(name), format_checker=FORMATS)


def accepted(document: Any) -> bool:
    try:
        decode(json.dumps(document, ensure_ascii=False).encode())
    except EventRejected:
        return False
    return True


def _minutes(count: int) -> timedelta:
    return timedelta(minutes=count)


# Instants in range, and from the schema's own pattern (its edges): hypothesis-jsonschema's
# date-time strategy draws years 0-9999, nearly all outside the pattern. It knows no "uuid".
INSTANTS = {
    "date-time": st.one_of(
        st.datetimes(
            min_value=datetime(1900, 1, 2),
            max_value=datetime(2199, 12, 30),
            timezones=st.builds(timezone, st.integers(-23 * 60 - 59, 23 * 60 + 59).map(_minutes)),
        ).map(datetime.isoformat),
        st.from_regex(AWARE_PATTERN, fullmatch=True),
    ),
    "uuid": st.uuids().map(str),
}
FAST = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


ODD_VALUES: list[Any] = [
    None,
    "",
    " ",
    "\u3000",
    "\x1c",
    "a\x00b",
    0,
    -1,
    1.5,
    True,
    "x",
    {},
    [],
    str(uuid.UUID(int=7)),
    "1900-01-01T00:00:00Z",
    "1899-12-31T23:00:00-01:00",
    "2199-12-31T23:59:59+00:00",
    "2200-01-01T00:00:00Z",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00",
    "2026-02-30T10:00:00Z",
    "2026-03-01T09:00:00",
]


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if path:
        yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*path, i))


def _changed(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(document))
    parent = copy
    for step in path[:-1]:
        parent = parent[step]
    if value is _DROP:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return copy


_DROP = object()


@pytest.mark.parametrize("name", FILES)
def test_schema_documents_are_accepted_and_changed_ones_exactly_when_valid(name: str) -> None:
    @FAST
    @given(generated(name), st.data())
    def check(document: dict[str, Any], data: st.DataObject) -> None:
        assume(contract(name).is_valid(document))  # the three rules of our own keywords
        event = decode(json.dumps(document, ensure_ascii=False).encode())
        assert event.type == document["type"]
        # Back again: the store's (upcast, canonical) form is valid against the current schema.
        current = version_file(event.type, CURRENT_VERSIONS[event.type])
        contract(current).validate(to_document(event))
        contract("envelope.json").validate(document)
        # One place changed: accepted exactly when the envelope says it is valid.
        path = data.draw(st.sampled_from(list(_paths(document))))
        value = data.draw(st.sampled_from([_DROP, *ODD_VALUES]))
        changed = _changed(document, path, value)
        valid = contract("envelope.json").is_valid(changed)
        assert accepted(changed) == valid, (path, value, changed)

    check()
