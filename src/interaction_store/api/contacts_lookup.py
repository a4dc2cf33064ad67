"""The contact lookup route: find contacts by exactly one of email, phone, external id or
anonymous visitor id (an exact match on the normalised value, through the profiles view's
blind index). There is no listing of everyone: a lookup without a key is refused."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from interaction_store.api.auth import ContactFinder
from interaction_store.api.errors import APIError
from interaction_store.api.parameters import Svc
from interaction_store.api.problems import READ_ERRORS, answering, invalid
from interaction_store.api.waits import ReadAfterDep
from interaction_store.projection.lookups import LOOKUP_KEYS

router = APIRouter(tags=["read"])


class FoundContactOut(BaseModel):
    contact_id: str
    merged_into: str | None = Field(description="The contact it was merged into; null: none")
    location: str = Field(description="The profile to read (the survivor's when merged)")


class LookupOut(BaseModel):
    key: str
    contacts: list[FoundContactOut] = Field(description="The matches, in contact id order")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null: last")


Value = Annotated[str | None, Query(min_length=1, max_length=320)]


@router.get(
    "/v1/contacts",
    summary="Find contacts by exactly one of email, phone, external_id or anonymous_id",
    response_model=LookupOut,
    responses=READ_ERRORS,
)
def find_contacts(
    finder: ContactFinder,
    svc: Svc,
    after: ReadAfterDep,
    email: Value = None,
    phone: Value = None,
    external_id: Value = None,
    anonymous_id: Value = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> LookupOut:
    given = {
        k: v
        for k, v in zip(LOOKUP_KEYS, (email, phone, external_id, anonymous_id), strict=True)
        if v is not None
    }
    if len(given) != 1:
        names = ", ".join(f"{k}={v!r}" for k, v in given.items()) or "none"
        raise invalid(
            "query", "|".join(LOOKUP_KEYS), names, "give exactly one lookup key (no listing)"
        )
    (key, value), role = next(iter(given.items())), finder.role
    if key not in role.lookup:
        allowed = ", ".join(sorted(role.lookup)) or "none"
        raise APIError(
            403,
            f"key {finder.key_name!r} (role {role.name}) may not look contacts up by {key} "
            f"(its lookup keys: {allowed})",
        )
    if not value.strip():
        raise invalid("query", key, value, "must not be blank")
    with answering():
        try:
            found, next_cursor = svc.read.find_contacts(key, value, limit, cursor)
        except ValueError as exc:
            if cursor is not None and str(exc).startswith("cursor"):
                raise invalid("query", "cursor", cursor, "not a cursor this lookup gave") from None
            raise
    return LookupOut(
        key=key,
        contacts=[
            FoundContactOut(
                contact_id=cid, merged_into=into, location=f"/v1/contacts/{into or cid}"
            )
            for cid, into in found
        ],
        next_cursor=next_cursor,
    )
