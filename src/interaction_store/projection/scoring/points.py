"""What a model says a lead's matches are worth at an instant: windows, caps, ``once_per`` and
decay, in integer microseconds so that windows compare exactly."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from interaction_store.projection.scoring.model import DAY_US, Rule, ScoringModel

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(text: str) -> int:
    """An ISO instant as integer microseconds since the epoch."""
    return (datetime.fromisoformat(text) - _EPOCH) // _MICROSECOND


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
    independent of the order it is taken in. A rule whose ``lead`` conditions the lead's
    attributes (``lead``) fail counts nothing for it.
    """

    def __init__(
        self,
        model: ScoringModel,
        matches: Sequence[Match],
        lead: Mapping[str, object] | None = None,
    ) -> None:
        self.model = model
        self.half_life_us = None if model.decay is None else model.decay.half_life_days * DAY_US
        by_rule: dict[str, list[Match]] = {r.id: [] for r in model.rules}
        for m in sorted(matches, key=lambda m: (m.occurred_at, m.event_id)):
            if m.rule_id in by_rule:
                by_rule[m.rule_id].append(m)
        self.repeats: list[tuple[Match, Match]] = []
        """(repeat, first): matches a rule's ``once_per`` leaves out."""
        self.not_this_lead: list[tuple[Match, Rule]] = []
        """Matches of rules whose ``lead`` conditions this lead fails."""
        self.rules: list[tuple[Rule, list[Match], list[int]]] = []
        for rule in model.rules:
            if not rule.applies_to(lead):
                self.not_this_lead.extend((m, rule) for m in by_rule[rule.id])
                by_rule[rule.id] = []
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
        elsewhere = {r.id for r in model.rules if not r.applies_to(lead)}
        self.latest = max(
            (m.occurred_at for m in matches if m.rule_id not in elsewhere), default=None
        )
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
        for m, rule in self.not_this_lead:
            if m.at <= t:
                tests = ", ".join(sorted(rule.when.lead))
                aside.append(
                    SetAside(m, f"the rule's lead conditions ({tests}) fail for this lead")
                )
        score = tidy(math.fsum(term.decayed for term in terms))
        return Evaluation(score, self.model.grade_for(score), terms, aside)
