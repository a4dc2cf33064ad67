"""Lead-scoring models (the TOML or YAML files in ``projections/scoring/``), validated with
errors that name file, rule and field; and what a model says matches are worth at an instant."""

from __future__ import annotations

import enum
import fnmatch
import functools
import itertools
import math
import re
import tomllib
import typing
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from interaction_store.events import EVENT_TYPES, Correlation, InteractionEvent, Subject
from interaction_store.settings import Settings

SCORING_FOLDER = "scoring"
"""The sub-folder of ``projections/`` that holds the scoring models."""

MODEL_SUFFIXES = (".toml", ".yaml", ".yml")

UNSCORED_TYPES = frozenset({"lead.sales_ready"})
"""Never scored: the projection emits these itself, and scoring them would feed back."""

SCORABLE_TYPES = tuple(sorted(set(EVENT_TYPES) - UNSCORED_TYPES))

DAY_US = 86_400_000_000
"""A day in microseconds: instants are integers so windows compare exactly."""

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
Scalar = str | bool | int | float

# --------------------------------------------------------------------------- attribute paths


def _payload_fields(event_type: str) -> dict[str, Any]:
    payload = EVENT_TYPES[event_type].model_fields["payload"].annotation
    assert isinstance(payload, type) and issubclass(payload, BaseModel)
    return dict(payload.model_fields)


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
        if key and not any(
            typing.get_origin(_payload_fields(t)[name].annotation) is dict for t in having
        ):
            raise ValueError(f"{path!r}: payload.{name} is not a mapping, so it has no keys")
        return
    raise ValueError(
        f"{path!r}: name an attribute as payload.<field>, correlation.<field>, "
        "subject.<field>, source or type"
    )


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


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


# --------------------------------------------------------------------------- the file format


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
    on their attributes (``payload.url``, ``correlation.campaign_id``, ...)."""

    type: tuple[str, ...] = Field(min_length=1)
    where: dict[str, Condition] = Field(default_factory=dict)

    @field_validator("type", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("type")
    @classmethod
    def _known(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(t, pattern) for t in SCORABLE_TYPES):
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
    return frozenset(t for t in SCORABLE_TYPES if any(fnmatch.fnmatchcase(t, p) for p in patterns))


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


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a model file."""

    rule: str | None
    field: str
    message: str


class ScoringModelError(ValueError):
    """A scoring model file that cannot be used; the message names file, rule and field."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = []
        for p in self.problems:
            where = [f"rule {p.rule}"] if p.rule else []
            where += [f"field {p.field}"] if p.field else []
            lines.append(f"  {', '.join(where)}: {p.message}" if where else f"  {p.message}")
        super().__init__(f"{source}: invalid scoring model\n" + "\n".join(lines))


def parse_model(data: Any, source: str = "(scoring model)") -> ScoringModel:
    """Validate a parsed model document; errors name ``source``, the rule and the field."""
    try:
        return ScoringModel.model_validate(data)
    except ValidationError as exc:
        raise ScoringModelError(source, list(_problems(data, exc))) from None


def _problems(data: Any, exc: ValidationError) -> Iterator[Problem]:
    rules = data.get("rules") if isinstance(data, dict) else None
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        rule = None
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            index = loc[1]
            raw = rules[index] if isinstance(rules, list) and index < len(rules) else None
            rid = raw.get("id") if isinstance(raw, dict) else None
            rule = f"{rid!r} (rules[{index}])" if rid else f"rules[{index}]"
            loc = loc[2:]
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] not in ("missing", "extra_forbidden", "value_error") and loc:
            shown = repr(err["input"])
            message += f" (got {shown if len(shown) <= 80 else shown[:77] + '...'})"
        yield Problem(rule, ".".join(str(p) for p in loc), message)


def read_model(text: str, source: str) -> ScoringModel:
    """A model from the text of a file named ``source`` (TOML, or YAML if it ends so)."""
    try:
        data: Any = (
            yaml.safe_load(text) if source.endswith((".yaml", ".yml")) else tomllib.loads(text)
        )
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ScoringModelError(source, [Problem(None, "", f"not valid syntax: {exc}")]) from None
    return parse_model(data, source)


def read_models(texts: Sequence[tuple[str, str]]) -> list[ScoringModel]:
    """Models from (file name, text) pairs, in that order; model names must be unique."""
    models: list[ScoringModel] = []
    defined_in: dict[str, str] = {}
    for source, text in texts:
        model = read_model(text, source)
        if model.name in defined_in:
            also = f"model {model.name!r} is also defined in {defined_in[model.name]}"
            raise ScoringModelError(source, [Problem(None, "name", also)])
        defined_in[model.name] = source
        models.append(model)
    return models


def model_files(folder: Path) -> list[Path]:
    """The model files of a folder, in name order."""
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no scoring-model folder at {folder}: create it, or point ISTORE_PROJECTIONS_DIR "
            f"at a folder with a {SCORING_FOLDER}/ sub-folder"
        )
    files = sorted(p for p in folder.iterdir() if p.suffix in MODEL_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no scoring models (*.toml, *.yaml) in {folder}")
    return files


def load_models(folder: Path) -> list[ScoringModel]:
    """Every model in a folder, in file-name order; model names must be unique."""
    return read_models([(str(p), p.read_text(encoding="utf-8")) for p in model_files(folder)])


def models_folder(settings: Settings) -> Path:
    return settings.projections_dir / SCORING_FOLDER


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True, slots=True)
class Match:
    """An event a rule matched, as stored per contact (or anonymous visitor)."""

    event_id: str
    rule_id: str
    event_type: str
    subject_key: str
    occurred_at: str
    at: int
    """``occurred_at`` in microseconds since the epoch."""
    points: float
    once_key: str | None


@dataclass(frozen=True, slots=True)
class Term:
    """A match that counts at an instant, and its points after decay."""

    match: Match
    decayed: float


@dataclass(frozen=True, slots=True)
class SetAside:
    """A match that does not count at an instant, and why."""

    match: Match
    reason: str


@dataclass(frozen=True)
class Evaluation:
    score: float
    grade: str
    terms: list[Term]
    set_aside: list[SetAside]


def tidy(value: float) -> float:
    """The stored form of a score: 6 decimals, and never ``-0.0``."""
    return round(value, 6) + 0.0


class LeadMatches:
    """One model's matches for one lead, ready to be scored at any instant.

    The score at ``t`` counts, per rule, the matches at or before ``t``: the first per
    ``once_per`` value; of those, the ones at most ``window_days`` old; of those, the
    ``max_count`` most recent; each decayed by its age at ``t``. ``math.fsum`` makes the sum
    independent of the order it is taken in.
    """

    def __init__(self, model: ScoringModel, matches: Sequence[Match]) -> None:
        self.model = model
        self.half_life_us = None if model.decay is None else model.decay.half_life_days * DAY_US
        by_rule: dict[str, list[Match]] = {r.id: [] for r in model.rules}
        for m in sorted(matches, key=lambda m: (m.occurred_at, m.event_id)):
            if m.rule_id in by_rule:
                by_rule[m.rule_id].append(m)
        self.repeats: list[tuple[Match, Match]] = []
        """(repeat, first): matches a rule's ``once_per`` leaves out."""
        self.rules: list[tuple[Rule, list[Match], list[int]]] = []
        for rule in model.rules:
            kept: list[Match] = []
            first: dict[str, Match] = {}
            for m in by_rule[rule.id]:
                if rule.once_per is not None and m.once_key is not None:
                    if m.once_key in first:
                        self.repeats.append((m, first[m.once_key]))
                        continue
                    first[m.once_key] = m
                kept.append(m)
            self.rules.append((rule, kept, [m.at for m in kept]))
        self.latest = max((m.occurred_at for m in matches), default=None)
        """The latest matched event of any rule (the default instant to score at)."""

    def instants(self) -> dict[str, int]:
        """Every instant a match that can count happened at (ISO text -> microseconds)."""
        return {m.occurred_at: m.at for _, kept, _ in self.rules for m in kept}

    def _span(self, rule: Rule, ats: list[int], t: int) -> tuple[int, int]:
        hi = bisect_right(ats, t)
        lo = 0
        window = rule.window_us
        if window is not None:
            lo = bisect_left(ats, t - window, 0, hi)
        if rule.max_count is not None:
            lo = max(lo, hi - rule.max_count)
        return lo, hi

    def _decayed(self, m: Match, t: int) -> float:
        if self.half_life_us is None:
            return m.points
        factor: float = 0.5 ** ((t - m.at) / self.half_life_us)
        return m.points * factor

    def score_at(self, t: int) -> float:
        parts: list[float] = []
        for rule, kept, ats in self.rules:
            lo, hi = self._span(rule, ats, t)
            parts.extend(self._decayed(m, t) for m in kept[lo:hi])
        return tidy(math.fsum(parts))

    def evaluate(self, t: int) -> Evaluation:
        """The score at ``t`` with the matches behind it, and those set aside with why."""
        terms: list[Term] = []
        aside: list[SetAside] = []
        for rule, kept, ats in self.rules:
            lo, hi = self._span(rule, ats, t)
            terms.extend(Term(m, self._decayed(m, t)) for m in kept[lo:hi])
            window = rule.window_us
            for m in kept[:lo]:
                if window is not None and m.at < t - window:
                    why = f"older than the rule's {rule.window_days:g}-day window"
                else:
                    within = f" in {rule.window_days:g} days" if rule.window_days else ""
                    why = f"over max_count: only the {rule.max_count} most recent{within} count"
                aside.append(SetAside(m, why))
        for repeat, first in self.repeats:
            if repeat.at <= t:
                rule = next(r for r, _, _ in self.rules if r.id == repeat.rule_id)
                aside.append(
                    SetAside(
                        repeat,
                        f"once per {rule.once_per}: {repeat.once_key!r} already counted "
                        f"with event {first.event_id}",
                    )
                )
        score = tidy(math.fsum(term.decayed for term in terms))
        return Evaluation(score, self.model.grade_for(score), terms, aside)
