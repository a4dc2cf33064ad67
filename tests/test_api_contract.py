"""The HTTP contract: the checked-in OpenAPI document matches the app, and schemathesis,
generating requests from that document against the live app (data in its views), finds no
server error and no response that breaks the document."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from interaction_store.api import create_app
from interaction_store.api.services import Services
from interaction_store.cli.keys import openapi_document
from interaction_store.codec import encode
from interaction_store.demo import generate
from interaction_store.ingest import Ingest
from interaction_store.log import open_log
from interaction_store.settings import Settings
from tests.api_support import access_config, auth, project

OPENAPI = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"


def test_the_checked_in_openapi_document_is_current() -> None:
    assert OPENAPI.exists(), "docs/openapi.json is missing: run `istore openapi`"
    assert OPENAPI.read_text(encoding="utf-8") == openapi_document(), (
        "docs/openapi.json is out of date: run `istore openapi` and commit it"
    )


@schemathesis.serializer("application/x-ndjson", "application/ndjson", "application/jsonl")
def _json_lines(context: object, value: object) -> bytes:
    """JSON Lines bodies are strings in the schema: sent as their UTF-8 bytes. Anything else
    (generated against the schema on purpose) as JSON, by the standard library, which writes
    integers of any size (orjson stops at 64 bits)."""
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


# schemathesis' lazy (fixture-based) loader does not work with pytest 9, so the app is made at
# import, over a folder of its own, and filled with data before the first request.
_DATA = Path(tempfile.mkdtemp(prefix="istore-contract-"))
_SETTINGS = Settings(backend="embedded", data_dir=_DATA)
_SERVICES = Services(_SETTINGS, access_config())
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_SETTINGS, _SERVICES))


@pytest.fixture(scope="module", autouse=True)
def demo_views() -> Iterator[None]:
    """A few contacts' demo year in the log, projected into the views."""
    with open_log(_SETTINGS) as log:
        docs = [encode(event) for event in generate(5, seed=3)]
        Ingest(log, parallel=False).publish_documents(docs, "contract-test")
    project(_SETTINGS)
    yield
    _SERVICES.close()
    shutil.rmtree(_DATA, ignore_errors=True)


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_generated_request_breaks_the_api(case: schemathesis.Case) -> None:
    case.call_and_validate(
        headers=auth("admin"),
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
