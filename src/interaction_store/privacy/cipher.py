"""Sealing one personal field: AES-GCM under its subject's data key, bound to the subject,
the event and the field so a sealed value means nothing anywhere else."""

from __future__ import annotations

import binascii
import functools
import os
import threading
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


_TO_URL_SAFE = bytes.maketrans(b"+/", b"-_")
# Swapping both pairs turns base64url into base64, and a "+" or "/" (not base64url) into a
# character that strict decoding refuses.
_FROM_URL_SAFE = bytes.maketrans(b"-_+/", b"+/-_")
NONCES_PER_READ = 256


class _Nonces:
    """Random nonces read from the OS many at a time: one system call per 256 fields, not
    per field (it was a quarter of the cost of a seal). Forgotten in a forked child, which
    would otherwise hand out the parent's next nonces again under the same keys."""

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._at = 0

    def take(self) -> bytes:
        with self._lock:
            if self._at >= len(self._buffer):
                self._buffer = os.urandom(NONCE_BYTES * NONCES_PER_READ)
                self._at = 0
            at, buffer = self._at, self._buffer
            self._at = at + NONCE_BYTES
        return buffer[at : at + NONCE_BYTES]


_NONCES = _Nonces()
os.register_at_fork(after_in_child=_NONCES.forget)


@functools.lru_cache(maxsize=1024)
def _aead(key: bytes) -> AESGCM:
    # Setting up the cipher costs as much as the encryption of a short field; a batch seals
    # many fields under each subject's key.
    return AESGCM(key)


class SealedFieldError(ValueError):
    """A sealed field that does not open: damaged, cut short, not a sealed field at all, or
    sealed for another subject, event, field or key."""


def seal(key: bytes, subject: str, event_id: UUID, path: str, value: Any) -> str:
    """``value`` (any JSON value) encrypted under ``key`` for field ``path`` of event
    ``event_id`` about ``subject``, as ``enc:v1:<base64url>``. A fresh random nonce each time:
    sealing twice gives two different texts."""
    nonce = _NONCES.take()
    associated = _associated_data(subject, event_id, path)
    return SEALED_PREFIX + _b64url(
        nonce + _aead(key).encrypt(nonce, orjson.dumps(value), associated)
    )


# Named for the pair seal/open; it shadows the builtin here only, and this module opens no file.
def open(key: bytes, subject: str, event_id: UUID, path: str, text: object) -> Any:
    """The JSON value :func:`seal` sealed. Anything else (a clear value, a damaged, truncated
    or foreign text, another subject's key, another event or field) raises
    :class:`SealedFieldError`, naming the field and why."""
    where = _Where(path, event_id)  # formatted only for an error
    if not isinstance(text, str) or not text.startswith(SEALED_PREFIX):
        raise SealedFieldError(f"{where} is not sealed: it does not start with {SEALED_PREFIX!r}")
    body = text[len(SEALED_PREFIX) :]
    try:
        encoded = body.encode("ascii").translate(_FROM_URL_SAFE) + b"=" * (-len(body) % 4)
        raw = binascii.a2b_base64(encoded, strict_mode=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise SealedFieldError(
            f"{where}: sealed text is not base64url ({len(body)} characters)"
        ) from None
    if _b64url(raw) != body:
        # The last character's unused bits may differ and decode alike: one form per value.
        raise SealedFieldError(f"{where}: sealed text is not in canonical base64url")
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise SealedFieldError(
            f"{where}: sealed text is cut short ({len(raw)} bytes, at least "
            f"{NONCE_BYTES + TAG_BYTES})"
        )
    try:
        clear = _aead(key).decrypt(
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


class _Where:
    def __init__(self, path: str, event_id: UUID) -> None:
        self.path, self.event_id = path, event_id

    def __format__(self, spec: str) -> str:
        return f"field {self.path} of event {self.event_id}"


def _b64url(raw: bytes) -> str:
    # binascii and a translation: a third of the time of base64.urlsafe_b64encode.
    text = binascii.b2a_base64(raw, newline=False).translate(_TO_URL_SAFE)
    return text.rstrip(b"=").decode("ascii")


def _associated_data(subject: str, event_id: UUID, path: str) -> bytes:
    # A JSON array: unambiguous whatever characters the subject or path hold.
    return orjson.dumps(["istore-field:v1", subject, event_id, path])
