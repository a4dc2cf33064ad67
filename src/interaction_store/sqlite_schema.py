"""Creating SQLite tables when several processes or threads open a fresh file at once."""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Callable
from pathlib import Path

from interaction_store.settings import private_file

_in_process = threading.Lock()


def create_schema(database: Path, create: Callable[[], None]) -> None:
    """Run ``create`` (``CREATE ... IF NOT EXISTS`` statements, and the eventsourcing tracking
    recorder's own setup) holding a lock file beside ``database``, so one connection at a time
    sets a file up. Without it, connections opening a fresh file together collide: a
    transaction that read the schema cannot write once another has committed (SQLite says
    "database is locked" at once, without waiting), and the tracking recorder's first-use
    row may be written twice."""
    lock = private_file(database.with_name(f".{database.name}.lock"))
    # flock excludes other processes; threads of this one share the open-file lock, so they
    # take a lock of their own first.
    with _in_process, lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            create()
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
