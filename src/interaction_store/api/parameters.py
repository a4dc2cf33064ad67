"""Parameters every read route shares: the services, a subject's id in the path, ``as_of`` and
the check that turns an instant into UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Path, Query
from pydantic import AwareDatetime

from interaction_store.api.auth import services_dependency
from interaction_store.api.problems import invalid
from interaction_store.api.services import Services

Svc = Annotated[Services, Depends(services_dependency)]

AsOf = Annotated[
    AwareDatetime | None,
    Query(description="Answer as things stood at this instant (ISO 8601 with zone)"),
]


def id_path(kind: str) -> Any:
    """The path parameter ``{kind}_id``, whatever the route's argument is called."""
    return Path(alias=f"{kind}_id", description=f"The {kind}'s id (a UUID)")


def utc(name: str, moment: datetime | None) -> datetime | None:
    """The instant in UTC; 422 when it falls outside the years 1000 to 9999 there."""
    if moment is None:
        return None
    try:
        instant = moment.astimezone(UTC)
    except OverflowError:
        instant = None
    if instant is None or instant.year < 1000:
        raise invalid("query", name, moment.isoformat(), "out of range (years 1000 to 9999 UTC)")
    return instant
