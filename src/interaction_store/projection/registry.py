"""Which views exist, which one of each kind is live, and how to build each one.

The registry is a table in the view database. Replays build a shadow instance beside the live
one; promoting it makes the read API use it, in one transaction; dropping removes its tables.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from interaction_store.projection.base import Projection
from interaction_store.projection.runner import DEAD_LETTERS, dead_letters_ddl
from interaction_store.projection.scoring.files import read_model
from interaction_store.settings import Settings
from interaction_store.views.base import ViewStore

log = logging.getLogger(__name__)

REGISTRY = "istore_views"

PRIVATE_SUFFIX = "_profiles"
"""Lead-scores views keep their own profiles in ``<name>_profiles__*`` tables."""

KINDS: dict[str, str] = {
    "profiles": "interaction_store.projection.profiles:Profiles",
    "timeline": "interaction_store.projection.timeline:Timeline",
    "consent": "interaction_store.projection.consent:Consent",
    "lead_scores": "interaction_store.projection.scoring:LeadScores",
    "subjects": "interaction_store.projection.subjects:SubjectIndex",
}
"""Each kind of view and the class that builds it."""


class ViewError(ValueError):
    """A view name or kind that does not exist, or an operation that does not fit."""


@dataclass(frozen=True)
class ViewInfo:
    """One registered view."""

    instance: str
    kind: str
    status: str  # "live" | "shadow"
    definition: dict[str, Any]
    until: str | None
    created_at: str
    promoted_at: str | None


def projection_class(kind: str) -> type[Projection]:
    if kind not in KINDS:
        raise ViewError(f"unknown view kind {kind!r}; the kinds are {', '.join(KINDS)}")
    module_name, _, cls_name = KINDS[kind].partition(":")
    cls: type[Projection] = getattr(importlib.import_module(module_name), cls_name)
    return cls


def build(info: ViewInfo, settings: Settings) -> Projection:
    """The projection object of a registered view, with its definition (e.g. its models)."""
    cls = projection_class(info.kind)
    factory = getattr(cls, "from_definition", None)
    if factory is not None:
        projection: Projection = factory(info.instance, info.definition, settings)
        return projection
    from_settings = getattr(cls, "from_settings", None)
    if from_settings is not None:
        configured: Projection = from_settings(settings, info.instance)
        return configured
    return cls(info.instance)


class ViewRegistry:
    """The ``istore_views`` table."""

    def __init__(self, store: ViewStore) -> None:
        self.store = store
        store.ensure(
            [
                f"CREATE TABLE IF NOT EXISTS {REGISTRY} (instance TEXT PRIMARY KEY, "
                "kind TEXT NOT NULL, status TEXT NOT NULL, definition TEXT NOT NULL, "
                "until_at TEXT, created_at TEXT NOT NULL, promoted_at TEXT)",
                dead_letters_ddl(store.dialect),
            ]
        )

    def all(self) -> list[ViewInfo]:
        with self.store.reading() as c:
            c.execute(
                "SELECT instance, kind, status, definition, until_at, created_at, promoted_at "
                f"FROM {REGISTRY} ORDER BY kind, status, instance"
            )
            return [
                ViewInfo(r[0], r[1], r[2], orjson.loads(r[3]), r[4], r[5], r[6])
                for r in c.fetchall()
            ]

    def get(self, instance: str) -> ViewInfo:
        for info in self.all():
            if info.instance == instance:
                return info
        names = ", ".join(i.instance for i in self.all()) or "none yet"
        raise ViewError(f"no view named {instance!r}; the views are: {names}")

    def live(self, kind: str) -> ViewInfo | None:
        projection_class(kind)
        return next((i for i in self.all() if i.kind == kind and i.status == "live"), None)

    def live_views(self) -> tuple[ViewInfo, ...]:
        """The live view of each kind, in kind order."""
        return tuple(i for i in self.all() if i.status == "live")

    def register(
        self,
        instance: str,
        kind: str,
        definition: dict[str, Any],
        *,
        status: str = "shadow",
        until: datetime | None = None,
    ) -> ViewInfo:
        projection_class(kind)
        if instance.endswith(PRIVATE_SUFFIX) and instance != "profiles":
            raise ViewError(
                f"view name {instance!r}: names ending in {PRIVATE_SUFFIX!r} are kept for the "
                "tables a view keeps for itself (a lead-scores view's own profiles)"
            )
        if status not in ("live", "shadow"):
            raise ViewError(f"status must be live or shadow, got {status!r}")
        now = datetime.now(UTC).isoformat()
        with self.store.transaction() as c:
            c.execute(f"SELECT kind FROM {REGISTRY} WHERE instance = %s", (instance,))
            row = c.fetchone()
            if row is not None:
                raise ViewError(
                    f"a view named {instance!r} exists already ({row[0]}); drop it first "
                    "(istore views drop) or choose another name (--as)"
                )
            if status == "live":
                c.execute(
                    f"SELECT instance FROM {REGISTRY} WHERE kind = %s AND status = 'live'",
                    (kind,),
                )
                if c.fetchone() is not None:
                    raise ViewError(f"{kind} has a live view already")
            c.execute(
                f"INSERT INTO {REGISTRY} VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    instance,
                    kind,
                    status,
                    orjson.dumps(definition).decode(),
                    until.isoformat() if until else None,
                    now,
                    now if status == "live" else None,
                ),
            )
        return self.get(instance)

    def promote(self, instance: str) -> tuple[ViewInfo, str | None]:
        """Make a shadow view the live one of its kind; the old live one becomes a shadow.
        Returns the promoted view and the name of the one it replaced."""
        info = self.get(instance)
        if info.status == "live":
            raise ViewError(f"{instance} is live already")
        if info.until is not None:
            raise ViewError(
                f"{instance} was built up to {info.until}, not to the end of the log: "
                "a point-in-time view cannot serve as the live one"
            )
        old = self.live(info.kind)
        with self.store.transaction() as c:
            c.execute(
                f"UPDATE {REGISTRY} SET status = 'shadow' WHERE kind = %s AND status = 'live'",
                (info.kind,),
            )
            c.execute(
                f"UPDATE {REGISTRY} SET status = 'live', promoted_at = %s WHERE instance = %s",
                (datetime.now(UTC).isoformat(), instance),
            )
        return self.get(instance), old.instance if old else None

    def drop(self, instance: str, settings: Settings) -> None:
        """Remove a shadow view and its tables (the live one cannot be dropped)."""
        info = self.get(instance)
        if info.status == "live":
            raise ViewError(f"{instance} is the live {info.kind} view: promote another one first")
        build(info, settings).drop(self.store)
        with self.store.transaction() as c:
            c.execute(f"DELETE FROM {REGISTRY} WHERE instance = %s", (instance,))
            c.execute(f"DELETE FROM {DEAD_LETTERS} WHERE view_name = %s", (instance,))

    def ensure_defaults(self, settings: Settings) -> list[ViewInfo]:
        """Register the live view of each kind if there is none yet (first start)."""
        out = []
        for kind in KINDS:
            live = self.live(kind)
            if live is None:
                live = self.register(kind, kind, default_definition(kind, settings), status="live")
            out.append(live)
        return out


def default_definition(kind: str, settings: Settings) -> dict[str, Any]:
    """What a view is built from, recorded with it so a replay can be compared: for lead
    scores, the model files' text."""
    cls = projection_class(kind)
    definer = getattr(cls, "default_definition", None)
    if definer is None:
        return {}
    definition: dict[str, Any] = definer(settings)
    return definition


class LiveSet:
    """Tells a running worker that the live views are no longer those it feeds: ``istore views
    promote`` (or a drop after one) from another process. The worker then rebuilds its runner
    on the new set, which resumes each view from its own tracked positions, so nothing is lost
    and nothing is applied twice.

    Looks at the registry at most every ``every`` seconds between polls, and on every look
    before a batch (``fresh``): a batch written into a view demoted and dropped a moment ago
    would recreate its positions, or fail on its missing tables."""

    def __init__(self, registry: ViewRegistry, feeding: Sequence[ViewInfo], every: float = 0.5):
        self.registry = registry
        self.feeding = frozenset(i.instance for i in feeding)
        self.every = every
        self._looked = time.monotonic()
        self.changed = False

    def moved(self, fresh: bool = False) -> bool:
        """True once the live set differs from the one being fed (and from then on); the
        runner's ``until`` hook (``fresh``: a batch is about to be applied)."""
        if self.changed:
            return True
        now = time.monotonic()
        if not fresh and now - self._looked < self.every:
            return False
        self._looked = now
        try:
            live = frozenset(i.instance for i in self.registry.live_views())
        except Exception as exc:  # the view database away for a moment: look again later
            log.warning("could not read the view registry (%s): looking again shortly", exc)
            return False
        self.changed = live != self.feeding
        return self.changed


def outdated(info: ViewInfo, settings: Settings) -> str | None:
    """How the definition files (``consent.toml``'s opt-outs, the scoring models) now differ
    from what the view was built with, or None. A running worker, and one restarted, go on
    with what the view was built with: its rows were computed so, and mixing the two would
    make a view that no replay gives. Only a replay uses the files."""
    if not info.definition:
        return None  # nothing recorded (a definition-free kind, or registered before)
    try:
        now = default_definition(info.kind, settings)
    except (ValueError, OSError) as exc:
        return f"its definition files cannot be read (running servers keep what they read): {exc}"
    if all(now.get(k) == v for k, v in info.definition.items()):
        return None
    built, files = info.definition.get("models"), now.get("models")
    if isinstance(built, dict) and isinstance(files, dict):
        # Compared as models, not as text: an edited comment changes no score.
        names = sorted(
            n for n in built.keys() | files.keys() if _model(n, built) != _model(n, files)
        )
        if not names:
            return None
        what = f"the scoring model files differ from its models ({', '.join(names)})"
    else:
        changed = sorted(k for k, v in info.definition.items() if now.get(k) != v)
        what = f"the definition files differ from what it was built with ({', '.join(changed)})"
    return (
        f"replay needed: {what}; a restart keeps what it was built with; to use the files, "
        f"`istore replay {info.kind} --as NAME`, compare, then `istore views promote NAME`"
    )


def _model(name: str, texts: dict[str, str]) -> object:
    if name not in texts:
        return None
    try:
        return read_model(texts[name], name).definition()
    except ValueError:
        return texts[name]  # unreadable: told apart by its text


def stale_note(info: ViewInfo, missing: dict[str, list[str]]) -> str:
    """What to do about a view whose tables an older version made (see
    :meth:`Projection.missing_columns`)."""
    lacking = "; ".join(f"{t} lacks {', '.join(cs)}" for t, cs in sorted(missing.items()))
    return (
        f"replay needed: built by an older version ({lacking}); `istore replay {info.kind} "
        f"--as {info.kind}_v2`, then `istore views promote {info.kind}_v2`"
    )
