"""Errors of the HTTP API, all answered as RFC 9457 problem documents
(``application/problem+json``): a status, a title, a detail naming the offending value."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

PROBLEM = "application/problem+json"

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class APIError(Exception):
    """Raise from a route: becomes a problem document with ``status`` and ``detail``, plus any
    ``extra`` members (e.g. ``limit`` for a 413, ``behind`` for a 504)."""

    def __init__(
        self,
        status: int,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def problem(
    status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status}
    body["detail"] = detail
    body.update(extra)
    return Response(
        orjson.dumps(body, default=str), status_code=status, media_type=PROBLEM, headers=headers
    )


def _location(loc: tuple[Any, ...] | list[Any]) -> tuple[str, str]:
    """(where, name) of a validation error: ("query", "limit"), ("path", "contact_id")..."""
    parts = [str(p) for p in loc]
    where = parts[0] if parts else "request"
    name = ".".join(parts[1:]) or where
    return where, name


def install(app: FastAPI) -> None:
    """Answer every error of the app as a problem document."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> Response:
        return problem(exc.status, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers) if exc.headers else None
        return problem(exc.status_code, str(exc.detail), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = []
        for error in exc.errors():
            where, name = _location(error.get("loc", ()))
            errors.append(
                {
                    "in": where,
                    "parameter": name,
                    "value": error.get("input"),
                    "message": error.get("msg", "invalid"),
                }
            )
        first = errors[0] if errors else {"in": "request", "parameter": "?", "message": "invalid"}
        detail = f"{first['in']} parameter {first['parameter']!r}: {first['message']}" + (
            f" (got {first['value']!r})" if first.get("value") is not None else ""
        )
        return problem(422, detail, errors=errors)
