"""Limits admitted locally from shared leases: the engine under budgets and rate limits.

Serve stage (issue 16). A limit (so many dollars a month, so many requests a minute) is shared
by every serving process. Each process holds, per limit and period, a slice leased from the
database (``reconciler/store/quotas.py``) and admits a turn when its estimate fits in what it
holds: no database round trip for most turns. When the slice runs short, the turn waits for one
more lease (one short transaction, one at a time per limit: concurrent turns wait for the same
one). When nothing is left anywhere, the turn is refused.

After the turn, ``settle`` says what it really cost: the difference goes back to (or comes out
of) the slice at once, and the spending is written later, in batches, by a batch writer
(``batch_writer.py``): it moves from ``leased`` to ``used`` in the shared row. At the end of a
period, or when the process stops, what a process still holds is given back.

What holds, whatever the number of processes: the slices handed out and what was spent never
exceed the limit together, except by what admitted turns spent beyond their estimates (the
turns in flight). While the database cannot be reached, a process admits only from what it
holds, then refuses: an outage never admits unlimited spending.

Periods are calendar periods in UTC (``period_start``): a minute, an hour, a day, a week
(from Monday) or a month; every process computes the same start from the clock, so a new
period begins on every replica at the same moment, from nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Engine

from reconciler.errors import DatabaseUnavailable
from reconciler.store.db import translated_errors
from reconciler.store.quotas import Settlement, lease, settle
from serve.batch_writer import BatchWriter

log = logging.getLogger("samops.limits")
ZERO = Decimal(0)
PERIODS = ("minute", "hour", "day", "week", "month")


def period_start(period: str, now: dt.datetime) -> dt.datetime:
    """The start of the calendar period (UTC) that ``now`` falls in."""
    now = now.astimezone(dt.UTC)
    if period == "minute":
        return now.replace(second=0, microsecond=0)
    if period == "hour":
        return now.replace(minute=0, second=0, microsecond=0)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - dt.timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown period {period!r} (one of {', '.join(PERIODS)})")


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``limit`` per ``period`` for ``scope`` (``budget:<name>``, ...)."""

    scope: str
    period: str
    limit: Decimal


@dataclass(frozen=True, slots=True)
class Admission:
    """A turn admitted under a limit, with the estimate taken from the slice."""

    scope: str
    start: dt.datetime
    estimate: Decimal


Key = tuple[str, dt.datetime]


class Limiter:
    """One process's share of the limits (see the module doc)."""

    def __init__(
        self,
        engine: Engine,
        *,
        slice_fraction: Decimal = Decimal("0.05"),
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
    ) -> None:
        """``slice_fraction``: the share of a limit one lease asks for (small slices share
        a limit fairly between processes; large ones ask the database less often)."""
        self.engine, self.slice_fraction, self.clock = engine, slice_fraction, clock
        self._held: dict[Key, Decimal] = {}
        self._leasing: dict[Key, asyncio.Lock] = {}
        self.settlements: BatchWriter[Settlement] = BatchWriter(
            self._write,
            what="limit settlements",
            log=log,
            name="samops-limits",
            describe=lambda item: f"of {item.scope}",
            retry_initial=retry_initial,
            retry_max=retry_max,
        )

    def held(self, scope: str, start: dt.datetime) -> Decimal:
        """What this process holds of ``scope``'s limit in the period starting at ``start``."""
        return self._held.get((scope, start), ZERO)

    async def admit(self, limit: Limit, estimate: Decimal) -> Admission | None:
        """Take ``estimate`` from this process's slice of ``limit``, leasing more when it is
        short; None when the limit has no room left (or the database cannot be reached and
        the slice is spent)."""
        start = period_start(limit.period, self.clock())
        key = (limit.scope, start)
        if self._held.get(key, ZERO) < estimate:
            lock = self._leasing.setdefault(key, asyncio.Lock())
            async with lock:  # concurrent turns wait for one lease, not one each
                held = self._held.get(key, ZERO)
                if held < estimate:
                    want = max(estimate - held, limit.limit * self.slice_fraction)
                    self._held[key] = held + await self._lease(limit, start, want)
            self._return_ended(limit.scope, start)
        held = self._held.get(key, ZERO)
        if held < estimate:
            return None
        self._held[key] = held - estimate
        return Admission(limit.scope, start, estimate)

    def settle(self, admission: Admission, spent: Decimal) -> None:
        """What an admitted turn really spent: the slice gains back what the estimate
        over-counted (or loses what it under-counted), and the spending goes to the shared
        row in the next batch."""
        key = (admission.scope, admission.start)
        if key in self._held:
            self._held[key] += admission.estimate - spent
        self.settlements.record(Settlement(admission.scope, admission.start, spent=spent))

    async def close(self, timeout: float = 10.0) -> None:
        """Give back every slice held, and write what is pending."""
        for (scope, start), held in list(self._held.items()):
            self._give_back(scope, start, held)
        await self.settlements.close(timeout)

    async def _lease(self, limit: Limit, start: dt.datetime, want: Decimal) -> Decimal:
        try:
            return await asyncio.to_thread(self._lease_now, limit, start, want)
        except DatabaseUnavailable as exc:  # admit from what is held, no more
            log.warning(
                "cannot lease from %s's limit: %s; admitting only what this process holds",
                limit.scope,
                exc,
            )
            return ZERO

    def _lease_now(self, limit: Limit, start: dt.datetime, want: Decimal) -> Decimal:
        with translated_errors(str(self.engine.url)):
            return lease(self.engine, limit.scope, start, want, limit.limit)

    def _return_ended(self, scope: str, current: dt.datetime) -> None:
        """Slices of ``scope`` in periods before ``current`` go back (they count nothing)."""
        for key in [k for k in self._held if k[0] == scope and k[1] < current]:
            self._give_back(*key, self._held[key])

    def _give_back(self, scope: str, start: dt.datetime, held: Decimal) -> None:
        self._held.pop((scope, start), None)
        self._leasing.pop((scope, start), None)
        if held > ZERO:
            self.settlements.record(Settlement(scope, start, returned=held))

    def _write(self, batch: Sequence[Settlement]) -> None:
        with translated_errors(str(self.engine.url)):
            settle(self.engine, _merged(batch))


def _merged(batch: Sequence[Settlement]) -> list[Settlement]:
    """One settlement per counter: a batch of thousands of turns is a few updates."""
    merged: dict[Key, list[Decimal]] = {}
    for item in batch:
        sums = merged.setdefault((item.scope, item.period_start), [ZERO, ZERO])
        sums[0] += item.spent
        sums[1] += item.returned
    return [
        Settlement(scope, start, spent, back) for (scope, start), (spent, back) in merged.items()
    ]
