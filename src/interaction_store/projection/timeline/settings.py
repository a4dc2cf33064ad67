"""The timeline settings: what ``projections/timeline.toml`` says, checked with errors that name
the file, the key and the value."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interaction_store import custom_types
from interaction_store.events import EVENT_TYPES
from interaction_store.settings import Settings

SETTINGS_FILE = "timeline.toml"
SENT = "sent"
"""The status of a message no delivery report has reached yet."""

_KNOWN_CHANNELS = frozenset(t.split(".", 1)[0] for t in EVENT_TYPES)
_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


class TimelineConfigError(ValueError):
    """``timeline.toml`` says something the timeline cannot do; the message names the file,
    the key and the value."""


@dataclass(frozen=True)
class CustomEntry:
    """How a custom type (``[custom."custom.<name>"]``) shows on the timeline: the channel its
    entries are filtered by and the read category they need (both the channel's, in
    ``permissions``)."""

    channel: str
    category: str


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
    custom: Mapping[str, CustomEntry] = field(default_factory=dict)
    """The custom types shown, by name (their channels are in ``channels``)."""
    entry_types: frozenset[str] = field(init=False)
    sent_types: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        shown = frozenset(
            t
            for t in EVENT_TYPES
            if t.split(".", 1)[0] in self.channels and t not in self.hidden_types
        ) | (self.custom.keys() - self.hidden_types)
        # Reports are not entries of their own, except when their message is missing.
        object.__setattr__(self, "entry_types", shown - self.corrections.keys())
        sent = frozenset(f"{c}.{SENT}" for c in self.channels) & shown
        object.__setattr__(self, "sent_types", sent)

    def channel_of(self, event_type: str) -> str:
        """An entry's channel: the prefix of its type, or what a custom type's table says."""
        custom = self.custom.get(event_type)
        return event_type.split(".", 1)[0] if custom is None else custom.channel

    def categories(self) -> dict[str, str]:
        """The read category of each channel, and of each custom type by its name."""
        return {**self.permissions, **{t: c.category for t, c in self.custom.items()}}

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
        "custom",
    )
    REQUIRED = ("window_days", "channels", "corrections", "preview", "permissions")

    def __init__(self, source: str) -> None:
        self.source = source
        self.custom_types: dict[str, CustomEntry] = {}

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
        raw_permissions = self.table("permissions", doc["permissions"])
        custom, custom_preview = self.custom(doc.get("custom", {}), channels, raw_permissions)
        self.custom_types = custom
        # A custom type's own channel is shown with it (a built-in one only if listed).
        channels += sorted({c.channel for c in custom.values()} - set(_KNOWN_CHANNELS))
        windowed = self.channel_list(
            "windowed_channels", doc.get("windowed_channels", channels), set(channels)
        )
        hidden = self.types_list("hidden_types", doc.get("hidden_types", []), channels)
        permissions = self.permissions(
            {**raw_permissions, **{c.channel: c.category for c in custom.values()}}, channels
        )
        shown = {t for t in EVENT_TYPES if t.split(".", 1)[0] in channels} - set(hidden)
        corrections = self.corrections(doc["corrections"], shown)
        preview = self.preview(doc["preview"], channels)
        for event_type, fields in custom_preview.items():
            if event_type in preview:
                raise self.fail(
                    f'preview."{event_type}"',
                    preview[event_type],
                    f'also given in [custom."{event_type}"]: say it once',
                )
            preview[event_type] = fields
        return TimelineSettings(
            window_days=window,
            channels=tuple(channels),
            permissions=permissions,
            preview=preview,
            corrections=corrections,
            windowed_channels=frozenset(windowed),
            hidden_types=frozenset(hidden),
            source=self.source,
            custom=custom,
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
        custom = self.custom_types.get(event_type)
        if custom is not None:
            if custom.channel not in channels:
                raise self.fail(key, event_type, f"its channel {custom.channel!r} is not shown")
            return
        if event_type not in EVENT_TYPES:
            hint = (
                f' (a custom type needs its [custom."{event_type}"] table)'
                if custom_types.find(event_type) is not None
                else " (see streams/ for the types)"
            )
            raise self.fail(key, event_type, "unknown event type" + hint)
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
            out[event_type] = self.fields(key, event_type, fields)
        return out

    def fields(self, key: str, event_type: str, fields: Any) -> tuple[str, ...]:
        """Payload field names of a type (a custom one's: its schema's top-level properties)."""
        names = self.strings(key, fields)
        custom = custom_types.find(event_type)
        if custom is not None:
            known: Collection[str] = custom.fields
        else:
            model = EVENT_TYPES[event_type].model_fields["payload"].annotation
            known = getattr(model, "model_fields", {})
        for i, name in enumerate(names):
            if name not in known:
                raise self.fail(
                    f"{key}[{i}]",
                    name,
                    f"{event_type} has no such payload field; it has {', '.join(known) or 'none'}",
                )
        return tuple(names)

    CUSTOM_KEYS = ("channel", "category", "preview")

    def custom(
        self, value: Any, channels: Sequence[str], permissions: Mapping[str, Any]
    ) -> tuple[dict[str, CustomEntry], dict[str, tuple[str, ...]]]:
        """The ``[custom."custom.<name>"]`` tables: each names an installed custom type (a
        schema in streams/schemas/custom/), its channel, its read category and its preview."""
        table = self.table("custom", value)
        out: dict[str, CustomEntry] = {}
        previews: dict[str, tuple[str, ...]] = {}
        for event_type, body in table.items():
            key = f'custom."{event_type}"'
            if custom_types.find(event_type) is None:
                raise self.fail(
                    key,
                    event_type,
                    "no such custom type: its schema belongs in streams/schemas/custom/"
                    f"{event_type}.json (and its name starts with 'custom.')",
                )
            body = self.table(key, body)
            for name in body:
                if name not in self.CUSTOM_KEYS:
                    raise self.fail(
                        f"{key}.{name}",
                        body[name],
                        f"unknown key; the keys are {', '.join(self.CUSTOM_KEYS)}",
                    )
            channel = body.get("channel")
            if not isinstance(channel, str) or not _CHANNEL.match(channel):
                raise self.fail(
                    f"{key}.channel",
                    channel,
                    "required: a channel name (lower-case letters, digits, _), new or built-in",
                )
            if channel in _KNOWN_CHANNELS and channel not in channels:
                raise self.fail(f"{key}.channel", channel, "a built-in channel not in `channels`")
            given = permissions.get(channel)
            for other in out.values():
                if other.channel == channel:
                    given = other.category
            category = body.get("category", given)
            if not isinstance(category, str) or not category:
                raise self.fail(
                    f"{key}.category",
                    category,
                    "required: the read permission its entries need (a non-empty string)",
                )
            if given is not None and category != given:
                raise self.fail(
                    f"{key}.category",
                    category,
                    f"channel {channel!r} already needs {given!r}: one category per channel",
                )
            out[event_type] = CustomEntry(channel, category)
            if "preview" in body:
                previews[event_type] = self.fields(f"{key}.preview", event_type, body["preview"])
        return out, previews
