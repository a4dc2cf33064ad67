"""``python -m interaction_store.cli``: the same as ``istore``."""

from interaction_store.cli import main

main()
