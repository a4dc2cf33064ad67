"""The timeline settings: what ``projections/timeline.toml`` says, checked with errors that name
the file, the key and the value."""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interaction_store.events import EVENT_TYPES
from interaction_store.settings import Settings

SETTINGS_FILE = "timeline.toml"
SENT = "sent"
"""The status of a message no delivery report has reached yet."""

_KNOWN_CHANNELS = frozenset(t.split(".", 1)[0] for t in EVENT_TYPES)


class TimelineConfigError(ValueError):
    """``timeline.toml`` says something the timeline cannot do; the message names the file,
    the key and the value."""


@dataclass(frozen=True)
class TimelineSettings:
    """What ``projections/timeline.toml`` says: which events are entries, what they preview,
    which are delivery reports, the read permission per channel and the default window."""

    window_days: int
    channels: tuple[str, ...]
    permissions: Mapping[str, str]
    preview: Mapping[str, tuple[str, ...]]
    corrections: Mapping[str, str]
    windowed_channels: frozenset[str]
    hidden_types: frozenset[str] = frozenset()
    source: str = "(in memory)"
    entry_types: frozenset[str] = field(init=False)
    sent_types: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        shown = frozenset(
            t
            for t in EVENT_TYPES
            if t.split(".", 1)[0] in self.channels and t not in self.hidden_types
        )
        # Reports are not entries of their own, except when their message is missing.
        object.__setattr__(self, "entry_types", shown - self.corrections.keys())
        sent = frozenset(f"{c}.{SENT}" for c in self.channels) & shown
        object.__setattr__(self, "sent_types", sent)

    @property
    def statuses(self) -> frozenset[str]:
        return frozenset({SENT, *self.corrections.values()})

    @classmethod
    def load(cls, projections_dir: Path | None = None) -> TimelineSettings:
        """Read ``timeline.toml`` from ``projections_dir`` (default: ``ISTORE_PROJECTIONS_DIR``,
        else the folder shipped with the package)."""
        folder = projections_dir if projections_dir is not None else Settings().projections_dir
        path = folder / SETTINGS_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TimelineConfigError(
                f"{path}: cannot read the timeline settings ({exc.strerror or exc}); "
                "set ISTORE_PROJECTIONS_DIR to the folder holding timeline.toml"
            ) from None
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, source: str = "(in memory)") -> TimelineSettings:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise TimelineConfigError(f"{source}: not valid TOML: {exc}") from None
        return _Parser(source).settings(doc)


class _Parser:
    """Checks a parsed ``timeline.toml``, raising errors that name file, key and value."""

    KEYS = (
        "window_days",
        "channels",
        "windowed_channels",
        "hidden_types",
        "corrections",
        "preview",
        "permissions",
    )
    REQUIRED = ("window_days", "channels", "corrections", "preview", "permissions")

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, value: Any, problem: str) -> TimelineConfigError:
        return TimelineConfigError(f"{self.source}: {key} = {value!r}: {problem}")

    def settings(self, doc: dict[str, Any]) -> TimelineSettings:
        for key, value in doc.items():
            if key not in self.KEYS:
                raise self.fail(key, value, f"unknown key; the keys are {', '.join(self.KEYS)}")
        for key in self.REQUIRED:
            if key not in doc:
                raise TimelineConfigError(f"{self.source}: {key} is missing (required)")
        window = doc["window_days"]
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 36500:
            raise self.fail("window_days", window, "must be a whole number of days, 1 to 36500")
        channels = self.channel_list("channels", doc["channels"], _KNOWN_CHANNELS)
        if not channels:
            raise self.fail("channels", channels, "name at least one channel")
        windowed = self.channel_list(
            "windowed_channels", doc.get("windowed_channels", channels), set(channels)
        )
        hidden = self.types_list("hidden_types", doc.get("hidden_types", []), channels)
        permissions = self.permissions(doc["permissions"], channels)
        shown = {t for t in EVENT_TYPES if t.split(".", 1)[0] in channels} - set(hidden)
        corrections = self.corrections(doc["corrections"], shown)
        preview = self.preview(doc["preview"], channels)
        return TimelineSettings(
            window_days=window,
            channels=tuple(channels),
            permissions=permissions,
            preview=preview,
            corrections=corrections,
            windowed_channels=frozenset(windowed),
            hidden_types=frozenset(hidden),
            source=self.source,
        )

    def strings(self, key: str, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, value, "must be a list of non-empty strings")
        if len(set(value)) != len(value):
            raise self.fail(key, value, "lists a value twice")
        return value

    def table(self, key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, value, "must be a table ([" + key + "])")
        return value

    def channel_list(self, key: str, value: Any, allowed: Collection[str]) -> list[str]:
        channels = self.strings(key, value)
        for i, channel in enumerate(channels):
            if channel not in allowed:
                raise self.fail(
                    f"{key}[{i}]", channel, f"not one of the channels: {', '.join(sorted(allowed))}"
                )
        return channels

    def types_list(self, key: str, value: Any, channels: Sequence[str]) -> list[str]:
        types = self.strings(key, value)
        for i, event_type in enumerate(types):
            self.check_type(f"{key}[{i}]", event_type, channels)
        return types

    def check_type(self, key: str, event_type: str, channels: Collection[str]) -> None:
        if event_type not in EVENT_TYPES:
            raise self.fail(key, event_type, "unknown event type (see streams/ for the types)")
        if event_type.split(".", 1)[0] not in channels:
            raise self.fail(key, event_type, "its channel is not in `channels`")

    def permissions(self, value: Any, channels: Sequence[str]) -> dict[str, str]:
        table = self.table("permissions", value)
        for channel, category in table.items():
            key = f"permissions.{channel}"
            if channel not in channels:
                raise self.fail(key, category, f"{channel!r} is not in `channels`")
            if not isinstance(category, str) or not category:
                raise self.fail(key, category, "must be a non-empty string (a read permission)")
        for channel in channels:
            if channel not in table:
                raise TimelineConfigError(
                    f"{self.source}: permissions.{channel} is missing: every channel in "
                    "`channels` needs the read permission its entries require"
                )
        return dict(table)

    def corrections(self, value: Any, shown: Collection[str]) -> dict[str, str]:
        table = self.table("corrections", value)
        for event_type, status in table.items():
            key = f'corrections."{event_type}"'
            self.check_type(key, event_type, {t.split(".", 1)[0] for t in shown})
            sent = f"{event_type.split('.', 1)[0]}.{SENT}"
            if event_type not in shown or sent not in shown:
                raise self.fail(key, status, f"both {event_type} and {sent} must be shown")
            if event_type == sent:
                raise self.fail(key, status, "a message cannot report on itself")
            if not isinstance(status, str) or not status or status == SENT:
                raise self.fail(key, status, f"must be a status name other than {SENT!r}")
        return dict(table)

    def preview(self, value: Any, channels: Sequence[str]) -> dict[str, tuple[str, ...]]:
        table = self.table("preview", value)
        out: dict[str, tuple[str, ...]] = {}
        for event_type, fields in table.items():
            key = f'preview."{event_type}"'
            self.check_type(key, event_type, channels)
            names = self.strings(key, fields)
            model = EVENT_TYPES[event_type].model_fields["payload"].annotation
            known = getattr(model, "model_fields", {})
            for i, name in enumerate(names):
                if name not in known:
                    raise self.fail(
                        f"{key}[{i}]",
                        name,
                        f"{event_type} has no such payload field; it has "
                        f"{', '.join(known) or 'none'}",
                    )
            out[event_type] = tuple(names)
        return out
