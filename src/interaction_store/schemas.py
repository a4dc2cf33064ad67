"""The published contract: JSON Schema of the envelope and of every event type, generated
from the pydantic models into ``streams/schemas/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from interaction_store.events import EVENT_ADAPTER, EVENT_TYPES, PERSONAL

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def generate() -> dict[str, dict[str, Any]]:
    """File name -> schema document, for ``envelope.json`` (every type, discriminated on
    ``type``) and ``<type>.json`` per event type."""
    docs: dict[str, dict[str, Any]] = {}
    union = EVENT_ADAPTER.json_schema(ref_template="#/$defs/{model}")
    docs["envelope.json"] = _finish(union, "interaction-store event (any type)")
    for name, model in EVENT_TYPES.items():
        schema = model.model_json_schema(ref_template="#/$defs/{model}")
        docs[f"{name}.json"] = _finish(schema, name)
    return docs


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
            problems.append(f"{extra}: no such event type any more")
    return problems


def personal_fields(schema: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the fields marked as personal data in a schema document."""
    found: list[str] = []
    defs = schema.get("$defs", {})

    def walk(node: dict[str, Any], path: str, seen: frozenset[str]) -> None:
        if node.get(PERSONAL):
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
