"""The consent rules: what ``projections/consent.toml`` says (defaults, minimum levels, children,
opt-in or opt-out per channel, which events withdraw consent, merged contacts), validated and
loaded."""

from __future__ import annotations

import logging
import threading
import time
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from interaction_store.events import ConsentLevel
from interaction_store.settings import Settings

log = logging.getLogger(__name__)

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


class MergeRules(_Rules):
    """How consent folds over contacts merged into one another (``[merges]``)."""

    preferences: Literal["opt_out_wins", "latest"] = "opt_out_wins"
    level: Literal["lowest", "latest"] = "lowest"


class ConsentRules(_Rules):
    """What ``projections/consent.toml`` says (its comments explain each rule)."""

    defaults: Defaults
    minimum_level: MinimumLevels
    children: ChildRules
    contact_points: ContactPointRules
    opt_outs: OptOuts
    # A file from before merges were followed has no [merges]: the cautious rules apply.
    merges: MergeRules = MergeRules()

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
        return cls.from_dict(doc, source, text)

    @classmethod
    def from_dict(
        cls, doc: dict[str, Any], source: str = RULES_FILE, text: str | None = None
    ) -> ConsentRules:
        """The rules of a parsed document; with its ``text``, errors name the line too."""
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            problems = "; ".join(
                f"{_line_of(text, e['loc'])}{'.'.join(str(p) for p in e['loc'])} = "
                f"{e.get('input')!r}: {e['msg']}"
                for e in exc.errors()
            )
            raise ConsentRulesError(f"{source}: {problems}") from None

    def minimum(self, purpose: str, list_id: str | None) -> tuple[str, ConsentLevel]:
        """The rule name and the lowest consent level a message of ``purpose`` needs."""
        key = "commercial_list" if purpose == "commercial" and list_id else purpose
        level: ConsentLevel = getattr(self.minimum_level, key)
        return f"minimum_level.{key}", level


def _line_of(text: str | None, loc: tuple[int | str, ...]) -> str:
    """``line N: `` where the key at ``loc`` is written (a key that is missing: its table's
    header), else nothing."""
    if text is None or not loc:
        return ""
    *table, key = (str(p) for p in loc)
    section: list[str] = []
    header: int | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            section = [part.strip().strip('"') for part in line.strip("[]").split(".")]
            header = number if section == table and header is None else header
        elif section == table and line.split("=", 1)[0].strip().strip('"') == key:
            return f"line {number}: "
    return f"line {header}: " if header is not None else ""


class RulesFile:
    """``consent.toml`` as a running server sees it: read again when it changes, looked at
    most once every ``every`` seconds (its modification time and size). A change that fails
    to load keeps the rules in force, logs the error (file, line, key, value) once, and
    :attr:`error` holds it until the file loads again.

    One per file and process (:meth:`of`): a view built again after a promotion goes on with
    the rules in force rather than failing on a file broken mid-edit."""

    _open: ClassVar[dict[Path, RulesFile]] = {}
    _opening: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: Path, every: float = 1.0) -> None:
        self.path = path
        self.every = every
        self._stamp = self._stamp_now()
        self._rules = ConsentRules.load(path.parent)
        self._looked = time.monotonic()
        self._lock = threading.Lock()
        self.error: str | None = None

    @classmethod
    def of(cls, projections_dir: Path) -> RulesFile:
        path = (projections_dir / RULES_FILE).resolve()
        with cls._opening:
            if path not in cls._open:
                cls._open[path] = cls(path)
            return cls._open[path]

    def _stamp_now(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    @property
    def rules(self) -> ConsentRules:
        """The rules in force: the file's, as last read without an error."""
        now = time.monotonic()
        if now - self._looked < self.every or not self._lock.acquire(blocking=False):
            return self._rules  # looked a moment ago, or another thread is looking now
        try:
            self._looked = now
            stamp = self._stamp_now()
            if stamp != self._stamp:
                self._stamp = stamp
                self._reload()
        finally:
            self._lock.release()
        return self._rules

    def _reload(self) -> None:
        try:
            rules = ConsentRules.load(self.path.parent)
        except ConsentRulesError as exc:
            self.error = f"{exc} (the rules loaded before stay in force until it is fixed)"
            log.error("%s", self.error)
            return
        self.error = None
        if rules != self._rules:
            log.warning("%s: read again, the new rules are in force", self.path)
        self._rules = rules
