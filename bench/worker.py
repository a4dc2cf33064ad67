"""The projection worker of ``istore run --once``, with or without opening sealed fields: the
two sides of ``bench.projections``' encryption figure.

Run: ``python -m bench.worker [--unsealed] [--batch-size N]`` with the store's ``ISTORE_*``
settings in the environment. It builds ``ProjectionWorker`` as ``istore run`` does and runs it
once to the end of the log; ``--unsealed`` gives it an opener that does nothing (for a log
published with the no-op sealer of ``bench.plain``), otherwise it opens sealed fields with the
store's key store as the worker does. Prints the worker's summary line, as ``istore run``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bench.plain import PlainOpener
from interaction_store.cli.views import ProjectionWorker, summary
from interaction_store.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__)
    p.add_argument("--unsealed", action="store_true", help="open nothing (a no-op Opener)")
    p.add_argument("--batch-size", type=int, default=2000)
    args = p.parse_args(argv)
    worker = ProjectionWorker(Settings(), args.batch_size)
    if args.unsealed:
        worker.opener.close()
        worker.opener = PlainOpener()
    stats = worker.run(once=True)
    print(summary(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
