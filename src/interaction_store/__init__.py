"""interaction-store: customer interactions as immutable events, projected into views."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("interaction-store")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.0.0"
