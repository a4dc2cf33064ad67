"""Bytes from outside never give a 500 or abort the CLI: each bad document is rejected alone
with its reason (and line), dead-lettered, and its neighbours are published. Cursors and
consistency tokens, whatever their text, are a 422 or a clear error, never a 500."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interaction_store.api import consistency
from interaction_store.projection.timeline import decode_cursor, encode_cursor
from interaction_store.settings import Settings
from tests.api_support import auth, client
from tests.factories import doc, raw
from tests.test_api_ingest import stored
from tests.test_publish import invoke

NUL_TRUNCATED = b'{"event_id": "5b0c\\u0000", "type": "email.op'
DEEP_ARRAY_ELEMENT = {**doc(), "payload": {"subject": [[[[]]]]}}
for _ in range(300):
    DEEP_ARRAY_ELEMENT = {"nested": DEEP_ARRAY_ELEMENT}
DEEP_LINE = b'{"type":"email.opened","payload":' + b"[" * 260 + b"]" * 260 + b"}"


def _answer(settings: Settings, body: bytes, media: str) -> Any:
    with client(settings) as c:
        r = c.post("/v1/events", content=body, headers={**auth("publisher"), "Content-Type": media})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("bad", [NUL_TRUNCATED, DEEP_LINE], ids=["nul-truncated", "deep"])
def test_a_bad_json_line_is_rejected_alone_over_http(
    embedded_settings: Settings, bad: bytes
) -> None:
    good = doc()
    body = orjson.dumps(good) + b"\n" + bad + b"\n" + raw()
    answer = _answer(embedded_settings, body, "application/x-ndjson")
    assert [e["status"] for e in answer["events"]] == ["accepted", "rejected", "accepted"]
    rejected = answer["events"][1]
    assert rejected["line"] == 2 and rejected["violations"][0]["rule"] in ("json", "max_depth")
    events, letters = stored(embedded_settings)
    assert good["event_id"] in events and len(events) == 2
    assert len(letters) == 1 and letters[0].headers["istore.source"].endswith(":2")


def test_an_array_element_nested_past_what_orjson_writes_is_rejected_alone(
    embedded_settings: Settings,
) -> None:
    good = doc()
    body = b"[" + orjson.dumps(good) + b"," + _dumps_deep(DEEP_ARRAY_ELEMENT) + b"]"
    answer = _answer(embedded_settings, body, "application/json")
    assert [e["status"] for e in answer["events"]] == ["accepted", "rejected"]
    assert answer["events"][1]["violations"][0]["rule"] == "max_depth"
    events, letters = stored(embedded_settings)
    assert list(events) == [good["event_id"]] and len(letters) == 1


def test_validate_answers_the_same_bytes(embedded_settings: Settings) -> None:
    body = orjson.dumps(doc()) + b"\n" + NUL_TRUNCATED + b"\n" + DEEP_LINE
    with client(embedded_settings) as c:
        r = c.post(
            "/v1/events:validate",
            content=body,
            headers={**auth("publisher"), "Content-Type": "application/x-ndjson"},
        )
    assert r.status_code == 200, r.text
    assert [e["status"] for e in r.json()["events"]] == ["valid", "rejected", "rejected"]


def test_publish_rejects_the_bad_lines_and_publishes_their_neighbours(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    goods = [doc() for _ in range(5)]
    lines = [
        orjson.dumps(goods[0]),
        NUL_TRUNCATED,
        orjson.dumps(goods[1]),
        DEEP_LINE,
        orjson.dumps(goods[2]),
        _dumps_deep(DEEP_ARRAY_ELEMENT),
        orjson.dumps(goods[3]),
        orjson.dumps(goods[4]),
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    # Batches of two: the later ones are validated in a worker process, as with large files.
    result = invoke(embedded_settings, "publish", "--batch-size", "2", str(path))
    assert result.exit_code == 0, result.output
    assert "accepted 5, duplicate 0, rejected 3 (of 8)" in result.output
    assert "events.jsonl:2" not in result.output  # the reason is shown, then the line's source
    events, letters = stored(embedded_settings)
    assert set(events) == {g["event_id"] for g in goods}
    assert sorted(letter.headers["istore.source"].rsplit(":", 1)[1] for letter in letters) == [
        "2",
        "4",
        "6",
    ]


def _dumps_deep(value: Any) -> bytes:

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 5000))
    try:
        return json.dumps(value, separators=(",", ":")).encode()
    finally:
        sys.setrecursionlimit(limit)


# --------------------------------------------------------------------------- cursors and tokens

EXTREMES = ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z"]


def _b64(value: Any) -> str:
    # The standard library writes integers of any size: a crafted token may hold them.
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize("moment", EXTREMES)
def test_a_cursor_at_an_instant_utc_cannot_hold_is_a_clear_error(moment: str) -> None:
    with pytest.raises(ValueError, match="not a cursor this timeline returned"):
        decode_cursor(_b64([moment, "5b0c8c8e-4a7b-4bd4-9b3e-1f6a3c1c2d3e"]))


@pytest.mark.parametrize("moment", EXTREMES)
def test_a_crafted_cursor_is_422_over_http(embedded_settings: Settings, moment: str) -> None:
    cursor = _b64([moment, "5b0c8c8e-4a7b-4bd4-9b3e-1f6a3c1c2d3e"])
    contact = "0f3a5a52-4b3c-4d6e-8f70-8192a3b4c5d6"
    with client(embedded_settings) as c:
        r = c.get(f"/v1/contacts/{contact}/timeline?cursor={cursor}", headers=auth("admin"))
    assert r.status_code == 422, r.text
    assert cursor in r.text


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.builds(_b64, _json_values),
        st.builds(
            lambda a, b: _b64([a, b]),
            st.text(max_size=40) | st.sampled_from(EXTREMES),
            st.text(max_size=40) | st.uuids().map(str),
        ),
    )
)
def test_any_cursor_text_decodes_or_says_why(text: str) -> None:
    try:
        at, event_id = decode_cursor(text)
    except ValueError as exc:
        assert "cursor" in str(exc)
        return
    assert decode_cursor(encode_cursor(at, event_id)) == (at, event_id)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.builds(lambda v: consistency.PREFIX + _b64(v), _json_values),
        st.builds(
            lambda d: consistency.PREFIX + _b64(d),
            st.dictionaries(
                st.builds(
                    lambda t, p: f"{t}/{p}",
                    st.text(max_size=12),
                    st.text(max_size=12) | st.integers().map(str),
                ),
                st.integers() | st.floats() | st.text(max_size=5),
                max_size=4,
            ),
        ),
    )
)
def test_any_token_text_parses_or_says_why(text: str) -> None:
    try:
        positions = consistency.parse(text)
    except consistency.BadToken as exc:
        assert "consistency token" in str(exc)
        return
    for (topic, partition), offset in positions.items():
        assert topic and 0 <= partition < 2**31 and 0 <= offset < 2**63


def test_hostile_cursors_and_tokens_never_give_a_500(embedded_settings: Settings) -> None:
    contact = "0f3a5a52-4b3c-4d6e-8f70-8192a3b4c5d6"
    quick = embedded_settings.model_copy(update={"consistency_timeout": 0.05})
    with client(quick) as c:

        @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(
            cursor=st.text(max_size=60) | st.builds(_b64, _json_values),
            token=st.builds(
                lambda d: consistency.PREFIX + _b64(d),
                st.dictionaries(
                    st.sampled_from(["istore.interactions.v1/0", "x/99999999999", "a/1"]),
                    st.integers(min_value=-1, max_value=2**70),
                    min_size=1,
                    max_size=2,
                ),
            )
            | st.text(max_size=40),
        )
        def check(cursor: str, token: str) -> None:
            r = c.get(
                f"/v1/contacts/{contact}/timeline",
                params={"cursor": cursor, "consistency": token},
                headers=auth("admin"),
            )
            assert r.status_code < 500 or r.status_code == 504, (r.status_code, r.text)

        check()
