"""Budgets enforced on every turn: reserve before the upstream, settle with the real usage.

Serve stage, called with the rate limits (``admission.py``) after the key is checked and before
the turn, and when the turn ends (``chat_http.account_turn``). The budgets of a turn are those
on its client, on the client's provider and, when a key was presented, on the key's
SmarterAuthToken (``Snapshot.budgets``, compiled from the Budget manifests and when each was
attached, ``serve/snapshot.py``).

For each budget that blocks, the turn reserves an *estimate* from each of its limits (the
periodic one, counted per calendar period in UTC, and the absolute one, counted from the
attachment): what recent turns under that budget spent (a moving average, per process), or
before any, the prompt's tokens guessed from the request's size (a token is about four bytes
of JSON) or their cost at the model's input price; near the end of a limit, what is left. The
shared counters are the limiter's (``limits.py``): a fleet of replicas and ``--workers``
processes admits turns while the limit has room and spends no more than the limit, except
what the turns in flight spend beyond their reservations. A turn that finds no room is
refused with 429, the budget's ``message`` and OpenAI's ``insufficient_quota`` type; nothing
of it reaches the upstream. A budget that only warns reserves nothing and counts what was
spent.

After the turn, what it really spent (tokens, or their cost at the model's price; the estimate
when the upstream did not say) settles the reservation. When a settlement moves a counter past
the warning threshold or past the limit, the one process whose settlement crossed it logs it
(once over every replica) and counts it in ``samops_budget_events_total``.

A cost budget on a model without a price cannot be counted: such a turn is refused with a
sentence saying which price to declare, never admitted uncounted.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter

from reconciler.api import Event
from reconciler.store.budgets import ADVERB, periodic_scope, total_scope
from reconciler.store.quotas import Crossing, period_start
from serve.chat import TokenUsage
from serve.compiled import BudgetRule, CompiledClient, Snapshot
from serve.errors import HttpError
from serve.limits import Admission, Limiter
from serve.prices import Price, price_of

log = logging.getLogger("samops.budgets")
ZERO = Decimal(0)
BYTES_PER_TOKEN = 4
LEARNING_RATE = Decimal("0.2")
"""How much one turn moves a budget's typical turn (an exponential moving average)."""
MINIMUM = {"tokens": Decimal(1), "cost": Decimal("0.0000000001")}
"""The least room that admits a turn (one token; the counters' precision in dollars)."""


def estimate_tokens(request_bytes: int, client: CompiledClient) -> int:
    """The prompt's tokens, roughly: its request's bytes and the system prompt's, over four."""
    return max(1, (request_bytes + len(client.system_role)) // BYTES_PER_TOKEN)


@dataclass(slots=True)
class Charge:
    """One budget's share of a turn: what it reserved (blocking) or will count (warning)."""

    rule: BudgetRule
    estimate: Decimal
    admissions: list[Admission] = field(default_factory=list)
    """Empty for a budget that only warns."""
    starts: tuple[dt.datetime, dt.datetime] | None = None
    """Where the periodic and total counters start (a budget that only warns)."""


@dataclass(slots=True)
class BudgetHold:
    """What a turn took from its budgets, to settle when it ends."""

    price: Price | None = None
    estimate_tokens: int = 0
    charges: list[Charge] = field(default_factory=list)

    def spent(self, unit: str, usage: TokenUsage) -> Decimal:
        """What the turn cost in ``unit`` (its estimate when the upstream did not say)."""
        if not usage.calls:
            return ZERO
        if not usage.known:
            tokens, prompt, completion = self.estimate_tokens, self.estimate_tokens, 0
        else:
            tokens, prompt, completion = usage.total, usage.prompt, usage.completion
        if unit == "tokens":
            return Decimal(tokens)
        assert self.price is not None  # admission refuses a cost budget without a price
        return self.price.cost(prompt, completion)

    def settle(self, limiter: Limiter, usage: TokenUsage) -> None:
        for charge in self.charges:
            spent = self.spent(charge.rule.unit, usage)
            for admission in charge.admissions:
                limiter.settle(admission, spent)
            if charge.starts is not None and spent:
                periodic, total = charge.starts
                if charge.rule.periodic_limit:
                    limiter.count(periodic_scope(charge.rule.scope), periodic, spent)
                if charge.rule.absolute_limit:
                    limiter.count(total_scope(charge.rule.scope), total, spent)
        self.charges = []

    def release(self, limiter: Limiter) -> None:
        """Give back everything reserved (a turn refused before it ran)."""
        for charge in self.charges:
            for admission in charge.admissions:
                limiter.settle(admission, ZERO)
        self.charges = []


def rules_of(
    snapshot: Snapshot, client: CompiledClient, key_name: str | None, now: dt.datetime
) -> list[BudgetRule]:
    """The budgets that apply to a turn of ``client`` with the key ``key_name`` now."""
    budgets = snapshot.budgets
    if not budgets:
        return []
    found = [
        *budgets.get(("LLMClient", client.name), ()),
        *budgets.get(("Provider", client.provider), ()),
    ]
    if key_name is not None:
        found += budgets.get(("SmarterAuthToken", key_name), ())
    return [rule for rule in found if rule.applies(now)]


class Budgets:
    """One process's budget enforcement: admission, settlement, and what crossings say."""

    def __init__(self, limiter: Limiter, registry: CollectorRegistry | None = None) -> None:
        self.limiter = limiter
        self._rules: dict[str, tuple[BudgetRule, str]] = {}
        """Counter scope -> (its rule as last served, 'periodic' or 'absolute'), for
        crossings: an edited budget's new limits are the ones its crossings are told of."""
        self._typical: dict[tuple[str, str], Decimal] = {}
        """What a turn typically spends under each budget's resource, in its unit
        (``learn``)."""
        self.events = Counter(
            "samops_budget_events",
            "Budget events: a warning threshold or a limit crossed (counted once over every "
            "replica), a turn refused; by budget and what happened.",
            ["budget", "event"],
            registry=registry,
        )
        limiter.on_crossing = self.crossed
        self.on_event: Callable[[Event], None] | None = None
        """Told of each warning and limit crossed (``reconciler/outbound``)."""

    async def admit(
        self,
        snapshot: Snapshot,
        client: CompiledClient,
        key_name: str | None,
        model: str,
        request_bytes: int,
    ) -> BudgetHold:
        """Reserve the turn's estimate from every blocking budget, or raise a 429
        ``HttpError`` (giving back what was reserved)."""
        hold = BudgetHold()
        now = self.limiter.clock()
        rules = rules_of(snapshot, client, key_name, now)
        if not rules:
            return hold
        hold.estimate_tokens = estimate_tokens(request_bytes, client)
        if any(rule.unit == "cost" for rule in rules):
            target = snapshot.providers.get(client.provider)
            hold.price = price_of(model, target.prices if target is not None else {})
            if hold.price is None:
                rule = next(r for r in rules if r.unit == "cost")
                self.events.labels(budget=rule.budget, event="refused").inc()
                raise _no_price(rule, model, client.provider)
        for rule in rules:
            estimate = self._estimate(rule, hold)
            charge = Charge(rule, estimate)
            hold.charges.append(charge)
            if rule.action == "warn":
                charge.starts = (period_start(rule.period, now), rule.attached_at)
                self._remember(rule)
                continue
            for limit, which in rule.limits:
                self._rules[limit.scope] = (rule, which)
                admission = await self.limiter.admit(limit, estimate, minimum=MINIMUM[rule.unit])
                if admission is None:
                    hold.release(self.limiter)
                    self.events.labels(budget=rule.budget, event="refused").inc()
                    raise _refused(rule, which)
                charge.admissions.append(admission)
        return hold

    def _estimate(self, rule: BudgetRule, hold: BudgetHold) -> Decimal:
        """What recent turns under this budget spent (a moving average), or before any, the
        prompt's tokens guessed from the request's size."""
        typical = self._typical.get((rule.scope, rule.unit))
        if typical is not None:
            return typical
        if rule.unit == "tokens":
            return Decimal(hold.estimate_tokens)
        assert hold.price is not None
        return hold.price.cost(hold.estimate_tokens, 0)

    def learn(self, hold: BudgetHold, usage: TokenUsage) -> None:
        """Fold what a finished turn spent into its budgets' typical turn."""
        if not usage.calls or not usage.known:
            return
        for charge in hold.charges:
            spent = hold.spent(charge.rule.unit, usage)
            key = (charge.rule.scope, charge.rule.unit)
            before = self._typical.get(key)
            self._typical[key] = (
                spent if before is None else before + (spent - before) * LEARNING_RATE
            )

    def _remember(self, rule: BudgetRule) -> None:
        for limit, which in rule.limits:
            self._rules[limit.scope] = (rule, which)

    def crossed(self, crossing: Crossing) -> None:
        """A settlement of this process moved a budget's counter: log and count the warning
        threshold or the limit it crossed (only this process saw this crossing)."""
        found = self._rules.get(crossing.scope)
        if found is None:
            return
        rule, which = found
        limit = rule.periodic_limit if which == "periodic" else rule.absolute_limit
        what = f"the {ADVERB[rule.period]} limit" if which == "periodic" else "the absolute limit"
        kind, name = rule.resource
        extra = {
            "budget": rule.budget,
            "resource": f"{kind}/{name}",
            "limit": str(limit),
            "spent": str(crossing.after),
            "unit": rule.unit,
        }
        if crossing.before < limit <= crossing.after:
            self.events.labels(budget=rule.budget, event="limit_reached").inc()
            self._tell(rule, which, limit, crossing, reached=True)
            log.warning(
                "budget %s: %s %s reached %s of %s (%s)",
                rule.budget,
                kind,
                name,
                what,
                limit,
                "blocking" if rule.action == "block" else "warn only",
                extra=extra,
            )
            return
        threshold = limit * rule.warning_threshold / 100
        if rule.warning_threshold and crossing.before < threshold <= crossing.after:
            self.events.labels(budget=rule.budget, event="warning").inc()
            self._tell(rule, which, limit, crossing, reached=False)
            log.warning(
                "budget %s: %s %s has spent %s%% of %s",
                rule.budget,
                kind,
                name,
                rule.warning_threshold,
                what,
                extra=extra,
            )

    def _tell(
        self, rule: BudgetRule, which: str, limit: Decimal, crossing: Crossing, *, reached: bool
    ) -> None:
        if self.on_event is None:
            return
        kind, name = rule.resource
        what = f"the {ADVERB[rule.period]} limit" if which == "periodic" else "the absolute limit"
        amount = f"${limit}" if rule.unit == "cost" else f"{limit} tokens"
        blocked = reached and rule.action == "block"
        if reached:
            said = f"reached {what} of {amount}" + (
                ": turns are refused" if blocked else " (warn only)"
            )
        else:
            said = f"has spent {rule.warning_threshold}% of {what} of {amount}"
        period = period_start(rule.period, self.limiter.clock()).isoformat()
        self.on_event(
            Event(
                "budget_blocked" if blocked else "budget_warning",
                "error" if blocked else "warning",
                f"budget {rule.budget}: {kind} {name} {said}",
                details={
                    "budget": rule.budget,
                    "resource": f"{kind}/{name}",
                    "limit": str(limit),
                    "spent": str(crossing.after),
                    "unit": rule.unit,
                    "which": which,
                },
                reason=f"{crossing.scope}|{which}|{reached}|{limit}|{period}",
            )
        )


def _refused(rule: BudgetRule, which: str) -> HttpError:
    kind, name = rule.resource
    what = f"its {ADVERB[rule.period]} limit" if which == "periodic" else "its absolute limit"
    default = (
        f"the budget {rule.budget!r} of the {kind} {name!r} has reached {what} "
        f"({_amount(rule, rule.periodic_limit if which == 'periodic' else rule.absolute_limit)})"
    )
    return HttpError(
        429, "insufficient_quota", rule.message or default, openai_type="insufficient_quota"
    )


def _no_price(rule: BudgetRule, model: str, provider: str) -> HttpError:
    return HttpError(
        429,
        "insufficient_quota",
        f"the budget {rule.budget!r} counts cost, and the model {model!r} has no price, so "
        f"its spending cannot be counted: declare 'samops.dev/price.{model}' on the Provider "
        f"{provider!r}",
        openai_type="insufficient_quota",
    )


def _amount(rule: BudgetRule, limit: Decimal) -> str:
    return f"{limit:,f} US dollars" if rule.unit == "cost" else f"{limit:,f} tokens"
