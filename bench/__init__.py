"""Throughput benchmarks: scripts that print figures and ratios to a baseline (not tests)."""
