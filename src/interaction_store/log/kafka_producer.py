"""The producer behind the Kafka log: each batch in one Kafka transaction (all or nothing for
read_committed readers), every wait bounded by ``ISTORE_KAFKA_PUBLISH_TIMEOUT``, and a new
producer after a failure, so a broker outage ends in an error and a later publish recovers.

Each live producer has its own ``transactional.id``: the stem (``ISTORE_KAFKA_TRANSACTIONAL_ID``,
default ``istore-<host>``) plus the first slot number free among the host's processes, claimed
with a lock file in the system's temporary folder (not the data folder: processes with data
folders of their own would all take slot 0). Two concurrent publishers never share an id (they
would fence each other), and a publisher restarted after a crash takes its predecessor's id
again, which aborts a transaction the predecessor left open at once, not after its timeout.
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from interaction_store.log.base import LogError, Position
from interaction_store.settings import Settings


@dataclass(frozen=True, slots=True)
class Send:
    """One record to write: where, and what."""

    topic: str
    value: bytes
    key: bytes | None
    partition: int | None
    headers: list[tuple[str, bytes]]


class InDoubt(LogError):
    """The commit of a batch was sent but not confirmed in time: the batch is either all
    stored or not at all. ``positions`` are where its records were written, in order (one is
    enough to tell which, once a new producer has finished the transaction)."""

    def __init__(self, message: str, positions: list[Position]) -> None:
        super().__init__(message)
        self.positions = positions


# kafka-python ships no type hints, so mypy sees KafkaProducer as Any, and --strict refuses a
# subclass of Any (misc); the subclass only adds bounded waits around its own methods.
class _Producer(KafkaProducer):  # type: ignore[misc]
    """kafka-python's producer with bounded transaction commit and abort: its own methods
    wait for the coordinator without a timeout (forever while the broker is down)."""

    def commit_within(self, seconds: float) -> bool:
        result = self._transaction_manager.begin_commit()
        self._sender.wakeup()
        return bool(result.wait(timeout_ms=max(0.0, seconds) * 1000))

    def abort_within(self, seconds: float) -> bool:
        result = self._transaction_manager.begin_abort()
        self._sender.wakeup()
        return bool(result.wait(timeout_ms=max(0.0, seconds) * 1000))

    def abandon(self) -> None:
        """Stop without sending what is buffered. ``close(timeout=0)`` flushes first and,
        with nothing acknowledged, raises before it stops the sender thread."""
        self._unregister_cleanup()
        if self._sender is not None:
            self._sender.force_close()
            self._sender.join(1.0)
        if self._metrics:
            self._metrics.close()
        self._closed = True

    def init_within(self, seconds: float) -> None:
        # init_transactions() waits max_block_ms, read when called.
        self.config["max_block_ms"] = max(1, int(seconds * 1000))
        self.init_transactions()


class TransactionalIdSlot:
    """A transactional id held by this process while it lives (a lock file per slot)."""

    def __init__(self, folder: Path, stem: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
        self._file: IO[bytes] | None = None
        slot = 0
        while True:
            path = folder / f"{safe}-{slot}.lock"
            handle = path.open("ab")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                slot += 1
                continue
            self._file = handle
            self.transactional_id = f"{stem}-{slot}"
            return

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the lock
            self._file = None


SLOTS = Path(tempfile.gettempdir()) / "istore-kafka-producers"
"""Where the slot lock files are: one folder per host, whatever the data folders."""


def default_stem(settings: Settings) -> str:
    return settings.kafka_transactional_id or f"istore-{socket.gethostname()}"


class Publisher:
    """Sends batches of records, each acknowledged in full or failed within the bound."""

    def __init__(self, settings: Settings, config: dict[str, object]) -> None:
        self.settings = settings
        self.config = config
        self.timeout = settings.kafka_publish_timeout
        self.transactional = settings.kafka_transactions
        self._slot: TransactionalIdSlot | None = None
        self._producer: _Producer | None = None
        self.failure: str | None = None
        """Why the last publish failed; None once one succeeded again."""
        self.failing_since: float | None = None

    @property
    def transactional_id(self) -> str | None:
        if not self.transactional:
            return None
        if self._slot is None:
            self._slot = TransactionalIdSlot(SLOTS, default_stem(self.settings))
        return self._slot.transactional_id

    INIT_ATTEMPT_S = 10.0
    """How long one producer may take to start its transactions before a fresh one is tried:
    kafka-python keeps asking a transaction coordinator that died rather than looking up the
    new one (seen with a node of three killed: no answer in 110 s, where a fresh producer
    finds the new coordinator once the broker's session timeout, 9 s, has passed)."""

    def producer(self, seconds: float | None = None) -> _Producer:
        """The producer, made (and its transactions initialised) within ``seconds``."""
        seconds = self.timeout if seconds is None else seconds
        deadline = time.monotonic() + seconds
        while True:
            left = max(0.001, deadline - time.monotonic())
            attempt = min(left, self.INIT_ATTEMPT_S) if self.transactional else left
            try:
                producer = self._make(attempt)
            except LogError:
                if time.monotonic() + 0.5 >= deadline:
                    raise
                time.sleep(0.5)
                continue
            # Sends then wait for metadata or buffer space as long as the whole bound allows.
            producer.config["max_block_ms"] = max(1, int(seconds * 1000))
            return producer

    def _make(self, seconds: float) -> _Producer:
        if self._producer is None:
            request_ms = max(1000, min(30_000, int(self.timeout * 1000)))
            try:
                producer = _Producer(
                    **self.config,
                    acks="all",
                    enable_idempotence=True,
                    transactional_id=self.transactional_id,
                    # A transaction never outlives one publish; should this process die in
                    # one, readers wait at most this long for the broker to abort it.
                    transaction_timeout_ms=int(self.timeout * 1000) + 5000,
                    linger_ms=5,
                    batch_size=512 * 1024,
                    max_request_size=8 * 1024 * 1024,
                    max_block_ms=max(1, int(seconds * 1000)),
                    bootstrap_timeout_ms=max(1, int(seconds * 1000)),
                    # The bound is kept by waiting at most until the deadline, not by these
                    # two (kafka-python wants delivery above linger + request timeout).
                    request_timeout_ms=request_ms,
                    delivery_timeout_ms=request_ms + 5 + int(self.timeout * 1000),
                )
            except KafkaError as exc:
                raise self._failed(self._unreachable(exc)) from exc
            self._producer = producer
        if self.transactional:
            try:
                self._producer.init_within(seconds)
            except KafkaError as exc:
                self._discard()
                raise self._failed(self._unreachable(exc)) from exc
        return self._producer

    def _unreachable(self, exc: Exception) -> LogError:
        return LogError(
            f"cannot reach Kafka at {self.settings.kafka_bootstrap_servers} within "
            f"{self.timeout:g} s (ISTORE_KAFKA_PUBLISH_TIMEOUT): {type(exc).__name__}: {exc}. "
            "Is the broker running? (`istore kafka status`)"
        )

    def _failed(self, error: LogError) -> LogError:
        self.failure = str(error)
        if self.failing_since is None:
            self.failing_since = time.time()
        return error

    def _discard(self) -> None:
        """Drop a producer that failed: its buffers and transaction state cannot be trusted,
        and closing it must not wait for a broker that does not answer."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            producer.abandon()

    def partitions_for(self, topic: str) -> int:
        try:
            return len(self.producer().partitions_for(topic))
        except KafkaError as exc:
            raise LogError(
                f"topic {topic!r} is not on {self.settings.kafka_bootstrap_servers} "
                f"({exc}): run `istore topics ensure`"
            ) from exc

    def send(self, records: Sequence[Send], what: str) -> list[Position]:
        """Write ``records`` (in one transaction) and return their positions, or raise
        :class:`LogError` within the bound with none of them visible to read_committed
        readers, or :class:`InDoubt` when the commit's outcome is unknown.

        1. a producer, new after a failure (initialising it fences and finishes the old one's
           transaction);
        2. begin the transaction, send every record;
        3. flush: wait for every acknowledgement, at most until the deadline;
        4. commit, at most until the deadline; on any failure before, abort.
        """
        deadline = time.monotonic() + self.timeout
        producer = self.producer()
        futures: list[Any] = []
        try:
            if self.transactional:
                producer.begin_transaction()
            for r in records:
                futures.append(
                    producer.send(
                        r.topic, value=r.value, key=r.key, partition=r.partition, headers=r.headers
                    )
                )
            producer.flush(timeout=max(0.0, deadline - time.monotonic()))
            positions = []
            for future in futures:
                if not future.is_done:
                    raise KafkaTimeoutError("not acknowledged in time")
                meta = future.get(timeout=0)
                positions.append(Position(meta.topic, meta.partition, meta.offset))
        except KafkaError as exc:
            if self.transactional:
                # If this fails, the next producer's initialisation aborts it.
                with contextlib.suppress(KafkaError):
                    producer.abort_within(max(0.0, deadline - time.monotonic()))
            self._discard()
            stored = "none of them was stored" if self.transactional else "some may be stored"
            raise self._failed(
                LogError(
                    f"Kafka at {self.settings.kafka_bootstrap_servers} did not acknowledge "
                    f"{what} within {self.timeout:g} s (ISTORE_KAFKA_PUBLISH_TIMEOUT): "
                    f"{type(exc).__name__}: {exc}; {stored}"
                )
            ) from exc
        if self.transactional:
            try:
                committed = producer.commit_within(max(0.0, deadline - time.monotonic()))
            except KafkaError as exc:
                self._discard()
                raise self._failed(
                    LogError(f"Kafka refused to commit {what}: {exc}; none of them was stored")
                ) from exc
            if not committed:
                self._discard()
                raise self._failed(
                    InDoubt(
                        f"Kafka at {self.settings.kafka_bootstrap_servers} did not confirm "
                        f"the commit of {what} within {self.timeout:g} s "
                        "(ISTORE_KAFKA_PUBLISH_TIMEOUT)",
                        positions,
                    )
                )
        self.failure = self.failing_since = None
        return positions

    def check(self, seconds: float) -> None:
        """Raise :class:`LogError` unless a producer is ready to publish: after a failed
        publish, a new one must reach the broker (and its transaction coordinator) within
        ``seconds``; that is also how publishing recovers without a request."""
        if self.failure is None and self._producer is not None:
            return
        try:
            self.producer(seconds)
        except LogError as exc:
            since = (
                f" since {time.strftime('%H:%M:%S', time.localtime(self.failing_since))}"
                if self.failing_since is not None
                else ""
            )
            raise LogError(f"publishing fails{since}: {exc}") from exc
        self.failure = self.failing_since = None

    def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            # Everything sent was flushed (or failed) by send(): no reason to wait long.
            with contextlib.suppress(KafkaError):
                producer.close(timeout=min(5.0, self.timeout))
        if self._slot is not None:
            self._slot.release()
            self._slot = None
