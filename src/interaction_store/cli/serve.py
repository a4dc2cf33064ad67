"""``istore serve``: the HTTP API and the projection worker (to be written)."""

from __future__ import annotations
