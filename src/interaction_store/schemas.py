"""The published contract: JSON Schema of the envelope and of every event type, generated
from the pydantic models into ``streams/schemas/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from interaction_store.custom_types import CUSTOM_FOLDER, CustomTypeError, check
from interaction_store.events import (
    CURRENT_VERSIONS,
    EVENT_ADAPTER,
    EVENT_TYPES,
    PAST_VERSIONS,
    PERSONAL,
    InteractionEvent,
)

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

NO_NUL = r"^[^\u0000]*$"
"""The store refuses U+0000 in any text (PostgreSQL cannot store it): said by a pattern."""
_BLANK = r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = rf"^[^\u0000]*[^\u0000{_BLANK}][^\u0000]*$"
"""Text the models strip (str_strip_whitespace) must keep one character after stripping:
one that is not Unicode White_Space (what pydantic-core strips), nor NUL."""

ENVELOPE_DOC = (
    "Any event the store accepts: every type, in its current schema_version (<type>.json) or "
    "an older one still accepted and upcast on read (<type>.v<N>.json). x-versions maps each "
    "type's versions to those files."
)


class _ContractSchema(GenerateJsonSchema):
    """Pydantic's JSON Schema plus what the models check that it leaves out: no NUL in text,
    and non-blank text after stripping where a minimum length is set."""

    def str_schema(self, schema: core_schema.StringSchema) -> JsonSchemaValue:
        out = super().str_schema(schema)
        if "pattern" not in out:  # fields with a pattern of their own already exclude both
            # Only a minimum of 1 is used; a longer one would need a longer pattern.
            out["pattern"] = NOT_BLANK if out.get("minLength") == 1 else NO_NUL
        return out

    def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
        out = super().dict_schema(schema)
        out.setdefault("propertyNames", {"pattern": NO_NUL})
        return out


def _schema_of(model: type[InteractionEvent]) -> dict[str, Any]:
    return model.model_json_schema(ref_template="#/$defs/{model}", schema_generator=_ContractSchema)


def version_file(event_type: str, version: int) -> str:
    """The schema file of one version of a type: the current one is ``<type>.json``."""
    current = CURRENT_VERSIONS[event_type]
    return f"{event_type}.json" if version == current else f"{event_type}.v{version}.json"


def generate() -> dict[str, dict[str, Any]]:
    """File name -> schema document, for ``envelope.json`` (every type and accepted version,
    discriminated on ``type``), ``<type>.json`` per event type (its current version) and
    ``<type>.v<N>.json`` per older version still accepted."""
    docs: dict[str, dict[str, Any]] = {"envelope.json": _envelope()}
    for name, model in EVENT_TYPES.items():
        docs[version_file(name, CURRENT_VERSIONS[name])] = _finish(_schema_of(model), name)
    for (name, version), model in PAST_VERSIONS.items():
        docs[version_file(name, version)] = _finish(_schema_of(model), f"{name}.v{version}")
    return docs


def _envelope() -> dict[str, Any]:
    union = EVENT_ADAPTER.json_schema(
        ref_template="#/$defs/{model}", schema_generator=_ContractSchema
    )
    defs = union["$defs"]
    for (name, _), model in PAST_VERSIONS.items():
        past = _schema_of(model)
        for key, value in past.pop("$defs", {}).items():
            if defs.setdefault(key, value) != value:
                raise ValueError(f"two different schemas named {key} ({name} versions)")
        defs[model.__name__] = past
        # The type now has several versions: it maps to "one of them", by schema_version.
        current_ref = union["discriminator"]["mapping"][name]
        group = f"{EVENT_TYPES[name].__name__}Versions"
        if group not in defs:
            defs[group] = {"oneOf": [{"$ref": current_ref}]}
            union["oneOf"] = [
                {"$ref": f"#/$defs/{group}"} if ref == {"$ref": current_ref} else ref
                for ref in union["oneOf"]
            ]
            union["discriminator"]["mapping"][name] = f"#/$defs/{group}"
        defs[group]["oneOf"].append({"$ref": f"#/$defs/{model.__name__}"})
    versions: dict[str, dict[str, str]] = {
        name: {str(CURRENT_VERSIONS[name]): version_file(name, CURRENT_VERSIONS[name])}
        for name in EVENT_TYPES
    }
    for name, version in PAST_VERSIONS:
        versions[name][str(version)] = version_file(name, version)
    union["x-versions"] = {name: dict(sorted(v.items())) for name, v in versions.items()}
    union["description"] = ENVELOPE_DOC
    return _finish(union, "interaction-store event (any type)")


def _finish(schema: dict[str, Any], title: str) -> dict[str, Any]:
    out = {"$schema": SCHEMA_DIALECT, "$id": f"interaction-store/{title}", **schema}
    out.setdefault("title", title)
    return out


def render(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write(folder: Path) -> list[Path]:
    """Write every schema; remove stale ``*.json`` files of types that no longer exist."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = generate()
    written = []
    for name, doc in docs.items():
        path = folder / name
        path.write_bytes(render(doc))
        written.append(path)
    for stale in folder.glob("*.json"):
        if stale.name not in docs:
            stale.unlink()
    return written


def drift(folder: Path) -> list[str]:
    """Files that differ from the models (missing, changed or stale); empty when in sync."""
    docs = generate()
    problems = []
    for name, doc in docs.items():
        path = folder / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_bytes() != render(doc):
            problems.append(f"{path}: differs from the models")
    for extra in folder.glob("*.json"):
        if extra.name not in docs:
            problems.append(f"{extra}: no such event type or version any more")
    return problems


def custom_problems(folder: Path) -> list[str]:
    """What is wrong with the custom schemas in ``folder/custom/`` (each names its file and
    the problem); empty when every one is a valid custom type or there are none."""
    problems = []
    for path in sorted((folder / CUSTOM_FOLDER).glob("*.json")):
        try:
            check(path)
        except CustomTypeError as exc:
            problems.append(str(exc))
    return problems


def personal_fields(schema: dict[str, Any], prefix: str = "", marker: str = PERSONAL) -> list[str]:
    """Dotted paths of the fields marked as personal data in a schema document (``marker``:
    or with another keyword, such as ``x-encrypted``)."""
    found: list[str] = []
    defs = schema.get("$defs", {})

    def walk(node: dict[str, Any], path: str, seen: frozenset[str]) -> None:
        if node.get(marker):
            found.append(path)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.rsplit("/", 1)[1]
            if name not in seen:
                walk(defs[name], path, seen | {name})
        for sub in node.get("anyOf", []) + node.get("allOf", []):
            walk(sub, path, seen)
        for key, prop in (node.get("properties") or {}).items():
            walk(prop, f"{path}.{key}" if path else key, seen)

    walk(schema, prefix, frozenset())
    return sorted(set(found))
