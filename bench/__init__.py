"""Benchmarks: scripts that print figures, run by ``make bench``; never part of ``make test``."""
