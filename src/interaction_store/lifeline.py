"""Child processes that end with their parent: the projection worker of ``istore serve``, the
validation process of ``istore publish``, uvicorn's server processes. A parent killed with
SIGKILL runs no cleanup, so each child must notice by itself; else a restart runs two workers,
and a spawned child keeps multiprocessing's resource tracker alive for good (it exits when
the last process holding its pipe does)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
"""prctl option: the signal the kernel sends this process when its parent thread ends."""

GRACE = 5.0
"""Seconds a child has to stop on its own (a worker finishes its batch) before it is ended."""

ORPHANED_EXIT = 70
"""Exit status of a child that had to be ended after its grace (EX_SOFTWARE)."""


def die_with_parent(
    parent: int, signum: int = signal.SIGTERM, grace: float = GRACE, every: float = 0.5
) -> None:
    """Make this process get ``signum`` when ``parent`` (the pid that started it) ends, and
    end it ``grace`` seconds later if it is still running then.

    1. On Linux, ``prctl(PR_SET_PDEATHSIG)``: the kernel signals at once. It fires when the
       *thread* that started the child ends, so the parent starts children from a thread that
       lives as long as they are needed (the main thread, or the one that closes the pool).
    2. Everywhere, a daemon thread compares ``getppid()`` with ``parent`` every ``every``
       seconds: it catches a parent that died before step 1 (no signal comes then), and
       platforms without prctl. An orphan's parent becomes init or a subreaper, never the
       old pid again.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # step 2 still ends it, a little later
    threading.Thread(
        target=_watch, args=(parent, signum, grace, every), name="lifeline", daemon=True
    ).start()


def _watch(parent: int, signum: int, grace: float, every: float) -> None:
    while os.getppid() == parent:
        time.sleep(every)
    # The same signal the kernel sends, so the child's own handler stops it cleanly; a child
    # that does not stop in time (a batch stuck on a lock) is ended without cleanup.
    os.kill(os.getpid(), signum)
    time.sleep(grace)
    os._exit(ORPHANED_EXIT)
