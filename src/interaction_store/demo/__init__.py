"""Reproducible demo data for ``istore demo-data``: a year of French and Spanish customer life,
simulated event by event (accounts, contacts, leads, visitors) and streamed in time order."""

from interaction_store.demo.stream import estimate_events, generate, write_jsonl

__all__ = ["estimate_events", "generate", "write_jsonl"]
