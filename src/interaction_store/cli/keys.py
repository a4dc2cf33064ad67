"""``istore keys``: API keys of the HTTP API (to be written)."""

from __future__ import annotations
