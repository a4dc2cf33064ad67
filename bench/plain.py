"""The store without encryption, for the benches' baselines: a sealer that seals nothing and
an opener that opens nothing, and a master key for settings that need one.

The store has no switch to publish in clear (``Ingest`` seals by default, the projection
worker opens by default); a bench that measures what sealing costs passes these instead, so
both sides of its ratio run the same code but for the cipher and the key store.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence

from pydantic import SecretStr

from interaction_store.codec import EncodedEvent
from interaction_store.events import InteractionEvent
from interaction_store.privacy.keystore import KeyStore
from interaction_store.privacy.sealing import Opener, Sealer


def _no_key_store() -> KeyStore:
    raise AssertionError("the plain (unsealed) path never opens a key store")


class PlainSealer(Sealer):
    """Publishes every field as sent: the baseline of the sealed publish path."""

    def __init__(self) -> None:
        super().__init__(_no_key_store)

    def seal(self, records: Sequence[EncodedEvent]) -> tuple[list[EncodedEvent], set[int]]:
        return list(records), set()


class PlainOpener(Opener):
    """Hands events to the views as they are in the log: the baseline of the worker that opens
    sealed fields."""

    def __init__(self) -> None:
        super().__init__(_no_key_store)

    def open_events(self, events: Sequence[InteractionEvent]) -> list[InteractionEvent]:
        return list(events)


def new_master_key() -> SecretStr:
    """A fresh master key (32 random bytes, base64), for a bench's throwaway store: on Kafka
    or PostgreSQL the store starts with none (the embedded one would make a file)."""
    return SecretStr(base64.b64encode(os.urandom(32)).decode())
