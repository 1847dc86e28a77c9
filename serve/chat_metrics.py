"""Prometheus series of the chat routes, in Prometheus' naming conventions.

Serve stage: recorded by the chat routes' middleware and after each turn (``chat_routes.py``),
and by the session writer when a turn cannot be stored. Labels are bounded: a client label is
a name of the applied state (never what a caller typed: an unknown client is ``""``), a route
label is the route's pattern, a tool label the name of a tool samops runs.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from serve.chat import TurnResult
from serve.metric_children import Children
from serve.providers import UpstreamError

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ChatMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "samops_chat_requests",
            "Chat requests answered, by client, route and HTTP status.",
            ["client", "route", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "samops_chat_request_seconds",
            "Time to answer a chat request (a stream: until it ends), by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.upstream_seconds = Histogram(
            "samops_chat_upstream_seconds",
            "Time spent in upstream calls per chat turn, by provider.",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.upstream_errors = Counter(
            "samops_chat_upstream_errors",
            "Upstream failures by provider and code (upstream_timeout, upstream_error...).",
            ["provider", "code"],
            registry=registry,
        )
        self.tool_calls = Counter(
            "samops_chat_tool_calls",
            "Tool calls samops ran, by tool (plugin or function) and outcome (ok, error).",
            ["tool", "outcome"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "samops_chat_in_flight",
            "Chat requests being answered now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.unstored = Counter(
            "samops_chat_session_turns_unstored",
            "Chat turns the session writer could not store, by reason (dropped, refused, lost).",
            ["reason"],
            registry=registry,
        )

        # what every chat request observes, bound once per label values
        self.requests_by = Children(self.requests)  # (client, route, status)
        self.seconds_by = Children(self.seconds)  # (route,)
        self.upstream_seconds_by = Children(self.upstream_seconds)  # (provider,)

    def turn(self, result: TurnResult, provider: str) -> None:
        self.upstream_seconds_by(provider).observe(result.upstream_seconds)
        for call in result.tool_calls:
            outcome = "ok" if call.error is None else "error"
            self.tool_calls.labels(tool=call.name, outcome=outcome).inc()

    def upstream_failed(self, error: UpstreamError, provider: str) -> None:
        self.upstream_errors.labels(provider=provider, code=error.code).inc()
