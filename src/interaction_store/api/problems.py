"""The problem documents the read API answers with, and the errors its routes raise: a 422
naming the parameter and its value, a 404 for an id no live view knows (see
:mod:`interaction_store.api.lookup`), a 503 while no view is live."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict

from interaction_store.api.errors import PROBLEM, APIError
from interaction_store.projection.registry import ViewError


class Problem(BaseModel):
    """An RFC 9457 problem document; some carry more members (``errors`` of a 422, ``behind``
    of a 504, the unknown id of a 404)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str


_DESCRIPTIONS = {
    401: "No API key, or an unknown one",
    403: "The key's role may not read this",
    404: "No live view knows this id (or this scoring model)",
    422: "A parameter is invalid: the problem names it and its value",
    503: "The view this route reads is not live yet (no projection has run)",
    504: "The views did not apply the consistency token's positions in time",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    # Inlined (not `model=`): errors are application/problem+json, never application/json.
    schema = Problem.model_json_schema()
    return {
        code: {"description": _DESCRIPTIONS[code], "content": {PROBLEM: {"schema": schema}}}
        for code in codes
    }


READ_ERRORS = problems(401, 403, 404, 422, 503, 504)


def invalid(where: str, name: str, value: object, message: str) -> APIError:
    """A 422 shaped like the app's validation errors: the parameter, its value, the problem."""
    return APIError(
        422,
        f"{where} parameter {name!r}: {message} (got {value!r})",
        errors=[{"in": where, "parameter": name, "value": value, "message": message}],
    )


@contextmanager
def answering() -> Iterator[None]:
    """A read with no live view to read is a 503 (the worker has not run yet)."""
    try:
        yield
    except ViewError as exc:
        raise APIError(503, str(exc), {"Retry-After": "5"}) from None


def unknown(kind: str, subject_id: str) -> APIError:
    named: dict[str, Any] = {f"{kind}_id": subject_id}
    return APIError(
        404,
        f"{kind} {subject_id} is unknown: no live view holds anything about it (check the id; "
        "after a write, pass its consistency token to read it)",
        None,
        **named,
    )
