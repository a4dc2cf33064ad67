"""Read-your-writes for the read routes: every read takes an optional consistency token
(``consistency`` or ``X-Consistency-Token``, from the ingest API) and first waits, at most
``wait`` seconds (capped by ``ISTORE_CONSISTENCY_TIMEOUT``), until the views have applied its
positions; 504 with how far behind they are when they have not. The token format is
:mod:`interaction_store.api.consistency`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Query
from starlette.concurrency import run_in_threadpool

from interaction_store.api.consistency import BadToken, Behind, Positions, behind, parse
from interaction_store.api.errors import APIError
from interaction_store.api.parameters import Svc
from interaction_store.api.problems import invalid
from interaction_store.api.services import Services

MAX_WAIT = 60.0
"""The largest ``wait`` a request may ask for (the settings cap it lower)."""


@dataclass(frozen=True)
class ReadAfter:
    """The positions a read must see first (None: no token) and how long it may wait."""

    required: Positions | None
    """Already waited for by the time a route runs (see :func:`read_after`)."""
    timeout: float


async def read_after(
    svc: Svc,
    consistency: Annotated[
        str | None,
        Query(
            description="A consistency token from the ingest API: answer only once the views "
            "read have applied what it wrote"
        ),
    ] = None,
    consistency_header: Annotated[
        str | None,
        Header(alias="X-Consistency-Token", description="The same, as a header"),
    ] = None,
    wait: Annotated[
        float | None,
        Query(
            ge=0,
            le=MAX_WAIT,
            description="Seconds to wait for the token's positions (default and cap: the "
            "server's consistency timeout)",
        ),
    ] = None,
) -> ReadAfter:
    cap = svc.settings.consistency_timeout
    timeout = cap if wait is None else min(wait, cap)
    required: Positions = {}
    given: list[tuple[str, str, str, Positions]] = []
    for where, name, token in (
        ("query", "consistency", consistency),
        ("header", "X-Consistency-Token", consistency_header),
    ):
        if token is None:
            continue
        try:
            positions = parse(token)
        except BadToken as exc:
            raise invalid(where, name, token, str(exc)) from None
        given.append((where, name, token, positions))
        for key, offset in positions.items():
            required[key] = max(required.get(key, -1), offset)
    if required:
        await _wait(svc, given, required, timeout)
    return ReadAfter(required or None, timeout)


async def _wait(
    svc: Services,
    given: Sequence[tuple[str, str, str, Positions]],
    required: Positions,
    timeout: float,
) -> None:
    """Wait until every live view has applied ``required``; 504 when they have not within
    ``timeout``. The waiting is the event loop's (asyncio.sleep between looks), not a server
    thread's: many reads waiting on a lagging worker hold no threads. Every live view, not
    just those a route reads: one worker applies them all in one transaction per batch, and
    a route also looks in others to tell an unknown id."""
    for where, name, token, positions in given:
        await run_in_threadpool(_check_log, svc, where, name, token, positions)
    pending = await run_in_threadpool(_live_instances, svc)
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        found = await run_in_threadpool(_behind_views, svc, pending, required)
        if not found:
            return
        pending = [b.view for b in found]
        left = deadline - time.monotonic()
        if left <= 0:
            first = found[0]
            raise APIError(
                504,
                f"{first.describe()} after waiting {timeout:g} s; retry, or ask for a longer wait",
                {"Retry-After": "1"},
                view=first.view,
                events=first.events,
                behind={f"{t}/{p}": n for (t, p), n in sorted(first.missing.items())},
            )
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, 0.1)


def _live_instances(svc: Services) -> list[str]:
    # A fresh look: the route then reads the views this wait is for (a promotion moments ago).
    return [i.instance for i in svc.read_now().registry.all() if i.status == "live"]


def _behind_views(svc: Services, views: Sequence[str], required: Positions) -> list[Behind]:
    out = []
    for view in views:
        late = behind(svc.store, view, required)
        if late is not None:
            out.append(late)
    return out


def _check_log(svc: Services, where: str, name: str, token: str, positions: Positions) -> None:
    """A token must name partitions and offsets of this log: else it is from another one and
    no wait would ever end."""
    have = set(svc.event_partitions())
    strange = sorted(set(positions) - have)
    if strange:
        topics = ", ".join(sorted({t for t, _ in have}))
        t, p = strange[0]
        raise invalid(
            where,
            name,
            token,
            f"names partition {t}/{p}, which this log does not have (its event topics: "
            f"{topics}): a token of another deployment?",
        )
    for topic in sorted({t for t, _ in positions}):
        ends = svc.log.end_offsets(topic)
        for (t, p), offset in sorted(positions.items()):
            if t == topic and offset >= ends.get(p, 0):
                raise invalid(
                    where,
                    name,
                    token,
                    f"names offset {offset} of {t}/{p}, but that partition holds only "
                    f"{ends.get(p, 0)} record(s): a token of another deployment?",
                )


ReadAfterDep = Annotated[ReadAfter, Depends(read_after)]
