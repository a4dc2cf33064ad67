"""The ingest API: POST /v1/events and POST /v1/events:validate (to be written)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["ingest"])
