"""Extension event types: ``custom.*`` types an upstream system registers by dropping a JSON
Schema of the payload into ``streams/schemas/custom/<type>.json``; the envelope is the store's.

The stream catalog installs the folder's types when it loads (:func:`install_from`), so every
process that opens the log knows them; a schema that is not valid JSON Schema, names a built-in
type or breaks the rules below fails that load, naming the file and the problem. Custom events
are :class:`CustomEvent`: the store's envelope with a :class:`CustomPayload` (the payload as
sent) checked against the schema. Built-in types never come here: their fast path is unchanged.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import orjson
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    ValidationInfo,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from interaction_store.events import (
    ENCRYPTED,
    EVENT_TYPES,
    PERSONAL,
    SEALED_PREFIX,
    InteractionEvent,
)
from interaction_store.settings import Settings

CUSTOM_PREFIX = "custom."
"""Every custom type's name starts so: no built-in type does, nor ever will."""

CUSTOM_FOLDER = "custom"
"""The folder of custom schemas, under ``streams/schemas/``."""

NAME = re.compile(r"^custom(\.[a-z0-9][a-z0-9_]{0,62}){1,4}$")
"""A custom type's name (the schema file's name without ``.json``)."""

PROPERTY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
"""A top-level payload property's name: read as an attribute by previews and scoring rules."""

SCHEMA_VERSION = "x-schema-version"
"""The schema's current version (default 1): events may say 1 up to it, all checked against
this one schema (so a new version may only add optional fields)."""

ERASED_TEXT = "(erased)"
"""What a required personal field of an event about an erased subject holds (the privacy
package's ``DROPPED_TEXT``, which this layer cannot import)."""

CHECKED = "custom_payload_checked"
"""Validation context key: the codec has checked the payload (with every violation named)."""


class CustomTypeError(ValueError):
    """A custom schema the store cannot take; the message names the file and the problem."""


@dataclass(frozen=True, eq=False)
class CustomType:
    """One registered custom type: its payload schema and what the store reads from it."""

    name: str
    schema: Mapping[str, Any]
    source: str
    """The schema file."""
    schema_version: int
    fields: tuple[str, ...]
    """The top-level payload properties the schema declares."""
    mappings: frozenset[str]
    """Those of them that are objects (a scoring rule may name their keys)."""
    sealed: tuple[str, ...]
    """Top-level properties marked ``x-personal-data``: sealed at ingest, like built-ins'."""
    validator: Validator = field(repr=False)

    @property
    def description(self) -> str:
        return str(self.schema.get("description") or self.schema.get("title") or self.name)

    def violations(self, payload: Any) -> list[tuple[str, Any, str, str]]:
        """(field, value, rule, message) for each way ``payload`` breaks the schema; empty
        when it holds. A sealed field's stored text (``enc:v1:...``, or ``(erased)``) passes:
        the clear value was checked at ingest. Never raises."""
        try:
            errors = sorted(self.validator.iter_errors(payload), key=_where)
            return [v for e in errors for v in self._describe(e)]
        except Exception as exc:  # a regex the engine chokes on, say: still a violation
            return [("payload", None, "schema", f"could not be checked: {type(exc).__name__}")]

    def _describe(self, error: Any) -> Iterator[tuple[str, Any, str, str]]:
        path = [str(p) for p in error.absolute_path]
        instance = error.instance
        if (
            len(path) >= 1
            and path[0] in self.sealed
            and isinstance(instance, str)
            and (instance.startswith(SEALED_PREFIX) or instance == ERASED_TEXT)
        ):
            return
        where = ".".join(["payload", *path])
        if error.validator == "required" and isinstance(instance, dict):
            # One error per missing property: name it in the field, as pydantic does.
            for name in error.validator_value:
                if name not in instance and repr(name) in error.message:
                    yield f"{where}.{name}", None, "schema.required", error.message
                    return
        # An object-level rule (additionalProperties, minProperties) would echo the whole
        # payload: the field and the message say enough.
        value = None if isinstance(instance, dict | list) else instance
        yield where, value, f"schema.{error.validator}", error.message


def _where(error: Any) -> list[str]:
    return [str(p) for p in error.absolute_path]


# --------------------------------------------------------------------------- the models


class CustomPayload(BaseModel):
    """A custom event's payload as sent: any JSON object, checked against its type's schema.
    Its properties read as attributes (``event.payload.title``) and write back unchanged
    (``null`` kept: the schema, not the store, decides what a null means)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @model_serializer(mode="plain")
    def _as_sent(self, info: SerializationInfo) -> dict[str, Any]:
        data = dict(self.__pydantic_extra__ or {})
        if info.include is not None:
            data = {k: v for k, v in data.items() if k in info.include}
        if info.exclude is not None:
            data = {k: v for k, v in data.items() if k not in info.exclude}
        return data


class CustomEvent(InteractionEvent):
    """An event of a registered custom type: the store's envelope, a payload per the type's
    JSON Schema. Made by the codec (which names every violation); made directly, the first
    violation is raised."""

    type: Annotated[str, Field(pattern=NAME.pattern, description="A registered custom type")]
    payload: CustomPayload = Field(default_factory=CustomPayload)

    @model_validator(mode="after")
    def _registered(self, info: ValidationInfo) -> CustomEvent:
        if isinstance(info.context, dict) and info.context.get(CHECKED):
            return self
        custom = find(self.type)
        if custom is None:
            raise PydanticCustomError(
                "known_type", "unknown custom type {type}", {"type": self.type}
            )
        if not 1 <= self.schema_version <= custom.schema_version:
            raise PydanticCustomError(
                "known_schema_version",
                "{type} has schema versions 1 to {current}",
                {"type": self.type, "current": custom.schema_version},
            )
        found = custom.violations(self.payload.model_dump())
        if found:
            where, _, rule, message = found[0]
            raise PydanticCustomError(
                "custom_payload",
                "{where}: {message} [rule: {rule}]",
                {"where": where, "message": message, "rule": rule},
            )
        return self


# --------------------------------------------------------------------------- loading


def load(folder: Path) -> dict[str, CustomType]:
    """The custom types of a folder (none if it does not exist), each schema checked."""
    if not folder.is_dir():
        return {}
    return {t.name: t for t in (check(path) for path in sorted(folder.glob("*.json")))}


def check(path: Path) -> CustomType:
    """One schema file as a custom type; :class:`CustomTypeError` names the file and what is
    wrong with it."""

    def fail(problem: str) -> CustomTypeError:
        return CustomTypeError(f"{path}: {problem}")

    name = path.name.removesuffix(".json")
    if name in EVENT_TYPES:
        raise fail(
            f"clashes with the built-in type {name!r}: a custom type's name starts with "
            f"{CUSTOM_PREFIX!r} (rename the file {CUSTOM_PREFIX}<name>.json)"
        )
    if not NAME.match(name):
        raise fail(
            f"the type name {name!r} (the file's name) must start with {CUSTOM_PREFIX!r}, "
            "then lower-case letters, digits and _ (e.g. custom.insights_activity.json)"
        )
    try:
        schema = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise fail(f"not valid JSON: {exc}") from None
    except OSError as exc:
        raise fail(f"cannot read it ({exc.strerror or exc})") from None
    if not isinstance(schema, dict):
        raise fail(f"a JSON Schema must be an object, not {type(schema).__name__}")
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        at = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        raise fail(f"not a valid JSON Schema: {exc.message} (at {at})") from None
    if schema.get("type") != "object":
        raise fail('the payload schema must say "type": "object" (a payload is an object)')
    remote = next(_remote_refs(schema, ""), None)
    if remote is not None:
        raise fail(
            f"$ref {remote[1]!r} at {remote[0]}: only local references (#/...) are "
            "supported; the store fetches no schema"
        )
    version = schema.get(SCHEMA_VERSION, 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise fail(f"{SCHEMA_VERSION} = {version!r}: must be a whole number >= 1")
    properties = schema.get("properties") or {}
    sealed: list[str] = []
    mappings: set[str] = set()
    for prop, sub in properties.items():
        if not PROPERTY.match(prop) or hasattr(BaseModel, prop):
            raise fail(
                f"payload property {prop!r}: use a name of letters, digits and _ starting "
                "with a letter, and not one of pydantic's (model_dump, copy, json, ...)"
            )
        if not isinstance(sub, dict):
            continue
        if sub.get("type") == "object":
            mappings.add(prop)
        if sub.get(ENCRYPTED) is not None and not sub.get(PERSONAL):
            raise fail(f"payload.{prop}: {ENCRYPTED} without {PERSONAL}: mark it personal")
        if sub.get(PERSONAL):
            if sub.get("type") != "string":
                raise fail(
                    f'payload.{prop}: a personal field is sealed as text: give it "type": '
                    '"string" (encode other values as text)'
                )
            if sub.get(ENCRYPTED) is False:
                raise fail(f"payload.{prop}: a custom type's personal fields are always sealed")
            sealed.append(prop)
        deeper = next(_marked(sub, f"properties/{prop}", top=True), None)
        if deeper is not None:
            raise fail(
                f"{PERSONAL} at {deeper}: only top-level payload properties can be personal "
                "(sealed); move it up, or make the containing property personal text"
            )
    top_marked = next(
        (
            where
            for key, sub in schema.items()
            if key != "properties"
            for where in _marked(sub, key, top=False)
        ),
        None,
    )
    if top_marked is not None:
        raise fail(f"{PERSONAL} at {top_marked}: only top-level payload properties can be personal")
    validator: Validator = cls(schema, format_checker=FormatChecker())
    return CustomType(
        name=name,
        schema=schema,
        source=str(path),
        schema_version=version,
        fields=tuple(properties),
        mappings=frozenset(mappings),
        sealed=tuple(sealed),
        validator=validator,
    )


def _marked(node: Any, where: str, *, top: bool) -> Iterator[str]:
    """JSON pointers below ``node`` marked personal (``top``: the node's own mark is fine)."""
    if isinstance(node, dict):
        if not top and node.get(PERSONAL):
            yield where
        for key, sub in node.items():
            yield from _marked(sub, f"{where}/{key}", top=False)
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from _marked(sub, f"{where}/{i}", top=False)


def _remote_refs(node: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, sub in node.items():
            if key in ("$ref", "$dynamicRef") and isinstance(sub, str) and not sub.startswith("#"):
                yield where or "(top)", sub
            else:
                yield from _remote_refs(sub, f"{where}/{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from _remote_refs(sub, f"{where}/{i}")


# --------------------------------------------------------------------------- the registry

_lock = threading.Lock()
_installed: dict[str, CustomType] | None = None
_installed_from: Path | None = None


def install(types: Mapping[str, CustomType], source: Path | None = None) -> None:
    """Make ``types`` the custom types of this process (replacing any installed before)."""
    global _installed, _installed_from
    with _lock:
        _installed, _installed_from = dict(types), source


def install_from(streams_dir: Path) -> dict[str, CustomType]:
    """Load and install the custom types of a streams folder (``schemas/custom/``)."""
    types = load(streams_dir / "schemas" / CUSTOM_FOLDER)
    install(types, streams_dir)
    return types


def ensure(streams_dir: Path) -> Mapping[str, CustomType]:
    """The custom types of a streams folder, installed unless they are already."""
    if _installed is None or _installed_from != streams_dir:
        return install_from(streams_dir)
    return _installed


def installed() -> Mapping[str, CustomType]:
    """The custom types of this process: those the stream catalog installed when it loaded,
    else those of the settings' streams folder (``ISTORE_STREAMS_DIR``)."""
    if _installed is None:
        install_from(Settings().streams_dir)
    assert _installed is not None
    return _installed


def find(name: str) -> CustomType | None:
    """The installed custom type of that name, if any."""
    return installed().get(name) if name.startswith(CUSTOM_PREFIX) else None
