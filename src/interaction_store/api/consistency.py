"""Read-your-writes: the ingest API answers with a consistency token (the positions it wrote);
a read that passes it back waits until the views it reads have applied those positions.

A token is ``v1.`` + base64url of JSON ``{"topic/partition": offset, ...}``: opaque to callers,
but readable when debugging. Tokens from several writes merge by taking the highest offset per
partition.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import orjson

from interaction_store.log.base import Position
from interaction_store.views.base import ViewStore

PREFIX = "v1."

Positions = dict[tuple[str, int], int]


class BadToken(ValueError):
    """A consistency token that is not one of ours (names the token)."""


MAX_POSITIONS = 10_000
"""More positions than any catalog has partitions: a token holding more was not issued here."""


def token_of(positions: Iterable[Position]) -> str | None:
    """The token for these written positions (None when nothing was written)."""
    highest: Positions = {}
    for p in positions:
        key = (p.topic, p.partition)
        if highest.get(key, -1) < p.offset:
            highest[key] = p.offset
    if not highest:
        return None
    body = {f"{t}/{p}": o for (t, p), o in sorted(highest.items())}
    return PREFIX + base64.urlsafe_b64encode(orjson.dumps(body)).decode().rstrip("=")


def parse(token: str) -> Positions:
    """The positions a token stands for; :class:`BadToken` names what is wrong."""
    shown = token if len(token) <= 80 else token[:77] + "..."
    if not token.startswith(PREFIX):
        raise BadToken(f"consistency token {shown!r} is not one this API issued (no {PREFIX!r})")
    text = token[len(PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        body = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise BadToken(f"consistency token {shown!r} is not valid base64url JSON") from exc
    if not isinstance(body, dict) or not body:
        raise BadToken(f"consistency token {shown!r} holds no positions")
    if len(body) > MAX_POSITIONS:
        raise BadToken(
            f"consistency token {shown!r} has {len(body)} positions; at most {MAX_POSITIONS}"
        )
    out: Positions = {}
    for key, offset in body.items():
        topic, _, partition = str(key).rpartition("/")
        # isascii: str.isdigit() is true of "²" and other digits int() does not read.
        digits = partition.isascii() and partition.isdigit() and len(partition) <= 10
        # Past the databases' integer columns, a number would fail the query, not the token.
        fits = digits and int(partition) < 2**31 and type(offset) is int and 0 <= offset < 2**63
        if not topic or len(topic) > 249 or not fits:
            raise BadToken(
                f"consistency token {shown!r} has a bad position {_short(key)}: {_short(offset)}"
            )
        out[(topic, int(partition))] = offset
    return out


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class Behind:
    """How far a view is from a token's positions when the wait timed out."""

    view: str
    missing: Mapping[tuple[str, int], int]
    """(topic, partition) -> how many offsets the view still has to apply."""

    @property
    def events(self) -> int:
        return sum(self.missing.values())

    def describe(self) -> str:
        parts = ", ".join(f"{t}/{p}: {n}" for (t, p), n in sorted(self.missing.items()))
        return f"view {self.view} is {self.events} event(s) behind the token ({parts})"


def behind(store: ViewStore, view: str, required: Positions) -> Behind | None:
    """None when ``view`` has applied every position in ``required``, else how far it is."""
    tracked = store.tracked(view, required)
    missing = {
        key: offset - tracked.get(key, -1)
        for key, offset in required.items()
        if tracked.get(key, -1) < offset
    }
    return Behind(view, missing) if missing else None


def wait_until_applied(
    store: ViewStore,
    views: Iterable[str],
    required: Positions,
    timeout: float,
    poll: float = 0.01,
) -> Behind | None:
    """Wait (at most ``timeout`` seconds) until every view applied ``required``. None when they
    did, else how far the first one still is when the time ran out."""
    deadline = time.monotonic() + timeout
    pending = list(views)
    delay = poll
    while True:
        pending = [v for v in pending if behind(store, v, required) is not None]
        if not pending:
            return None
        if time.monotonic() >= deadline:
            return behind(store, pending[0], required)
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.1)
