"""The stream catalog: topics, their keys and partitions, and which event types go where.

Read from ``streams/catalog.toml``; nothing else in the code names a topic. Loading it also
installs the custom event types of ``streams/schemas/custom/`` (see :mod:`custom_types`), which
route by the same ``event_types`` patterns (``custom.*``).
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TypeVar

from interaction_store import custom_types
from interaction_store.events import EVENT_TYPES
from interaction_store.settings import Settings

_T = TypeVar("_T")


def partition_of(key: bytes, partitions: int) -> int:
    """The partition of a record key: Kafka's Java default partitioner (murmur2 of the key
    bytes, sign bit cleared, modulo the count), which the store uses when it publishes.
    Publishers in other languages must do the same (librdkafka's ``murmur2_random``), or one
    contact's events spread over partitions and lose their order."""
    # Imported here: only Kafka publishing needs it, and the embedded backend skips the client.
    from kafka.partitioner.default import murmur2

    hashed: int = murmur2(key)  # kafka-python's is unsigned; the mask is Java's toPositive
    return (hashed & 0x7FFFFFFF) % partitions


class CatalogError(ValueError):
    """The catalog file is inconsistent; the message names the topic and the field."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the catalog."""

    logical: str
    name: str
    partitions: int
    key: str
    retention_ms: int
    cleanup_policy: str
    event_types: tuple[str, ...]
    description: str = ""

    def matches(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.event_types)

    def kafka_config(self) -> dict[str, str]:
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy}


@dataclass(frozen=True)
class StreamCatalog:
    """All topics, the dead-letter topic, and the routing of event types to topics."""

    topics: dict[str, TopicSpec]
    dead_letter_logical: str
    intake_logical: str | None = None
    custom_types: tuple[str, ...] = ()
    """The custom types installed when this catalog loaded (``schemas/custom/``)."""

    @property
    def dead_letter(self) -> TopicSpec:
        return self.topics[self.dead_letter_logical]

    @property
    def intake(self) -> TopicSpec | None:
        """The topic publishers that write straight to Kafka write to (unvalidated input that
        the intake processor forwards), if the catalog has one."""
        return None if self.intake_logical is None else self.topics[self.intake_logical]

    @property
    def event_topics(self) -> list[TopicSpec]:
        """The topics that carry the store's events: all but the dead-letter and intake
        topics (intake records are nobody's events until the store has forwarded them)."""
        skip = (self.dead_letter_logical, self.intake_logical)
        return [t for t in self.topics.values() if t.logical not in skip]

    @cached_property
    def _routes(self) -> dict[str, TopicSpec]:
        return {name: self._route(name) for name in EVENT_TYPES}

    def _custom_route(self, event_type: str) -> TopicSpec:
        # Custom types are installed per process (the catalog that loaded last): routed
        # when asked, so one installed after this catalog loaded still finds its topic.
        if custom_types.find(event_type) is None:
            raise CatalogError(f"unknown event type {event_type!r}")
        return self._route(event_type)

    def _route(self, event_type: str) -> TopicSpec:
        hits = [t for t in self.event_topics if t.matches(event_type)]
        if len(hits) != 1:
            where = ", ".join(t.logical for t in hits) or "no topic"
            raise CatalogError(
                f"event type {event_type!r} must route to exactly one topic, "
                f"but matches {where}: fix event_types in the catalog"
            )
        return hits[0]

    def topic_for(self, event_type: str) -> TopicSpec:
        """The topic an event type is published to."""
        try:
            return self._routes[event_type]
        except KeyError:
            return self._custom_route(event_type)

    def by_name(self, name: str) -> TopicSpec:
        """A topic by its logical name (``interactions``) or its full name."""
        for t in self.topics.values():
            if name in (t.logical, t.name):
                return t
        known = ", ".join(sorted(self.topics))
        raise CatalogError(f"unknown topic {name!r}; the catalog has {known}")

    @classmethod
    def load(cls, settings: Settings | None = None, path: Path | None = None) -> StreamCatalog:
        settings = settings or Settings()
        path = path or settings.streams_dir / "catalog.toml"
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CatalogError(
                f"stream catalog not found at {path}: set ISTORE_STREAMS_DIR to the folder "
                "holding catalog.toml"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise CatalogError(f"{path}: not valid TOML: {exc}") from None
        topics: dict[str, TopicSpec] = {}
        for logical, raw in (data.get("topics") or {}).items():
            topics[logical] = _topic(logical, raw, settings.topic_name_prefix, path)
        for logical, count in settings.partitions.items():
            if logical not in topics:
                raise CatalogError(f"ISTORE_PARTITIONS names unknown topic {logical!r}")
            if count < 1:
                raise CatalogError(f"ISTORE_PARTITIONS[{logical!r}]={count}: must be >= 1")
            topics[logical] = replace(topics[logical], partitions=count)
        dead = data.get("dead_letter_topic")
        if dead not in topics:
            raise CatalogError(f"{path}: dead_letter_topic={dead!r} is not one of the topics")
        intake = data.get("intake_topic")
        if intake is not None:
            if intake not in topics or intake == dead:
                raise CatalogError(
                    f"{path}: intake_topic={intake!r} is not one of the topics (or is the "
                    "dead-letter topic)"
                )
            topics[intake] = _intake(topics[intake], settings, path)
        names = [t.name for t in topics.values()]
        if len(set(names)) != len(names):
            raise CatalogError(f"{path}: topic names must be unique, got {names}")
        catalog = cls(topics=topics, dead_letter_logical=dead, intake_logical=intake)
        _ = catalog._routes  # every event type must route somewhere: fail at load, not later
        try:
            installed = custom_types.install_from(settings.streams_dir)
        except custom_types.CustomTypeError as exc:
            raise CatalogError(str(exc)) from None
        for name in installed:
            catalog._route(name)
        return replace(catalog, custom_types=tuple(installed))


def _intake(spec: TopicSpec, settings: Settings, path: Path) -> TopicSpec:
    """The intake topic with the retention of the settings: it holds personal data in the
    clear (publishers cannot seal it), so it must not keep it for long, nor carry events
    that route to it."""
    if settings.intake_retention_ms is not None:
        spec = replace(spec, retention_ms=settings.intake_retention_ms)
    if spec.retention_ms <= 0:
        raise CatalogError(
            f"{path}: topics.{spec.logical}.retention_ms={spec.retention_ms}: the intake topic "
            "holds plaintext personal data and needs a finite retention (e.g. 604800000, "
            "7 days; or set ISTORE_INTAKE_RETENTION_MS)"
        )
    if spec.event_types:
        raise CatalogError(
            f"{path}: topics.{spec.logical}.event_types={list(spec.event_types)}: no event "
            "type routes to the intake topic; leave it empty"
        )
    return spec


def _topic(logical: str, raw: dict[str, object], prefix: str, path: Path) -> TopicSpec:
    def need(field: str, kind: type[_T]) -> _T:
        value = raw.get(field)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CatalogError(
                f"{path}: topics.{logical}.{field}={value!r}: must be a {kind.__name__}"
            )
        return value

    partitions = need("partitions", int)
    if partitions < 1:
        raise CatalogError(f"{path}: topics.{logical}.partitions={partitions}: must be >= 1")
    types = need("event_types", list)
    return TopicSpec(
        logical=logical,
        name=prefix + need("name", str),
        partitions=partitions,
        key=str(raw.get("key", "")),
        retention_ms=need("retention_ms", int),
        cleanup_policy=need("cleanup_policy", str),
        event_types=tuple(str(t) for t in types),
        description=str(raw.get("description", "")),
    )
