"""``istore`` for the crash-safety test, with a consumer-group session timeout of 6 s (the
broker's minimum) instead of kafka-python's 45 s, and stack dumps on SIGUSR1.

A worker killed with SIGKILL never leaves its group, so the group waits a whole session
timeout before the restarted worker gets any partition: 45 s a kill would make the test last
ten minutes. Run as ``python -m tests.crash_worker [istore arguments]``.
"""

from __future__ import annotations

import faulthandler
import signal

from kafka import KafkaConsumer

# Every consumer copies DEFAULT_CONFIG when it is made, so this reaches the worker's group
# consumer without a setting the store does not have. Heartbeats stay a third of the timeout.
KafkaConsumer.DEFAULT_CONFIG.update(session_timeout_ms=6000, heartbeat_interval_ms=2000)

# SIGUSR1 writes every thread's stack to stderr: the test asks for it before it gives up
# on a worker that makes no progress.
faulthandler.register(signal.SIGUSR1, all_threads=True)

from interaction_store.cli import main  # noqa: E402  # only once DEFAULT_CONFIG is patched above

if __name__ == "__main__":
    main(prog_name="istore")
