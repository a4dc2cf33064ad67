"""Comparing two lead-score views, e.g. the live one and a replay with a changed model:
which leads' score, grade or sales-ready flag differ, with counts."""

from __future__ import annotations

from dataclasses import dataclass, field

from interaction_store.views.base import ViewStore

_ROW = tuple[float | None, str | None, bool, str]


@dataclass(frozen=True)
class LeadDifference:
    """One lead under one model, in view A and in view B (None: absent there)."""

    lead_id: str
    model: str
    a: _ROW | None
    b: _ROW | None

    def fields(self) -> list[str]:
        if self.a is None or self.b is None:
            return ["presence"]
        names = ("score", "grade", "sales_ready", "status")
        out = []
        for name, x, y in zip(names, self.a, self.b, strict=True):
            same = (
                round(x, 6) == round(y, 6)
                if isinstance(x, float) and isinstance(y, float)
                else x == y
            )
            if not same:
                out.append(name)
        return out


@dataclass
class ScoreDiff:
    """All differences between two lead-score views, and their counts per field."""

    a: str
    b: str
    compared: int = 0
    differences: list[LeadDifference] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.differences:
            for name in d.fields():
                out[name] = out.get(name, 0) + 1
        return out


def diff_scores(store: ViewStore, a: str, b: str) -> ScoreDiff:
    """Compare the ``scores`` tables of views ``a`` and ``b`` lead by lead, model by model."""
    rows = {name: _scores(store, name) for name in (a, b)}
    result = ScoreDiff(a, b)
    keys = sorted(set(rows[a]) | set(rows[b]))
    result.compared = len(keys)
    for key in keys:
        left, right = rows[a].get(key), rows[b].get(key)
        d = LeadDifference(key[0], key[1], left, right)
        if d.fields():
            result.differences.append(d)
    return result


def _scores(store: ViewStore, instance: str) -> dict[tuple[str, str], _ROW]:
    with store.reading() as c:
        c.execute(
            f"SELECT lead_id, model, score, grade, sales_ready, status FROM {instance}__scores"
        )
        return {
            (lead, model): (score, grade, bool(ready), status)
            for lead, model, score, grade, ready, status in c.fetchall()
        }
