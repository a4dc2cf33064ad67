"""The log: an append-only, partitioned sequence of events, on Kafka or embedded in SQLite."""

from interaction_store.log.base import (
    Appended,
    DeadLetter,
    EventLog,
    LogError,
    LogRecord,
    Position,
    open_log,
)

__all__ = ["Appended", "DeadLetter", "EventLog", "LogError", "LogRecord", "Position", "open_log"]
