"""Erasure (GDPR Art. 17): ``DELETE /v1/contacts/{id}`` erases a contact and answers its
receipt; ``GET /v1/erasures/{id}`` reads a receipt again. Roles with ``erase`` only."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from interaction_store.api.auth import Eraser
from interaction_store.api.errors import APIError
from interaction_store.api.parameters import Svc, id_path
from interaction_store.api.problems import problems
from interaction_store.erasure import UnknownSubject

router = APIRouter(tags=["privacy"])


class ErasureEvent(BaseModel):
    type: str
    event_id: str
    topic: str
    partition: int
    offset: int


class Receipt(BaseModel):
    """What an erasure destroyed and where, what it left pending, and its event's position."""

    model_config = ConfigDict(extra="allow")

    erasure_id: str
    contact_id: str
    requested_by: str = Field(description="The API key (or CLI user) that asked")
    requested_at: str
    event: ErasureEvent
    erased: dict[str, Any] = Field(description="The contacts, leads and count of visitor ids")
    destroyed: list[dict[str, Any]]
    suppressed: dict[str, Any]
    pending: list[str] = Field(description="What this erasure could not reach yet, and why")


@router.delete(
    "/v1/contacts/{contact_id}",
    summary="Erase a contact: its data keys, its personal fields in every view, its dead letters",
    response_model=Receipt,
    responses=problems(401, 403, 404, 422),
)
async def erase_contact(
    contact_id: Annotated[UUID, id_path("contact")], caller: Eraser, svc: Svc
) -> Receipt:
    """Erasing a contact erased before answers the same receipt (200)."""
    try:
        receipt, _ = await run_in_threadpool(
            lambda: svc.eraser.erase(str(contact_id), f"api key {caller.key_name}")
        )
    except UnknownSubject as exc:
        raise APIError(404, str(exc), None, contact_id=str(contact_id)) from None
    return Receipt.model_validate(receipt)


@router.get(
    "/v1/erasures/{erasure_id}",
    summary="An erasure's receipt",
    response_model=Receipt,
    responses=problems(401, 403, 404, 422),
)
async def erasure_receipt(
    erasure_id: Annotated[UUID, Path(description="The erasure's id (a UUID)")],
    caller: Eraser,
    svc: Svc,
) -> Receipt:
    receipt = await run_in_threadpool(lambda: svc.eraser.register.receipt(str(erasure_id)))
    if receipt is None:
        raise APIError(
            404,
            f"erasure {erasure_id} is unknown: no receipt has that id",
            None,
            erasure_id=str(erasure_id),
        )
    return Receipt.model_validate(receipt)
