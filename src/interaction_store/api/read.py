"""The read API: timelines, consent, send decisions, lead scores, positions (to be written)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["read"])
