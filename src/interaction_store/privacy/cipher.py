"""Sealing one personal field: AES-GCM under its subject's data key, bound to the subject,
the event and the field so a sealed value means nothing anywhere else."""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Any
from uuid import UUID

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEALED_PREFIX = "enc:v1:"
"""How a sealed field starts: recognisable in a document, and the version of what follows
(base64url without padding of nonce, ciphertext and tag)."""

NONCE_BYTES = 12
TAG_BYTES = 16
DATA_KEY_BYTES = 32


class SealedFieldError(ValueError):
    """A sealed field that does not open: damaged, cut short, not a sealed field at all, or
    sealed for another subject, event, field or key."""


def seal(key: bytes, subject: str, event_id: UUID, path: str, value: Any) -> str:
    """``value`` (any JSON value) encrypted under ``key`` for field ``path`` of event
    ``event_id`` about ``subject``, as ``enc:v1:<base64url>``. A fresh random nonce each time:
    sealing twice gives two different texts."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(
        nonce, orjson.dumps(value), _associated_data(subject, event_id, path)
    )
    return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")


# Named for the pair seal/open; it shadows the builtin here only, and this module opens no file.
def open(key: bytes, subject: str, event_id: UUID, path: str, text: object) -> Any:
    """The JSON value :func:`seal` sealed. Anything else (a clear value, a damaged, truncated
    or foreign text, another subject's key, another event or field) raises
    :class:`SealedFieldError`, naming the field and why."""
    where = f"field {path} of event {event_id}"
    if not isinstance(text, str) or not text.startswith(SEALED_PREFIX):
        raise SealedFieldError(f"{where} is not sealed: it does not start with {SEALED_PREFIX!r}")
    body = text[len(SEALED_PREFIX) :]
    try:
        raw = base64.b64decode(
            body.encode("ascii") + b"=" * (-len(body) % 4), altchars=b"-_", validate=True
        )
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise SealedFieldError(
            f"{where}: sealed text is not base64url ({len(body)} characters)"
        ) from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != body.encode("ascii"):
        # The last character's unused bits may differ and decode alike: one form per value.
        raise SealedFieldError(f"{where}: sealed text is not in canonical base64url")
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise SealedFieldError(
            f"{where}: sealed text is cut short ({len(raw)} bytes, at least "
            f"{NONCE_BYTES + TAG_BYTES})"
        )
    try:
        clear = AESGCM(key).decrypt(
            raw[:NONCE_BYTES], raw[NONCE_BYTES:], _associated_data(subject, event_id, path)
        )
    except InvalidTag:
        raise SealedFieldError(
            f"{where} does not open with the data key of subject {subject!r}: damaged, or "
            "sealed for another subject, event or field"
        ) from None
    try:
        return orjson.loads(clear)
    except orjson.JSONDecodeError:
        # Only a sealer that is not seal() gets here: the tag matched, the content is not JSON.
        raise SealedFieldError(f"{where}: opened, but what it holds is not JSON") from None


def is_sealed(value: object) -> bool:
    """Whether ``value`` looks sealed (a string with the prefix); not whether it opens."""
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def _associated_data(subject: str, event_id: UUID, path: str) -> bytes:
    # A JSON array: unambiguous whatever characters the subject or path hold.
    return orjson.dumps(["istore-field:v1", subject, event_id, path])
