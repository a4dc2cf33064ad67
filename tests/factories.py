"""Event documents for tests: valid by default, with any field overridden."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from interaction_store.codec import decode
from interaction_store.events import InteractionEvent

BASE = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

PAYLOADS: dict[str, dict[str, Any]] = {
    "email.sent": {"subject": "Spring webinar", "preview_text": "Join us on March 12"},
    "email.opened": {},
    "email.clicked": {"url": "https://example.com/webinar"},
    "email.bounced": {"bounce_type": "hard", "reason": "mailbox unknown"},
    "sms.sent": {"text": "Your code is 1234"},
    "web.page_viewed": {"url": "https://example.com/pricing", "seconds_on_page": 42},
    "contact.created": {"first_name": "Ada", "email": "ada@example.com"},
    "consent.preferences_changed": {"allow_bulk_email": False},
}


def doc(
    type: str = "email.opened",
    contact: uuid.UUID | str | None = None,
    at: datetime | int = 0,
    payload: dict[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A valid event document; ``at`` is minutes after BASE or a datetime."""
    when = at if isinstance(at, datetime) else BASE + timedelta(minutes=at)
    d: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "type": type,
        "schema_version": 2 if type == "email.bounced" else 1,
        "occurred_at": when.isoformat(),
        "source": "tests",
        "subject": {"contact_id": str(contact or uuid.uuid4())},
        "payload": PAYLOADS.get(type, {}) if payload is None else payload,
    }
    d.update(overrides)
    return d


def raw(**kwargs: Any) -> bytes:
    return orjson.dumps(doc(**kwargs))


def event(**kwargs: Any) -> InteractionEvent:
    return decode(raw(**kwargs))
