"""Benchmarks, run by `nox -s bench` (never part of the test suite)."""
