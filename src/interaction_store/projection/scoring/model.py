"""The scoring-model file format (rules, conditions, decay, grades, the sales-ready threshold),
validated with errors that name the field; and a model's rules compiled for matching events."""

from __future__ import annotations

import fnmatch
import functools
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from interaction_store import custom_types
from interaction_store.events import EVENT_TYPES, InteractionEvent
from interaction_store.projection.scoring.attributes import check_path, getter

UNSCORED_TYPES = frozenset({"lead.sales_ready"})
"""Never scored: the projection emits these itself, and scoring them would feed back."""

SCORABLE_TYPES = tuple(sorted(set(EVENT_TYPES) - UNSCORED_TYPES))
"""The built-in types a rule may match; :func:`scorable_types` adds the custom ones."""


def scorable_types() -> tuple[str, ...]:
    """The types a rule may match: the built-in ones and the installed custom types."""
    return SCORABLE_TYPES + tuple(sorted(custom_types.installed()))


LEAD_ATTRIBUTES = ("topic", "source")
"""What a rule's ``lead`` conditions may test: the scored lead's own attributes (from its
``lead.created`` and ``lead.updated`` events)."""

DAY_US = 86_400_000_000
"""A day in microseconds: instants are integers so windows compare exactly."""

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
Scalar = str | bool | int | float


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Condition(_Strict):
    """A test on one attribute; every operator given must hold. A bare value means
    ``equals``, a list means ``in``."""

    equals: Scalar | None = None
    in_: tuple[Scalar, ...] | None = Field(default=None, alias="in")
    contains: str | None = None
    regex: str | None = Field(default=None, description="re.search; (?i) ignores case")
    at_least: float | None = None
    at_most: float | None = None
    exists: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"in": value}
        if isinstance(value, str | int | float | bool):
            return {"equals": value}
        return value

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _something(self) -> Condition:
        if all(v is None for v in self.model_dump().values()):
            raise ValueError(
                "a condition needs an operator: equals, in, contains, regex, at_least, "
                "at_most or exists"
            )
        return self

    def holds(self, value: Any) -> bool:
        if self.exists is not None and (value is not None) != self.exists:
            return False
        if value is None:
            return self.exists is False
        if self.equals is not None and value != self.equals:
            return False
        if self.in_ is not None and value not in self.in_:
            return False
        if self.contains is not None and not (isinstance(value, str) and self.contains in value):
            return False
        if self.regex is not None and not (
            isinstance(value, str) and _regex(self.regex).search(value)
        ):
            return False
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if self.at_least is not None and not (number and value >= self.at_least):
            return False
        return self.at_most is None or (number and value <= self.at_most)


class When(_Strict):
    """Which events a rule matches: event types (globs such as ``email.*``) and conditions
    on their attributes (``payload.url``, ``correlation.campaign_id``, ...); and, with
    ``lead``, for which leads they count: conditions on the scored lead's own attributes
    (``topic``, ``source``), so that two leads of one contact can score differently."""

    type: tuple[str, ...] = Field(min_length=1)
    where: dict[str, Condition] = Field(default_factory=dict)
    lead: dict[str, Condition] = Field(default_factory=dict)

    @field_validator("lead")
    @classmethod
    def _lead_attributes(cls, lead: dict[str, Condition]) -> dict[str, Condition]:
        for name in lead:
            if name not in LEAD_ATTRIBUTES:
                raise ValueError(
                    f"{name!r}: a lead has no attribute {name!r} to test "
                    f"(it has {', '.join(LEAD_ATTRIBUTES)})"
                )
        return lead

    @field_validator("type", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("type")
    @classmethod
    def _known(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(t, pattern) for t in scorable_types()):
                raise ValueError(
                    f"{pattern!r} matches no event type that can be scored "
                    "(see streams/schemas/ for the types, e.g. email.opened or web.*)"
                )
        return patterns

    @field_validator("where")
    @classmethod
    def _paths(cls, where: dict[str, Condition], info: ValidationInfo) -> dict[str, Condition]:
        if "type" in info.data:  # else the types were wrong, and said so
            for path in where:
                check_path(path, expand(info.data["type"]))
        return where

    @property
    def types(self) -> frozenset[str]:
        """The event types the globs expand to."""
        return expand(self.type)


def expand(patterns: Sequence[str]) -> frozenset[str]:
    """The event types some glob matches."""
    return frozenset(
        t for t in scorable_types() if any(fnmatch.fnmatchcase(t, p) for p in patterns)
    )


class Rule(_Strict):
    """Points for each event the rule matches, optionally capped and windowed."""

    id: Name
    description: str = ""
    when: When
    points: float = Field(allow_inf_nan=False)
    max_count: int | None = Field(
        default=None, ge=1, description="Only the most recent max_count matches count"
    )
    window_days: float | None = Field(
        default=None, gt=0, description="Only matches at most this old count"
    )
    once_per: str | None = Field(
        default=None, description="An attribute: only the first match per value counts"
    )

    @field_validator("once_per")
    @classmethod
    def _path(cls, once_per: str | None, info: ValidationInfo) -> str | None:
        if once_per is not None and "when" in info.data:
            check_path(once_per, info.data["when"].types)
        return once_per

    def applies_to(self, lead: Mapping[str, object] | None) -> bool:
        """Whether the rule's matches count for a lead with these attributes (None: the
        lead's attributes are unknown, and only a rule with no ``lead`` conditions counts)."""
        return all(c.holds((lead or {}).get(name)) for name, c in self.when.lead.items())

    @property
    def window_us(self) -> int | None:
        return None if self.window_days is None else round(self.window_days * DAY_US)

    def compile(self, model: str) -> CompiledRule:
        tests = [(getter(path), c.holds) for path, c in self.when.where.items()]

        def matches(event: InteractionEvent) -> bool:
            return all(holds(get(event)) for get, holds in tests)

        once = getter(self.once_per) if self.once_per is not None else None
        return CompiledRule(model, self.id, self.points, matches, once)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule as plain functions, for the hot path of matching events."""

    model: str
    rule_id: str
    points: float
    matches: Callable[[InteractionEvent], bool]
    """Whether the event meets the conditions (its type is checked by the caller)."""
    once: Callable[[InteractionEvent], Any] | None

    def once_key(self, event: InteractionEvent) -> str | None:
        value = None if self.once is None else self.once(event)
        return None if value is None else str(value)


class Decay(_Strict):
    """Points lose half their value every ``half_life_days`` (relative to the instant the
    score is computed for, never the wall clock)."""

    half_life_days: float = Field(gt=0, allow_inf_nan=False)


class Grade(_Strict):
    grade: str = Field(min_length=1, max_length=20)
    min_score: float | None = Field(default=None, description="None: every lower score")


class ScoringModel(_Strict):
    """One lead-scoring model: rules, decay, grades and the sales-ready threshold."""

    name: Name
    version: int = Field(ge=1)
    description: str = ""
    sales_ready_threshold: float = Field(gt=0, allow_inf_nan=False)
    decay: Decay | None = None
    grades: tuple[Grade, ...]
    rules: tuple[Rule, ...]

    @field_validator("decay", mode="before")
    @classmethod
    def _none(cls, value: Any) -> Any:
        return None if value in ("none", False) else value

    @field_validator("grades")
    @classmethod
    def _ordered(cls, grades: tuple[Grade, ...]) -> tuple[Grade, ...]:
        if not grades:
            raise ValueError("a model needs grades, e.g. [{grade = 'A', min_score = 80}, ...]")
        names = [g.grade for g in grades]
        if len(set(names)) != len(names):
            raise ValueError(f"grade names must be unique, got {names}")
        if grades[-1].min_score is not None:
            raise ValueError(
                f"the last grade ({grades[-1].grade!r}) must have no min_score: "
                "it takes every lower score"
            )
        bounds = [g.min_score for g in grades[:-1] if g.min_score is not None]
        if len(bounds) != len(grades) - 1:
            raise ValueError("only the last grade may leave out min_score")
        if any(a <= b for a, b in itertools.pairwise(bounds)):
            raise ValueError(f"grades must go from the highest min_score down, got {bounds}")
        return grades

    @field_validator("rules")
    @classmethod
    def _unique(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        if not rules:
            raise ValueError("a model needs at least one rule ([[rules]] in TOML)")
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return rules

    def grade_for(self, score: float) -> str:
        for g in self.grades:
            if g.min_score is None or score >= g.min_score:
                return g.grade
        raise AssertionError("the last grade has no min_score")  # checked by _ordered

    def compile(self) -> dict[str, list[CompiledRule]]:
        """Event type -> the rules that may match it, in model order."""
        by_type: dict[str, list[CompiledRule]] = {}
        for rule in self.rules:
            compiled = rule.compile(self.name)
            for event_type in sorted(rule.when.types):
                by_type.setdefault(event_type, []).append(compiled)
        return by_type

    def definition(self) -> str:
        """The model as canonical JSON: stored with the view it built."""
        return self.model_dump_json(by_alias=True, exclude_none=True)
