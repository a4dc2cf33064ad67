"""The ingest API: ``POST /v1/events`` publishes a batch (a JSON array or JSON Lines) through
the same code path as ``istore publish``; ``POST /v1/events:validate`` checks one without
publishing anything.

Decisions a caller can rely on:

- Every event gets its own outcome, in input order: accepted (with its position), duplicate
  (with the stored copy's position), conflict (its id is stored with other content: the stored
  copy's position and where the dead letter went) or rejected (every violation, and where the
  dead letter went). A bad event never holds back its neighbours, and the answer is 200
  even when every event was rejected: the rejected ones were stored, in the dead-letter topic.
- The body as a whole can fail: too large (413, bytes or events), not JSON (400 with the line,
  column and character where it broke), not a non-empty array (422), a media type we do not
  read (415). Then nothing was published.
- A JSON body must be an array, also for one event (``[{...}]``): one shape of request, one
  shape of answer. In JSON Lines a line that is not valid JSON is rejected on its own, as in
  ``istore publish``; blank lines are skipped.
- ``text/plain`` is not read as JSON Lines: a JSON array sent with the wrong media type would
  become one dead letter per line of the array. Name the format you send.
- Dead letters keep where they came from: ``http:<key name>:<request id>:<n>``, ``n`` being
  the line number (JSON Lines) or the element's 1-based number in the array (JSON; the dead
  letter holds that element re-serialized, compact).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from interaction_store import custom_types
from interaction_store.api import consistency
from interaction_store.api.auth import Publisher, services
from interaction_store.api.errors import PROBLEM, APIError
from interaction_store.api.services import Services
from interaction_store.codec import MAX_EVENT_BYTES, EncodedEvent, EventRejected, decode
from interaction_store.events import EVENT_TYPES
from interaction_store.ingest import Outcome, Validated, validate_batch
from interaction_store.log.base import LogError, Position

router = APIRouter(tags=["ingest"])

JSON = "application/json"
LINES = ("application/x-ndjson", "application/ndjson", "application/jsonl")
"""Media types read as JSON Lines (one event per line)."""

SUPPORTED = (JSON, *LINES)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_BOM = b"\xef\xbb\xbf"


# --------------------------------------------------------------------------- response models


class LogPosition(BaseModel):
    topic: str
    partition: int
    offset: int


class ViolationOut(BaseModel):
    field: str = Field(description="The field that broke the rule, e.g. `occurred_at`")
    value: JsonValue = Field(description="The offending value (shortened when long)")
    rule: str = Field(description="The rule's name, e.g. `timezone_aware`")
    message: str


class EventOutcome(BaseModel):
    """What became of one event of the batch."""

    index: int = Field(description="0-based place in the batch (blank lines not counted)")
    line: int | None = Field(default=None, description="Line number (JSON Lines only)")
    status: Literal["accepted", "duplicate", "conflict", "rejected"] = Field(
        description="conflict: the event_id is stored with other content; the stored copy is "
        "kept, this one went to the dead-letter topic"
    )
    event_id: str | None = Field(default=None, description="As read from the event, if any")
    type: str | None = Field(default=None, description="Rejected events: the type, if known")
    position: LogPosition | None = Field(
        default=None,
        description="Accepted: where it was written; duplicate and conflict: where the stored "
        "copy is",
    )
    dead_letter: LogPosition | None = Field(
        default=None, description="Rejected and conflict: where the dead letter was written"
    )
    violations: list[ViolationOut] | None = Field(
        default=None, description="Rejected: every rule the event broke"
    )
    personal_data_dropped: bool | None = Field(
        default=None,
        description="true: its subject was erased, so it was stored without its personal "
        "fields (x-personal-data in the schema)",
    )


class IngestResult(BaseModel):
    request_id: str = Field(description="Also in each dead letter's source")
    accepted: int
    duplicates: int
    conflicts: int = Field(description="Events whose id is stored with other content")
    rejected: int
    consistency_token: str | None = Field(
        description="Pass to a read (`consistency_token=`) to read your writes; null when "
        "nothing was accepted or found stored"
    )
    events: list[EventOutcome]


class CheckedEvent(BaseModel):
    """What the validation said of one event."""

    index: int = Field(description="0-based place in the batch (blank lines not counted)")
    line: int | None = Field(default=None, description="Line number (JSON Lines only)")
    status: Literal["valid", "rejected"]
    event_id: str | None = None
    type: str | None = None
    violations: list[ViolationOut] | None = None


class ValidationResult(BaseModel):
    valid: int
    rejected: int
    events: list[CheckedEvent]


class IngestProblem(BaseModel):
    """An RFC 9457 problem document."""

    model_config = ConfigDict(extra="allow")
    type: str = "about:blank"
    title: str
    status: int
    detail: str = Field(description="What was wrong, with the value, and what to do")


class MalformedBody(IngestProblem):
    """A body that is not valid JSON says where it broke."""

    line: int | None = Field(default=None, description="1-based line where the JSON broke")
    column: int | None = Field(default=None, description="1-based column (characters) in it")
    position: int | None = Field(default=None, description="0-based character offset")


class TooLarge(IngestProblem):
    limit: int = Field(description="The limit that was exceeded")
    unit: Literal["bytes", "events"]
    count: int | None = Field(default=None, description="How many there were, when known")


class UnsupportedMediaType(IngestProblem):
    content_type: str | None = Field(description="The Content-Type received")
    supported: list[str]


def _problem(model: type[BaseModel], description: str) -> dict[str, Any]:
    # Inlined (not `model=`): errors are application/problem+json, never application/json.
    return {"description": description, "content": {PROBLEM: {"schema": model.model_json_schema()}}}


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _problem(MalformedBody, "The body is not valid JSON (where it broke)"),
    401: _problem(IngestProblem, "No API key, or an unknown one"),
    403: _problem(IngestProblem, "The key's role may not publish"),
    413: _problem(TooLarge, "The body has more bytes, or more events, than the limit"),
    415: _problem(UnsupportedMediaType, "A Content-Type other than JSON or JSON Lines"),
    422: _problem(IngestProblem, "Not a JSON array of events, or no events at all"),
}

_ENVELOPE: dict[str, Any] = {
    "type": "object",
    "description": "An event: the envelope; each type's payload is in streams/schemas",
    "required": [
        "event_id",
        "type",
        "schema_version",
        "occurred_at",
        "source",
        "subject",
        "payload",
    ],
    "properties": {
        "event_id": {"type": "string", "format": "uuid"},
        "type": {
            "type": "string",
            "description": "A built-in type, or a custom one registered in "
            "streams/schemas/custom/ (custom.<name>)",
            "anyOf": [{"enum": sorted(EVENT_TYPES)}, {"pattern": custom_types.NAME.pattern}],
        },
        "schema_version": {"type": "integer", "minimum": 1},
        "occurred_at": {"type": "string", "format": "date-time"},
        "recorded_at": {"type": "string", "format": "date-time"},
        "source": {"type": "string", "minLength": 1, "maxLength": 200},
        "subject": {
            "type": "object",
            "properties": {
                "contact_id": {"type": "string", "format": "uuid"},
                "lead_id": {"type": "string", "format": "uuid"},
                "anonymous_id": {"type": "string"},
                "account_id": {"type": "string", "format": "uuid"},
            },
        },
        "correlation": {"type": "object"},
        "payload": {"type": "object"},
    },
}

_LINES_BODY = {
    "schema": {
        "type": "string",
        "pattern": r"\S",  # at least one line that is not blank
        "description": "JSON Lines: one event document per line; blank lines are skipped",
    }
}

_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "description": "A batch of events: a JSON array, or JSON Lines",
        "content": {
            JSON: {
                "schema": {
                    "type": "array",
                    "minItems": 1,
                    # Any element is answered (a bad one as rejected), so the request schema
                    # may not refuse one: an event envelope, or anything else.
                    "items": {"anyOf": [_ENVELOPE, {}]},
                }
            },
            **{media: _LINES_BODY for media in LINES},
        },
    }
}


# --------------------------------------------------------------------------- reading a batch


@dataclass(frozen=True)
class Batch:
    """The events of one request, each as its own JSON document."""

    docs: list[bytes]
    lines: list[int] | None
    """JSON Lines: each document's line number; a JSON array: None."""
    items: list[Any] | None
    """A JSON array: its parsed elements (JSON Lines are parsed only when needed)."""

    def line_of(self, i: int) -> int | None:
        return self.lines[i] if self.lines is not None else None

    def event_id_of(self, i: int) -> str | None:
        """The event id of a document that validated (its canonical UUID form)."""
        if self.items is not None:
            item = self.items[i]
        else:
            try:
                item = orjson.loads(self.docs[i])
            except orjson.JSONDecodeError:
                # Should the validator read JSON that orjson refuses, ask it instead of failing.
                return str(decode(self.docs[i]).event_id)
        value = item.get("event_id") if isinstance(item, dict) else None
        if value is None:
            return None
        if isinstance(value, str) and len(value) == 36 and value == value.lower():
            return value  # validated, so already the canonical form (the common case)
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            return str(value)


def _media_type(request: Request) -> str:
    """The request's media type, one we read, or 415."""
    given = request.headers.get("content-type")
    media, _, params = (given or "").partition(";")
    media = media.strip().lower()
    if media not in SUPPORTED:
        shown = repr(given) if given else "none"
        raise APIError(
            415,
            f"Content-Type {shown} is not read here: send a JSON array as {JSON}, or JSON Lines "
            f"as {LINES[0]}",
            content_type=given,
            supported=list(SUPPORTED),
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            raise APIError(
                415,
                f"Content-Type {given!r}: events are read as UTF-8 only",
                content_type=given,
                supported=list(SUPPORTED),
            )
    return media


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to be over ``limit`` bytes: from
    Content-Length up front, and by counting what arrives (a chunked upload has no length)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise APIError(400, f"Content-Length {declared!r} is not a number of bytes")
        if int(declared) > limit:
            raise _body_too_large(limit, int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _body_too_large(limit, None)
        chunks.append(chunk)
    return b"".join(chunks)


def _body_too_large(limit: int, size: int | None) -> APIError:
    has = f"has {size} bytes" if size is not None else "is larger than that"
    return APIError(
        413,
        f"the body {has}; the limit is {limit} bytes (ISTORE_API_MAX_BODY_BYTES): send the "
        "events in smaller batches",
        limit=limit,
        unit="bytes",
        count=size,
    )


def parse_batch(body: bytes, media: str, max_batch: int) -> Batch:
    """Split a body into event documents (400, 413 or 422 when the body as a whole is bad)."""
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    if media == JSON:
        batch = _parse_array(body)
    else:
        docs: list[bytes] = []
        lines: list[int] = []
        for number, raw in enumerate(body.split(b"\n"), start=1):
            line = raw.strip()
            if line:
                docs.append(line)
                lines.append(number)
        batch = Batch(docs, lines, None)
    if not batch.docs:
        raise APIError(422, "the batch holds no events: send at least one")
    if len(batch.docs) > max_batch:
        raise APIError(
            413,
            f"the batch has {len(batch.docs)} events; the limit is {max_batch} per request "
            "(ISTORE_API_MAX_BATCH): send them in smaller batches",
            limit=max_batch,
            unit="events",
            count=len(batch.docs),
        )
    return batch


def _parse_array(body: bytes) -> Batch:
    if not body.strip():
        raise APIError(422, "the batch holds no events: send at least one")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise APIError(
            400,
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno} "
            f"(character {exc.pos})",
            line=exc.lineno,
            column=exc.colno,
            position=exc.pos,
        ) from None
    if not isinstance(parsed, list):
        kind = "object" if isinstance(parsed, dict) else type(parsed).__name__
        raise APIError(
            422,
            f"the body must be a JSON array of events, not a JSON {kind}: wrap a single event "
            f"in [ ], or send JSON Lines as {LINES[0]}",
        )
    return Batch([_element(item) for item in parsed], None, parsed)


def _element(item: Any) -> bytes:
    """One element of the array as its own document. orjson reads deeper nesting (1024) than
    it writes (254): such an element is written by the standard library instead, then fails
    validation (too deep) and goes to the dead-letter topic like any bad event."""
    try:
        return orjson.dumps(item)
    except orjson.JSONEncodeError:
        try:
            return json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()
        except (RecursionError, ValueError, TypeError):
            return repr(item).encode("utf-8", "replace")


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id", "")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


# --------------------------------------------------------------------------- the routes


def _position(p: Position) -> dict[str, Any]:
    return {"topic": p.topic, "partition": p.partition, "offset": p.offset}


def _where(batch: Batch, i: int) -> dict[str, Any]:
    line = batch.line_of(i)
    return {"index": i} if line is None else {"index": i, "line": line}


def _rejected(error: EventRejected) -> dict[str, Any]:
    found = error.to_dict()
    return {"event_id": found["event_id"], "type": found["type"], "violations": found["violations"]}


def _publish(
    svc: Services, body: bytes, media: str, key_name: str, request_id: str
) -> tuple[bytes, str | None]:
    """Parse and publish a batch; the answer's bytes and consistency token. Runs in the
    threadpool: parsing and publishing block."""
    batch = parse_batch(body, media, svc.settings.api_max_batch)
    # Validation (most of the CPU) runs before the request queues for the log: one request is
    # validated while others' batches are being written (together, see GroupCommit).
    checked = svc.ingest.validate(batch.docs)
    try:
        outcomes: Sequence[Outcome] = svc.committer.publish(
            Validated(batch.docs, checked, f"http:{key_name}:{request_id}", batch.lines)
        )
    except LogError as exc:
        # Part of the batch may be stored: sending it again is safe (those are duplicates).
        raise APIError(
            503,
            f"the log did not take the batch: {exc}. Send the batch again: events already "
            "stored are answered as duplicates",
            {"Retry-After": "5"},
        ) from exc
    counts = {"accepted": 0, "duplicate": 0, "conflict": 0, "rejected": 0}
    written: list[Position] = []
    events: list[dict[str, Any]] = []
    for i, outcome in enumerate(outcomes):
        counts[outcome.status] += 1
        entry = _where(batch, i)
        entry["status"] = outcome.status
        if outcome.status == "rejected":
            if outcome.error is not None:
                entry.update(_rejected(outcome.error))
            if outcome.position is not None:
                entry["dead_letter"] = _position(outcome.position)
        elif outcome.position is not None:
            entry["event_id"] = batch.event_id_of(i)
            entry["position"] = _position(outcome.position)
            written.append(outcome.position)
            if outcome.dead_letter is not None:
                entry["dead_letter"] = _position(outcome.dead_letter)
            if outcome.personal_data_dropped:
                entry["personal_data_dropped"] = True
        events.append(entry)
    for status, n in counts.items():
        svc.metrics.ingested.labels(status).inc(n)
    token = consistency.token_of(written)
    answer = {
        "request_id": request_id,
        "accepted": counts["accepted"],
        "duplicates": counts["duplicate"],
        "conflicts": counts["conflict"],
        "rejected": counts["rejected"],
        "consistency_token": token,
        "events": events,
    }
    return orjson.dumps(answer, default=str), token


@router.post(
    "/v1/events",
    summary="Publish a batch of events",
    description="Each event is answered on its own, in input order: accepted (its position), "
    "duplicate (the stored copy's position), conflict (the id is stored with other content: "
    "the stored copy's position, and the dead letter's) or rejected (every violation; it "
    "went to the dead-letter topic). A JSON body is an array of events (also for one "
    "event); JSON Lines is one event per line. The consistency token (also in "
    "`X-Consistency-Token`) makes a later read wait for these events.",
    response_model=IngestResult,
    responses={
        200: {
            "description": "Every event's outcome",
            "headers": {
                "X-Consistency-Token": {
                    "description": "The positions written (absent when none were)",
                    "schema": {"type": "string"},
                },
                "X-Request-ID": {
                    "description": "This request's id (as sent, or made up)",
                    "schema": {"type": "string"},
                },
            },
        },
        503: _problem(IngestProblem, "The log is unreachable: send the batch again later"),
        **_ERRORS,
    },
    openapi_extra=_REQUEST_BODY,
)
async def publish_events(request: Request, principal: Publisher) -> Response:
    svc = services(request)
    media = _media_type(request)
    body = await _read_body(request, svc.settings.api_max_body_bytes)
    request_id = _request_id(request)
    content, token = await run_in_threadpool(
        _publish, svc, body, media, principal.key_name, request_id
    )
    headers = {"X-Request-ID": request_id}
    if token is not None:
        headers["X-Consistency-Token"] = token
    return Response(content, media_type=JSON, headers=headers)


def _validate(body: bytes, media: str, max_batch: int) -> bytes:
    batch = parse_batch(body, media, max_batch)
    checked = validate_batch(batch.docs, datetime.now(UTC), MAX_EVENT_BYTES)
    events: list[dict[str, Any]] = []
    valid = 0
    for i, item in enumerate(checked):
        entry = _where(batch, i)
        if isinstance(item, EncodedEvent):
            valid += 1
            entry.update(
                status="valid", event_id=str(uuid.UUID(bytes=item.event_id)), type=item.type
            )
        else:
            entry["status"] = "rejected"
            entry.update(_rejected(item))
        events.append(entry)
    answer = {"valid": valid, "rejected": len(events) - valid, "events": events}
    return orjson.dumps(answer, default=str)


@router.post(
    "/v1/events:validate",
    summary="Check a batch of events without publishing it",
    description="The same parsing and validation as `POST /v1/events`; nothing is published "
    "and no dead letter is written.",
    response_model=ValidationResult,
    responses={
        200: {"description": "Every event: valid, or rejected with its violations"},
        **_ERRORS,
    },
    openapi_extra=_REQUEST_BODY,
)
async def validate_events(request: Request, principal: Publisher) -> Response:
    svc = services(request)
    media = _media_type(request)
    body = await _read_body(request, svc.settings.api_max_body_bytes)
    content = await run_in_threadpool(_validate, body, media, svc.settings.api_max_batch)
    return Response(content, media_type=JSON)
