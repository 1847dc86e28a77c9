"""Prometheus metrics of the reconciler, registered on a registry the process owns.

The registry is created by the composition root and handed to both the daemon (which updates
these) and the server (which exposes ``/metrics``), so neither imports the other. With
``--workers`` the values live in prometheus_client's multiprocess files (``serve/workers.py``).
"""

from __future__ import annotations

import functools
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ONE_WRITER: Final = "livemax"
"""How gauges that only the reconciling process sets are shown when the server runs worker
processes (prometheus_client's multiprocess mode): one series, without a ``pid`` label."""
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ReconcilerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "samops_reconcile_duration_seconds",
            "Time of one reconcile pass (read, validate, apply).",
            registry=registry,
            buckets=DURATION_BUCKETS,
        )
        self.reconciles = Counter(
            "samops_reconciles",
            "Reconcile passes by outcome (applied, unchanged, up-to-date, "
            "invalid, refused, failed).",
            ["outcome"],
            registry=registry,
        )
        gauge = functools.partial(Gauge, registry=registry, multiprocess_mode=ONE_WRITER)
        self.last_applied = gauge(
            "samops_last_applied_timestamp_seconds",
            "Unix time of the last pass that applied a revision.",
        )
        self.generation = gauge("samops_generation", "Generation of the applied state.")
        self.fetch_failures = Counter(
            "samops_git_fetch_failures", "Failed fetches of a remote repository.", registry=registry
        )
        self.leader = gauge(
            "samops_leader", "1 when this process is the leader that applies, 0 on standby."
        )
        self.suspended = gauge("samops_suspended", "1 while reconciliation is suspended.")
