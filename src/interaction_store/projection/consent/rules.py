"""The consent rules: what ``projections/consent.toml`` says (defaults, minimum levels, children,
opt-in or opt-out per channel, which events withdraw consent), validated and loaded."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from interaction_store.events import ConsentLevel
from interaction_store.settings import Settings

RULES_FILE = "consent.toml"

Channel = Literal["email", "sms", "push", "phone"]
Purpose = Literal["commercial", "transactional"]
CHANNELS: tuple[str, ...] = get_args(Channel)
PURPOSES: tuple[str, ...] = get_args(Purpose)
OptOutType = Literal["email.unsubscribed", "email.spam_reported", "sms.replied", "email.bounced"]


class ConsentRulesError(ValueError):
    """``consent.toml`` says something the consent view cannot do; the message names the file,
    the key and the value."""


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Defaults(_Rules):
    allow_email: bool
    allow_bulk_email: bool
    allow_prefill: bool
    track_email: bool
    consent_level: ConsentLevel


class MinimumLevels(_Rules):
    transactional: ConsentLevel
    commercial: ConsentLevel
    commercial_list: ConsentLevel


class ChildRules(_Rules):
    commercial: Literal["never", "with_guardian"]


Enforcement = Literal["opt_in", "opt_out"]


class ChannelEnforcement(_Rules):
    email: Enforcement
    sms: Enforcement
    push: Enforcement
    phone: Enforcement


class ContactPointRules(_Rules):
    commercial: ChannelEnforcement
    transactional: ChannelEnforcement


class OptOuts(_Rules):
    email_unsubscribed: bool = Field(alias="email.unsubscribed")
    email_spam_reported: bool = Field(alias="email.spam_reported")
    sms_replied: bool = Field(alias="sms.replied")
    email_bounced: bool = Field(alias="email.bounced")

    def enabled(self) -> frozenset[str]:
        """The event types that withdraw consent under these rules."""
        return frozenset(
            f.alias or name
            for name, f in type(self).model_fields.items()
            if getattr(self, name) is True
        )


class ConsentRules(_Rules):
    """What ``projections/consent.toml`` says (its comments explain each rule)."""

    defaults: Defaults
    minimum_level: MinimumLevels
    children: ChildRules
    contact_points: ContactPointRules
    opt_outs: OptOuts

    @classmethod
    def load(cls, projections_dir: Path | None = None) -> ConsentRules:
        """Read ``consent.toml`` from ``projections_dir`` (default: ``ISTORE_PROJECTIONS_DIR``,
        else the checkout's or the wheel's ``projections/``)."""
        folder = projections_dir if projections_dir is not None else Settings().projections_dir
        path = folder / RULES_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConsentRulesError(
                f"{path}: cannot read the consent rules ({exc.strerror}); "
                f"set ISTORE_PROJECTIONS_DIR to the folder holding {RULES_FILE}"
            ) from None
        return cls.from_toml(text, str(path))

    @classmethod
    def from_toml(cls, text: str, source: str = RULES_FILE) -> ConsentRules:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConsentRulesError(f"{source}: not valid TOML: {exc}") from None
        return cls.from_dict(doc, source)

    @classmethod
    def from_dict(cls, doc: dict[str, Any], source: str = RULES_FILE) -> ConsentRules:
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])} = {e.get('input')!r}: {e['msg']}"
                for e in exc.errors()
            )
            raise ConsentRulesError(f"{source}: {problems}") from None

    def minimum(self, purpose: str, list_id: str | None) -> tuple[str, ConsentLevel]:
        """The rule name and the lowest consent level a message of ``purpose`` needs."""
        key = "commercial_list" if purpose == "commercial" and list_id else purpose
        level: ConsentLevel = getattr(self.minimum_level, key)
        return f"minimum_level.{key}", level
