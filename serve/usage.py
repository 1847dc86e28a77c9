"""Usage: what each chat turn cost, recorded off the request path.

Serve stage, called by the chat routes when a turn ends (``chat_http.py``, answered or failed).
A turn's record holds the tokens the upstream reported for each of its calls, summed
(``chat.TokenUsage``; unknown when one call did not say), the model asked for, who asked (the
client, the SmarterAuthToken of the key, the Smarter session), the latency and the cost.

Cost is tokens times the model's price (``prices.py``): the price its Provider declares, else
samops' default for a well-known model; a model without a price has an unknown cost, recorded
as NULL, never as zero. Records go to the ``chat_usage`` table through the batch writer
(``batch_writer.py``: group commit, retried while the database fails, a bounded queue, nothing
lost at a clean shutdown), and to Prometheus as tokens and cost by client and model.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import Engine, insert

from reconciler.store import schema
from reconciler.store.db import translated_errors
from serve.batch_writer import BatchWriter
from serve.chat import TokenUsage
from serve.metric_children import Children
from serve.prices import Price

log = logging.getLogger("samops.usage")
WRITE_INTERVAL = 0.25
"""Seconds between two writes of usage records at least. Nobody waits for a usage row (budgets
count in ``limits.py``, metrics as the turn ends), so records gather into a few transactions a
second: under load, writing as soon as anything was queued (one small transaction after
another) took half a core in SQLAlchemy and the GIL from the request path (py-spy, issue 18)."""


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One turn's row of ``chat_usage``."""

    at: dt.datetime
    client: str
    route: str
    key_name: str | None
    session_key: str | None
    provider: str
    model: str
    outcome: str
    upstream_calls: int
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cost_usd: Decimal | None
    latency_ms: int
    generation: int

    @classmethod
    def of(
        cls,
        usage: TokenUsage,
        price: Price | None,
        *,
        client: str,
        route: str,
        key_name: str | None,
        session_key: str | None,
        provider: str,
        model: str,
        ok: bool,
        seconds: float,
        generation: int,
    ) -> UsageRecord:
        known = usage.known and usage.calls > 0
        cost = price.cost(usage.prompt, usage.completion) if known and price else None
        return cls(
            at=dt.datetime.now(dt.UTC),
            client=client,
            route=route,
            key_name=key_name,
            session_key=session_key,
            provider=provider,
            model=model,
            outcome="ok" if ok else "failed",
            upstream_calls=usage.calls,
            prompt_tokens=usage.prompt if known else None,
            completion_tokens=usage.completion if known else None,
            total_tokens=usage.total if known else None,
            cost_usd=cost,
            latency_ms=int(seconds * 1000),
            generation=generation,
        )


class UsageMetrics:
    """Tokens and cost by client and model (labels from the applied state only)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.tokens = Counter(
            "samops_chat_tokens",
            "Tokens of chat turns, by client, model and type (prompt, completion).",
            ["client", "model", "type"],
            registry=registry,
        )
        self.cost = Counter(
            "samops_chat_cost_usd",
            "Cost of chat turns in US dollars, by client and model (turns of a known price).",
            ["client", "model"],
            registry=registry,
        )
        self.unknown = Counter(
            "samops_chat_usage_unknown",
            "Chat turns whose tokens or cost are unknown, by client and what is unknown "
            "(tokens: an upstream call did not say; cost: no price for the model).",
            ["client", "what"],
            registry=registry,
        )
        self.unstored = Counter(
            "samops_chat_usage_unstored",
            "Usage records the writer could not store, by reason (dropped, refused, lost).",
            ["reason"],
            registry=registry,
        )
        # bound once per label values: every turn observes them
        self.tokens_by = Children(self.tokens)  # (client, model, type)
        self.cost_by = Children(self.cost)  # (client, model)
        self.unknown_by = Children(self.unknown)  # (client, what)

    def observe(self, record: UsageRecord) -> None:
        client, model = record.client, record.model
        if record.prompt_tokens is None or record.completion_tokens is None:
            if record.upstream_calls:
                self.unknown_by(client, "tokens").inc()
            return
        self.tokens_by(client, model, "prompt").inc(record.prompt_tokens)
        self.tokens_by(client, model, "completion").inc(record.completion_tokens)
        if record.cost_usd is None:
            self.unknown_by(client, "cost").inc()
        else:
            self.cost_by(client, model).inc(float(record.cost_usd))


class UsageRecorder:
    """Where the chat routes hand each turn's usage (see the module doc)."""

    def __init__(
        self,
        engine: Engine,
        *,
        metrics: UsageMetrics | None = None,
        max_pending: int = 100_000,
        max_batch: int = 1_000,
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
    ) -> None:
        self.engine, self.metrics = engine, metrics
        unstored: Callable[[str, int], None] = (
            (lambda reason, count: metrics.unstored.labels(reason=reason).inc(count))
            if metrics is not None
            else (lambda _reason, _count: None)
        )
        self.records: BatchWriter[UsageRecord] = BatchWriter(
            self._write,
            what="usage records",
            log=log,
            name="samops-usage",
            describe=lambda record: f"of client {record.client!r} at {record.at:%H:%M:%S}",
            max_pending=max_pending,
            max_batch=max_batch,
            retry_initial=retry_initial,
            retry_max=retry_max,
            on_unstored=unstored,
            min_interval=WRITE_INTERVAL,
        )

    def record(self, record: UsageRecord) -> None:
        if self.metrics is not None:
            self.metrics.observe(record)
        self.records.record(record)

    def _write(self, batch: Sequence[UsageRecord]) -> None:
        rows = [
            {
                "at": r.at,
                "client": r.client,
                "route": r.route,
                "key_name": r.key_name,
                "session_key": r.session_key,
                "provider": r.provider,
                "model": r.model[:200],
                "outcome": r.outcome,
                "upstream_calls": r.upstream_calls,
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
                "total_tokens": r.total_tokens,
                "cost_usd": r.cost_usd,
                "latency_ms": r.latency_ms,
                "generation": r.generation,
            }
            for r in batch
        ]
        with translated_errors(str(self.engine.url)), self.engine.begin() as connection:
            connection.execute(insert(schema.chat_usage), rows)
