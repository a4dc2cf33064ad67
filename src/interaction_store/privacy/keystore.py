"""The key store: one data key per data subject, kept wrapped by the master key, destroyed to
erase the subject. The abstract store wraps, checks and caches; each backend module stores."""

from __future__ import annotations

import importlib
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from interaction_store.privacy.cipher import DATA_KEY_BYTES, NONCE_BYTES
from interaction_store.privacy.master import MasterKey, MasterKeyError, load_master_key
from interaction_store.settings import Settings

CHECK_LABEL = b"interaction-store master key check"
"""Sealed under the master key into the store when it is made: a master key that does not open
it is not the one the store's keys were wrapped with."""


class KeyStoreError(ValueError):
    """The key store holds something the master key cannot open."""


class SubjectErased(KeyError):
    """A data key was asked for a subject whose key was destroyed: its personal data is gone,
    and new personal data about it is not sealed under a fresh key."""

    def __init__(self, subject: str, destroyed_at: datetime) -> None:
        super().__init__(subject)
        self.subject = subject
        self.destroyed_at = destroyed_at

    def __str__(self) -> str:
        return f"subject {self.subject!r} was erased at {self.destroyed_at.isoformat()}"


@dataclass(frozen=True, slots=True)
class StoredKey:
    """One row of a backend: a wrapped key, or a tombstone (no key, when it was destroyed)."""

    wrapped: bytes | None
    destroyed_at: datetime | None


@dataclass(slots=True)
class KeyLookup:
    """The answer for many subjects at once: each asked subject is in ``keys`` or ``erased``,
    or (from :meth:`KeyStore.get_many` only) in neither when it never had a key."""

    keys: dict[str, bytes] = field(default_factory=dict)
    erased: dict[str, datetime] = field(default_factory=dict)


_FOREVER = float("inf")


class KeyStore(ABC):
    """Data keys by subject. Thread-safe; several processes may share one store.

    Caching: each process keeps up to ``cache_size`` keys for at most ``cache_seconds``
    (settings ``key_cache_size``, ``key_cache_seconds``). A destroy here is seen here at once;
    another process may go on using a key it holds for up to ``cache_seconds``. What it seals
    in that time is sealed under a key that no longer exists, so it is as erased as the rest.
    Tombstones are cached without limit of time: an erased subject never comes back."""

    where: str
    """The store, as a user would find it (a file, a table), for errors."""

    def __init__(
        self,
        master: MasterKey,
        cache_size: int = 50_000,
        cache_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Backends call this once their tables exist: it checks the master key."""
        self.master = master
        self._kek = AESGCM(master.secret)
        self._cache: OrderedDict[str, tuple[bytes | datetime, float]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._check_master_key()

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings, master: MasterKey) -> KeyStore:
        """The store the settings describe, its keys wrapped by ``master``."""

    # ------------------------------------------------------------------ what callers use

    def get(self, subject: str) -> bytes | None:
        """The subject's data key; None if it has none (never made, or destroyed: see
        :meth:`destroyed`)."""
        return self.get_many([subject]).keys.get(subject)

    def get_many(self, subjects: Iterable[str]) -> KeyLookup:
        """The keys and tombstones of ``subjects``, in one read of the store for those not in
        the cache."""
        out = KeyLookup()
        missing = self._from_cache(subjects, out)
        if missing:
            self._add_rows(self._fetch(missing), out)
        return out

    def get_or_create(self, subject: str) -> bytes:
        """The subject's data key, made now if it has none. Raises :class:`SubjectErased`
        for a subject whose key was destroyed."""
        found = self.get_or_create_many([subject])
        if subject in found.erased:
            raise SubjectErased(subject, found.erased[subject])
        return found.keys[subject]

    def get_or_create_many(self, subjects: Iterable[str]) -> KeyLookup:
        """Every subject's key, making the missing ones; erased subjects come back in
        ``erased``, never with a new key.

        1. read the cache, then the store, for all of them;
        2. insert a new wrapped key for each still missing, doing nothing where another
           process inserted one (or a tombstone) meanwhile;
        3. read those back: whoever inserted first, every process ends with the same key."""
        unique = list(dict.fromkeys(subjects))  # read once: it may be a generator
        out = self.get_many(unique)
        new = [s for s in unique if s not in out.keys and s not in out.erased]
        if new:
            self._insert([(s, self._wrap(s, secrets.token_bytes(DATA_KEY_BYTES))) for s in new])
            self._add_rows(self._fetch(new), out)
            lost = [s for s in new if s not in out.keys and s not in out.erased]
            if lost:  # only a backend that drops inserts gets here
                raise KeyStoreError(f"{self.where}: keys of {lost[:3]} were not stored")
        return out

    def destroy(self, subject: str) -> bool:
        """Erase the subject: delete its wrapped key, leaving a tombstone (subject and when),
        so later data about it reads as erased. True if a key was destroyed; False if it had
        none (a tombstone is written all the same) or was erased already (the first time is
        kept)."""
        had_key, when = self._tombstone(subject, datetime.now(UTC))
        self._remember(subject, when)
        return had_key

    def destroyed(self, subject: str) -> datetime | None:
        """When the subject's key was destroyed; None if it was not."""
        return self.get_many([subject]).erased.get(subject)

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ what backends store

    @abstractmethod
    def _fetch(self, subjects: list[str]) -> dict[str, StoredKey]:
        """The rows of those subjects that exist."""

    @abstractmethod
    def _insert(self, rows: list[tuple[str, bytes]]) -> None:
        """Insert (subject, wrapped key) rows, ignoring subjects that have a row already."""

    @abstractmethod
    def _tombstone(self, subject: str, when: datetime) -> tuple[bool, datetime]:
        """Replace the subject's row by a tombstone at ``when`` (keeping an older tombstone's
        time) and make the wrapped key unrecoverable from the store's files as far as the
        backend can. Returns (whether a key was there, the tombstone's time)."""

    @abstractmethod
    def _check_value(self, candidate: bytes) -> bytes:
        """The store's master key check value: ``candidate`` stored if it has none yet."""

    # ------------------------------------------------------------------ wrapping and cache

    def _check_master_key(self) -> None:
        nonce = secrets.token_bytes(NONCE_BYTES)
        stored = self._check_value(nonce + self._kek.encrypt(nonce, CHECK_LABEL, b"kek-check"))
        try:
            opened = self._kek.decrypt(stored[:NONCE_BYTES], stored[NONCE_BYTES:], b"kek-check")
        except InvalidTag:
            opened = b""
        if opened != CHECK_LABEL:
            raise MasterKeyError(
                f"the master key from {self.master.origin} does not open the key store "
                f"{self.where}: its keys were wrapped with another master key. Set it to the "
                "master key the store was made with (a new master key cannot read personal "
                "data sealed before it)"
            )

    def _wrap(self, subject: str, key: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._kek.encrypt(nonce, key, _wrap_data(subject))

    def _unwrap(self, subject: str, wrapped: bytes) -> bytes:
        try:
            return self._kek.decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _wrap_data(subject)
            )
        except InvalidTag:
            # The check value opened, so the master key is right: this row is damaged, or was
            # copied from another subject's.
            raise KeyStoreError(
                f"{self.where}: the data key of subject {subject!r} does not open with the "
                f"master key from {self.master.origin}: its row is damaged or was moved from "
                "another subject. Restore the row from a backup, or destroy the key"
            ) from None

    def _add_rows(self, rows: dict[str, StoredKey], out: KeyLookup) -> None:
        for subject, row in rows.items():
            if row.wrapped is not None:
                key = self._unwrap(subject, row.wrapped)
                out.keys[subject] = key
                self._remember(subject, key)
            elif row.destroyed_at is not None:
                out.erased[subject] = row.destroyed_at
                self._remember(subject, row.destroyed_at)

    def _from_cache(self, subjects: Iterable[str], out: KeyLookup) -> list[str]:
        """Fill ``out`` from the cache; the subjects it did not hold, each once."""
        missing: list[str] = []
        now = self._clock()
        with self._lock:
            for subject in dict.fromkeys(subjects):
                hit = self._cache.get(subject)
                if hit is None or hit[1] < now:
                    missing.append(subject)
                    continue
                self._cache.move_to_end(subject)
                value = hit[0]
                if isinstance(value, bytes):
                    out.keys[subject] = value
                else:
                    out.erased[subject] = value
        return missing

    def _remember(self, subject: str, value: bytes | datetime) -> None:
        if self._cache_size == 0:
            return
        if isinstance(value, bytes):
            if self._cache_seconds == 0:
                return
            expires = self._clock() + self._cache_seconds
        else:
            expires = _FOREVER
        with self._lock:
            self._cache[subject] = (value, expires)
            self._cache.move_to_end(subject)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)


def _wrap_data(subject: str) -> bytes:
    # Binds a wrapped key to its subject: a row copied onto another subject does not open.
    return orjson.dumps(["istore-data-key:v1", subject])


_BACKENDS = {
    "sqlite": "interaction_store.privacy.sqlite:SQLiteKeyStore",
    "postgres": "interaction_store.privacy.postgres:PostgresKeyStore",
}


def open_key_store(settings: Settings, master: MasterKey | None = None) -> KeyStore:
    """The key store the settings choose, beside the views: PostgreSQL when
    ``ISTORE_POSTGRES_DSN`` is set, else ``<data_dir>/keys.sqlite``; its master key from the
    settings (see :func:`~interaction_store.privacy.master.load_master_key`) unless given."""
    kind = "postgres" if settings.postgres_dsn is not None else "sqlite"
    module_name, _, cls_name = _BACKENDS[kind].partition(":")
    cls: type[KeyStore] = getattr(importlib.import_module(module_name), cls_name)
    return cls.from_settings(settings, master or load_master_key(settings))
