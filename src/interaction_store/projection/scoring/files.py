"""Reading scoring models from the TOML or YAML files in ``projections/scoring/``, with errors
that name file, rule and field."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from interaction_store import custom_types
from interaction_store.projection.scoring.model import ScoringModel
from interaction_store.settings import Settings

SCORING_FOLDER = "scoring"
"""The sub-folder of ``projections/`` that holds the scoring models."""

MODEL_SUFFIXES = (".toml", ".yaml", ".yml")


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
    """The settings' scoring-model folder; the custom types its rules may match installed."""
    custom_types.ensure(settings.streams_dir)
    return settings.projections_dir / SCORING_FOLDER
