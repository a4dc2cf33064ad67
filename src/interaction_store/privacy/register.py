"""The erasure register: each erasure's receipt, and the suppression list (keyed hashes of the
addresses and numbers of erased people) that keeps their consent from coming back.

Both are tables of the view database (``istore_erasures``, ``istore_suppressed``) but no view:
a replay or a dropped view leaves them alone, as it does the dead letters.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from interaction_store.privacy.master import MasterKey
from interaction_store.views.base import ViewStore

ERASURES = "istore_erasures"
SUPPRESSED = "istore_suppressed"
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {ERASURES} (erasure_id TEXT PRIMARY KEY, "
    "contact_id TEXT NOT NULL UNIQUE, erased_at TEXT NOT NULL, receipt TEXT NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {SUPPRESSED} (address_hash TEXT PRIMARY KEY, "
    "erasure_id TEXT NOT NULL, erased_at TEXT NOT NULL)",
)
_HKDF_INFO = b"interaction-store suppression list v1"
_PHONE_NOISE = re.compile(r"[\s().\-/]")


def address_kind(channel: str) -> str:
    """Where a channel's contact points live: email addresses, or phone numbers (SMS, calls)."""
    return "email" if channel == "email" else "phone"


def normal_address(kind: str, address: str) -> str:
    """One spelling per address: e-mail case-folded, numbers without spaces and dashes."""
    text = address.strip()
    return text.casefold() if kind == "email" else _PHONE_NOISE.sub("", text)


class ErasureRegister:
    """Receipts and the suppression list in a view store. The hashes are HMAC-SHA256 under a
    key derived from the master key (HKDF), so the table alone does not tell whether an
    address is on it: only a process holding the master key can ask."""

    def __init__(
        self, store: ViewStore, master: MasterKey | Callable[[], MasterKey] | None = None
    ) -> None:
        """``master`` may be a function that loads it: a reader then needs it only once the
        list holds something."""
        self.store = store
        self._master = master
        self._derived: bytes | None = None
        store.ensure(list(_SCHEMA))

    def _key(self) -> bytes:
        if self._derived is None:
            master = self._master() if callable(self._master) else self._master
            if master is None:
                raise ValueError(
                    "the suppression list needs the master key: set ISTORE_MASTER_KEY or "
                    "ISTORE_MASTER_KEY_FILE"
                )
            hkdf = HKDF(hashes.SHA256(), 32, salt=None, info=_HKDF_INFO)
            self._derived = hkdf.derive(master.secret)
        return self._derived

    def address_hash(self, kind: str, address: str) -> str:
        text = f"{kind}:{normal_address(kind, address)}".encode()
        return hmac.new(self._key(), text, hashlib.sha256).hexdigest()

    # ------------------------------------------------------------------ receipts

    def receipt(self, erasure_id: str) -> dict[str, Any] | None:
        return self._one("erasure_id", erasure_id)

    def receipt_of(self, contact_id: str) -> dict[str, Any] | None:
        return self._one("contact_id", contact_id)

    def _one(self, column: str, value: str) -> dict[str, Any] | None:
        with self.store.reading() as c:
            c.execute(f"SELECT receipt FROM {ERASURES} WHERE {column} = %s", (value,))
            row = c.fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    def save(self, receipt: dict[str, Any]) -> dict[str, Any]:
        """Store a receipt; the one stored first for its contact wins (and is returned)."""
        with self.store.transaction() as c:
            c.execute(
                f"INSERT INTO {ERASURES} (erasure_id, contact_id, erased_at, receipt) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    receipt["erasure_id"],
                    receipt["contact_id"],
                    receipt["requested_at"],
                    orjson.dumps(receipt).decode(),
                ),
            )
        stored = self.receipt_of(receipt["contact_id"])
        assert stored is not None  # inserted above, or there before
        return stored

    # ------------------------------------------------------------------ suppression

    def suppress(
        self, addresses: Iterable[tuple[str, str]], erasure_id: str, when: datetime
    ) -> int:
        """Add (kind, address) pairs to the list; how many hashes it holds for them."""
        rows = sorted(
            {(self.address_hash(k, a), erasure_id, when.isoformat()) for k, a in addresses}
        )
        if rows:
            with self.store.transaction() as c:
                c.executemany(
                    f"INSERT INTO {SUPPRESSED} (address_hash, erasure_id, erased_at) "
                    "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    rows,
                )
        return len(rows)

    def suppressed(self, kind: str, address: str) -> tuple[str, str] | None:
        """(erasure id, when) if the address belonged to an erased person; None if not. With
        an empty list, no key is needed."""
        with self.store.reading() as c:
            c.execute(f"SELECT 1 FROM {SUPPRESSED} LIMIT 1")
            if c.fetchone() is None:
                return None
            c.execute(
                f"SELECT erasure_id, erased_at FROM {SUPPRESSED} WHERE address_hash = %s",
                (self.address_hash(kind, address),),
            )
            row = c.fetchone()
        return None if row is None else (str(row[0]), str(row[1]))
