"""FastAPI dependencies that authenticate the caller by API key and check its role.

They are coroutines although they do not wait for anything: FastAPI runs a plain function
dependency in its threadpool, a thread hop per dependency per request that cost more than
the rest of a timeline read.

The key comes in ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. 401 when it is
missing or unknown, 403 when the key's role lacks the right.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from interaction_store.api.access import Principal, Role
from interaction_store.api.errors import APIError
from interaction_store.api.services import Services

_bearer = HTTPBearer(auto_error=False, description="An API key from `istore keys create`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The same key")

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="interaction-store"'}


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def services_dependency(request: Request) -> Services:
    """:func:`services` as a dependency (``Depends(services_dependency)``)."""
    return services(request)


async def caller(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> Principal:
    key = bearer.credentials if bearer is not None else header
    if not key:
        raise APIError(
            401, "an API key is required (Authorization: Bearer <key>, or X-API-Key)", CHALLENGE
        )
    principal = services(request).access.authenticate(key)
    if principal is None:
        raise APIError(401, "unknown API key", CHALLENGE)
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(caller)]


def _needing(right: Callable[[Role], bool], refusal: str) -> Callable[..., Any]:
    """A dependency: the caller, if its role has ``right``; else 403 "key ... <refusal>"."""

    async def check(principal: Caller) -> Principal:
        if not right(principal.role):
            raise APIError(
                403, f"key {principal.key_name!r} (role {principal.role.name}) {refusal}"
            )
        return principal

    return check


publisher = _needing(lambda r: r.publish, "may not publish")
timeline_reader = _needing(lambda r: bool(r.read), "may read no interaction category")
consent_reader = _needing(lambda r: r.consent, "may not read consent")
scores_reader = _needing(lambda r: r.scores, "may not read lead scores")
eraser = _needing(lambda r: r.erase, "may not erase contacts nor read erasure receipts")
exporter = _needing(
    lambda r: r.export,
    "may not export a contact's data (subject access): give its role `export = true` in the "
    "access file, or use a key of the privacy or admin role",
)
profile_reader = _needing(
    lambda r: bool(r.read or r.profile),
    "may read no profile: give its role `profile = [...]` or read categories in the access file",
)
contact_finder = _needing(
    lambda r: bool(r.lookup),
    "may not look contacts up: give its role `lookup = [...]` in the access file",
)


Publisher = Annotated[Principal, Depends(publisher)]
TimelineReader = Annotated[Principal, Depends(timeline_reader)]
ConsentReader = Annotated[Principal, Depends(consent_reader)]
ScoresReader = Annotated[Principal, Depends(scores_reader)]
Eraser = Annotated[Principal, Depends(eraser)]
Exporter = Annotated[Principal, Depends(exporter)]
ProfileReader = Annotated[Principal, Depends(profile_reader)]
ContactFinder = Annotated[Principal, Depends(contact_finder)]
