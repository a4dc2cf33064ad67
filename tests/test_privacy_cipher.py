"""Sealed fields: they open only with their key, subject, event and field; anything else is
one clear error. And the list of fields that get sealed."""

from __future__ import annotations

import base64
import os
import secrets
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interaction_store import privacy
from interaction_store.events import EVENT_TYPES
from interaction_store.privacy import SealedFieldError, is_sealed, personal_paths
from interaction_store.privacy.cipher import NONCE_BYTES, NONCES_PER_READ, SEALED_PREFIX
from interaction_store.privacy.fields import sealed_paths

KEY = secrets.token_bytes(32)
EVENT = uuid.UUID("5b0c3e2a-1f4d-4c6b-9a8e-7d2f1c0b9a81")
PATH = "payload.to_address"

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


def sealed(value: Any = "anna@example.com") -> str:
    return privacy.seal(KEY, "c1", EVENT, PATH, value)


@given(json_values)
def test_a_sealed_value_opens_to_itself(value: Any) -> None:
    text = sealed(value)
    assert text.startswith(SEALED_PREFIX) and is_sealed(text)
    assert text.isascii() and "=" not in text
    assert privacy.open(KEY, "c1", EVENT, PATH, text) == value


def test_sealing_twice_gives_two_texts() -> None:
    assert sealed() != sealed()


@pytest.mark.parametrize(
    ("key", "subject", "event_id", "path"),
    [
        (secrets.token_bytes(32), "c1", EVENT, PATH),  # another subject's key
        (KEY, "c2", EVENT, PATH),  # moved to another subject
        (KEY, "c1", uuid.uuid4(), PATH),  # moved to another event
        (KEY, "c1", EVENT, "payload.subject"),  # moved to another field
    ],
)
def test_a_sealed_value_is_bound_to_its_place(
    key: bytes, subject: str, event_id: uuid.UUID, path: str
) -> None:
    with pytest.raises(SealedFieldError, match=f"field {path} of event {event_id}"):
        privacy.open(key, subject, event_id, path, sealed())


@given(st.one_of(st.text(), st.text().map(lambda t: SEALED_PREFIX + t), json_values))
def test_anything_else_is_one_clear_error(text: Any) -> None:
    with pytest.raises(SealedFieldError, match=f"field {PATH} of event {EVENT}"):
        privacy.open(KEY, "c1", EVENT, PATH, text)


@given(json_values, st.data())
def test_a_flipped_bit_is_caught(value: Any, data: st.DataObject) -> None:
    text = sealed(value)
    raw = bytearray(base64.urlsafe_b64decode(text[len(SEALED_PREFIX) :] + "=="))
    bit = data.draw(st.integers(min_value=0, max_value=len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    damaged = SEALED_PREFIX + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(SealedFieldError, match="does not open"):
        privacy.open(KEY, "c1", EVENT, PATH, damaged)


@given(json_values, st.data())
def test_a_changed_or_cut_text_is_caught(value: Any, data: st.DataObject) -> None:
    text = sealed(value)
    at = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
    cut = text[:at]
    other = data.draw(st.characters().filter(lambda c: c != text[at]))
    changed = text[:at] + other + text[at + 1 :]
    for bad in (cut, changed):
        with pytest.raises(SealedFieldError):
            privacy.open(KEY, "c1", EVENT, PATH, bad)


def test_the_personal_fields_of_each_type() -> None:
    paths = personal_paths()
    assert set(paths) == set(EVENT_TYPES)
    # The envelope's anonymous visitor id is personal on every type.
    assert all("subject.anonymous_id" in p for p in paths.values())
    beyond_subject = {t: [p for p in ps if p != "subject.anonymous_id"] for t, ps in paths.items()}
    assert {t: ps for t, ps in beyond_subject.items() if ps} == {
        "email.sent": ["payload.preview_text", "payload.subject", "payload.to_address"],
        "email.bounced": ["payload.reason"],
        "email.blocked": ["payload.reason"],
        "sms.sent": ["payload.text", "payload.to_number"],
        "sms.failed": ["payload.reason"],
        "sms.replied": ["payload.text"],
        "push.sent": ["payload.body", "payload.title"],
        "form.submitted": ["payload.fields"],
        "chat.message": ["payload.text"],
        "activity.phone_call": ["payload.subject"],
        "activity.appointment": ["payload.subject"],
        "activity.task": ["payload.subject"],
        "activity.case_opened": ["payload.title"],
        "activity.case_resolved": ["payload.resolution"],
        "contact.created": [
            "payload.email",
            "payload.external_id",
            "payload.first_name",
            "payload.last_name",
            "payload.phone",
        ],
        "contact.updated": [
            "payload.email",
            "payload.external_id",
            "payload.first_name",
            "payload.last_name",
            "payload.phone",
        ],
        "identity.linked": ["payload.anonymous_id"],
        "identity.unlinked": ["payload.anonymous_id"],
        "consent.contact_point_changed": ["payload.contact_point"],
        "opportunity.lost": ["payload.reason"],
    }
    # Sealed: all of them but the anonymous visitor ids, which key events and view rows.
    sealed = {t: list(ps) for t, ps in sealed_paths().items() if ps}
    visitor_links = ("identity.linked", "identity.unlinked")
    expected = {t: ps for t, ps in beyond_subject.items() if ps and t not in visitor_links}
    assert sealed == expected


def nonce_of(text: str) -> bytes:
    return base64.urlsafe_b64decode(text[len(SEALED_PREFIX) :] + "==")[:NONCE_BYTES]


def test_nonces_do_not_repeat_across_reads_from_the_os() -> None:
    nonces = {nonce_of(sealed()) for _ in range(3 * NONCES_PER_READ + 5)}
    assert len(nonces) == 3 * NONCES_PER_READ + 5


def test_a_forked_child_does_not_reuse_its_parents_nonces() -> None:
    sealed()  # the parent has nonces read ahead
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: seal once, report the nonce, leave without pytest's cleanup
        os.write(write, nonce_of(sealed()))
        os._exit(0)
    os.close(write)
    child = os.read(read, NONCE_BYTES)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == NONCE_BYTES
    assert child != nonce_of(sealed())
