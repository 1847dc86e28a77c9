"""Admission: what a chat turn takes from the shared limits before it runs, and gives back.

Serve stage, between the key check and the turn, on every chat route (``openai_routes.py``,
``smarter_routes.py``); settled when the turn ends (``chat_http.account_turn``). A turn is
admitted by its rate limits (``rate_limits.py``: requests and tokens a minute of its client and
key) and by its budgets (``budgets.py``), in that order; refused by one, it gives back what the
others granted, so a refused request spends nothing and counts against no limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from serve.budgets import BudgetHold, Budgets
from serve.chat import TokenUsage
from serve.compiled import CompiledClient, Snapshot
from serve.errors import HttpError
from serve.limits import Limiter
from serve.rate_limits import RateHold
from serve.rate_limits import admit as admit_rates


@dataclass(slots=True)
class Holds:
    """What a turn took from its rate limits and its budgets."""

    rates: RateHold = field(default_factory=RateHold)
    budgets: BudgetHold = field(default_factory=BudgetHold)

    def settle(self, limiter: Limiter, budgets: Budgets | None, usage: TokenUsage) -> None:
        """The turn ended: its request counts, and what it spent (nothing when it never
        reached the upstream)."""
        tokens = usage.total if usage.known and usage.calls else None
        self.rates.settle(limiter, tokens if usage.calls else 0)
        if budgets is not None:
            budgets.learn(self.budgets, usage)
        self.budgets.settle(limiter, usage)


async def admit(
    limiter: Limiter | None,
    budgets: Budgets | None,
    snapshot: Snapshot,
    client: CompiledClient,
    key_name: str | None,
    *,
    model: str,
    request_bytes: int,
) -> Holds | None:
    """Admit a turn, or raise the 429 ``HttpError`` of the first limit it does not fit in.
    None when no limit is enforced here (no limiter: a preview)."""
    if limiter is None:
        return None
    holds = Holds(await admit_rates(limiter, client, key_name, snapshot))
    if budgets is None:
        return holds
    try:
        holds.budgets = await budgets.admit(snapshot, client, key_name, model, request_bytes)
    except HttpError:
        holds.rates.release(limiter)
        raise
    return holds
