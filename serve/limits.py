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
period begins on every replica at the same moment, from nothing. A limit with ``since``
counts in one period from that moment on (a budget's absolute limit).

Each settlement written tells ``on_crossing`` what it moved the shared ``used`` from and to
(``quotas.Crossing``): a threshold is crossed by exactly one settlement, in one process, so a
budget's warning is logged once over every replica.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from sqlalchemy import Engine

from reconciler.errors import DatabaseUnavailable
from reconciler.store.db import translated_errors
from reconciler.store.quotas import Crossing, Settlement, lease_left, period_start, settle
from serve.batch_writer import BatchWriter

log = logging.getLogger("samops.limits")
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``limit`` per ``period`` for ``scope`` (``budget:<name>``, ...); with
    ``since``, at most ``limit`` from that moment on, in one period that never ends (a
    budget's absolute limit, from when it was attached)."""

    scope: str
    period: str
    limit: Decimal
    since: dt.datetime | None = None

    def start(self, now: dt.datetime) -> dt.datetime:
        """Where the counter that ``now`` falls in starts."""
        return self.since if self.since is not None else period_start(self.period, now)


@dataclass(frozen=True, slots=True)
class Admission:
    """A turn admitted under a limit, with the estimate taken from the slice."""

    scope: str
    start: dt.datetime
    estimate: Decimal


Key = tuple[str, dt.datetime]
LEASE_AHEAD = dt.timedelta(seconds=2)
"""How long before a period ends its successor's first slice is leased (``_lease_ahead``)."""
SETTLE_INTERVAL = 0.25
"""Seconds between two writes of settlements at least. What turns spent reaches the shared
counters that much later (their reservations count as leased meanwhile: nothing is admitted
twice); the database sees a few transactions a second, not one per turn. 0.05 s still cost a
tenth of a core in SQLAlchemy under the bench's load (py-spy, issue 18). What a process gives
back of a scarce limit is written at once (``BatchWriter.hurry``): the others need it now."""


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
        self._leasing: dict[Key, asyncio.Task[bool]] = {}
        self._current: dict[str, dt.datetime] = {}  # per scope, the period turns are in
        self._scarce: set[Key] = set()
        """Limits with less than two slices left to lease: each turn leases only what it
        needs and gives back what it did not spend (exact near the end, a round trip per
        turn)."""
        self.on_crossing: Callable[[Crossing], None] | None = None
        """Told of every counter's ``used`` moved by this process's settlements."""
        self._open: dict[Key, Pending] = {}
        """Per counter, the settlement queued and not yet taken by the writer: what turns
        settle is added to it, so the queue holds one item per counter, not one per turn."""
        self._open_lock = threading.Lock()
        self.settlements: BatchWriter[Pending] = BatchWriter(
            self._write,
            what="limit settlements",
            log=log,
            name="samops-limits",
            describe=lambda item: f"of {item.scope}",
            retry_initial=retry_initial,
            retry_max=retry_max,
            min_interval=SETTLE_INTERVAL,
        )

    def held(self, scope: str, start: dt.datetime) -> Decimal:
        """What this process holds of ``scope``'s limit in the period starting at ``start``."""
        return self._held.get((scope, start), ZERO)

    async def admit(
        self, limit: Limit, estimate: Decimal, *, minimum: Decimal | None = None
    ) -> Admission | None:
        """Take ``estimate`` from this process's slice of ``limit``, leasing more when it is
        short; None when the limit has no room left (or the database cannot be reached and
        the slice is spent). With ``minimum``, a turn is admitted while at least that much
        is left, with what is left as its estimate (a budget admits while it has room; what
        the turn spends beyond is the overspend of a turn in flight)."""
        now = self.clock()
        start = limit.start(now)
        key = (limit.scope, start)
        if self._current.get(limit.scope) != start:  # a new period: earlier slices go back
            self._current[limit.scope] = start
            self._return_ended(limit.scope, start)
        while self._held.get(key, ZERO) < estimate:
            # One lease at a time per counter, awaited by every turn that needs more: they
            # all go on together when it is granted (a lock handed from turn to turn took one
            # loop iteration per waiting turn: at a period's start, 64 turns in flight waited
            # up to 0.8 s behind each other under load, issue 18).
            leasing = self._leasing_task(limit, start, estimate)
            if not await asyncio.shield(leasing):  # nothing more to lease: refuse below
                break
        if limit.since is None:
            self._lease_ahead(limit, start, now, estimate)
        held = self._held.get(key, ZERO)
        if held < estimate:
            if minimum is None or held < minimum:
                if key in self._scarce and held > ZERO:  # too little here: for the others
                    self._held[key] = ZERO
                    self._record(limit.scope, start, returned=held)
                return None
            estimate = held
        self._held[key] = held - estimate
        return Admission(limit.scope, start, estimate)

    def settle(self, admission: Admission, spent: Decimal) -> None:
        """What an admitted turn really spent: the slice gains back what the estimate
        over-counted (or loses what it under-counted), and the spending goes to the shared
        row in the next batch."""
        key = (admission.scope, admission.start)
        returned = ZERO
        if key in self._held:
            self._held[key] += admission.estimate - spent
            if key in self._scarce and self._held[key] > ZERO:
                # the limit is running out: what this process does not use goes back at
                # once, so that the others may have it
                returned, self._held[key] = self._held[key], ZERO
        self._record(admission.scope, admission.start, spent=spent, returned=returned)

    def count(self, scope: str, start: dt.datetime, spent: Decimal) -> None:
        """Spending under no limit (a budget that only warns): added to the shared counter
        in the next batch, nothing leased."""
        self._record(scope, start, counted=spent)

    async def close(self, timeout: float = 10.0) -> None:
        """Give back every slice held, and write what is pending."""
        for (scope, start), held in list(self._held.items()):
            self._give_back(scope, start, held)
        await self.settlements.close(timeout)

    def _lease_ahead(
        self, limit: Limit, start: dt.datetime, now: dt.datetime, estimate: Decimal
    ) -> None:
        """In a period's last ``LEASE_AHEAD`` seconds, lease the next period's first slice in
        the background, so that no turn waits for it when the period rolls over (every turn
        in flight did, once a minute under a rate limit)."""
        upcoming = period_start(limit.period, now + LEASE_AHEAD)
        if upcoming != start and (limit.scope, upcoming) not in self._held:
            self._leasing_task(limit, upcoming, estimate)

    def _leasing_task(
        self, limit: Limit, start: dt.datetime, estimate: Decimal
    ) -> asyncio.Task[bool]:
        """The lease of ``limit`` in flight for the period at ``start``, or a new one."""
        key = (limit.scope, start)
        leasing = self._leasing.get(key)
        if leasing is None:
            leasing = self._leasing[key] = asyncio.get_running_loop().create_task(
                self._top_up(limit, start, estimate), name=f"samops-lease {limit.scope}"
            )
        return leasing

    async def _top_up(self, limit: Limit, start: dt.datetime, estimate: Decimal) -> bool:
        """Lease more of ``limit`` for the period at ``start``: what the turn that asked lacks,
        a slice at least while the limit is not scarce. Whether anything was granted."""
        key = (limit.scope, start)
        try:
            held = self._held.get(key, ZERO)
            want = max(estimate - held, ZERO)
            if key not in self._scarce:
                want = max(want, limit.limit * self.slice_fraction)
            if _whole(limit.limit) and _whole(estimate):  # no fractions stranded
                want = want.to_integral_value(rounding=ROUND_CEILING)
            granted, left = await self._lease(limit, start, want)
            self._held[key] = self._held.get(key, ZERO) + granted
            if left < 2 * limit.limit * self.slice_fraction:
                self._scarce.add(key)
            return granted > ZERO
        finally:
            if self._leasing.get(key) is asyncio.current_task():
                del self._leasing[key]

    async def _lease(
        self, limit: Limit, start: dt.datetime, want: Decimal
    ) -> tuple[Decimal, Decimal]:
        """What was granted, and what is left to lease (the limit, when unknown)."""
        try:
            return await asyncio.to_thread(self._lease_now, limit, start, want)
        except DatabaseUnavailable as exc:  # admit from what is held, no more
            log.warning(
                "cannot lease from %s's limit: %s; admitting only what this process holds",
                limit.scope,
                exc,
            )
            return ZERO, limit.limit

    def _lease_now(
        self, limit: Limit, start: dt.datetime, want: Decimal
    ) -> tuple[Decimal, Decimal]:
        with translated_errors(str(self.engine.url)):
            return lease_left(self.engine, limit.scope, start, want, limit.limit)

    def _return_ended(self, scope: str, current: dt.datetime) -> None:
        """Slices of ``scope`` in periods before ``current`` go back (they count nothing)."""
        for key in [k for k in self._held if k[0] == scope and k[1] < current]:
            self._give_back(*key, self._held[key])

    def _give_back(self, scope: str, start: dt.datetime, held: Decimal) -> None:
        self._held.pop((scope, start), None)
        self._leasing.pop((scope, start), None)
        self._scarce.discard((scope, start))
        if held > ZERO:
            self._record(scope, start, returned=held)

    def _record(
        self,
        scope: str,
        start: dt.datetime,
        *,
        spent: Decimal = ZERO,
        returned: Decimal = ZERO,
        counted: Decimal = ZERO,
    ) -> None:
        key = (scope, start)
        with self._open_lock:
            pending = self._open.get(key)
            if pending is None:
                pending = self._open[key] = Pending(scope, start)
                self.settlements.record(pending)
            pending.spent += spent
            pending.returned += returned
            pending.counted += counted
        if returned and key in self._scarce:  # the other processes are short of it now
            self.settlements.hurry()

    def _write(self, batch: Sequence[Pending]) -> None:
        with self._open_lock:  # from now on, what is settled goes to new items
            for pending in batch:
                if self._open.get(pending.key) is pending:
                    del self._open[pending.key]
        with translated_errors(str(self.engine.url)):
            crossings = settle(self.engine, _merged(batch))
        if self.on_crossing is not None:
            for crossing in crossings:
                self.on_crossing(crossing)


def _whole(amount: Decimal) -> bool:
    return amount == amount.to_integral_value()


@dataclass(slots=True, eq=False)
class Pending:
    """What this process's turns settled of one counter since the writer last took it."""

    scope: str
    period_start: dt.datetime
    spent: Decimal = ZERO
    returned: Decimal = ZERO
    counted: Decimal = ZERO

    @property
    def key(self) -> Key:
        return (self.scope, self.period_start)


def _merged(batch: Sequence[Pending]) -> list[Settlement]:
    """One settlement per counter: a batch of thousands of turns is a few updates."""
    merged: dict[Key, list[Decimal]] = {}
    for item in batch:
        sums = merged.setdefault((item.scope, item.period_start), [ZERO, ZERO, ZERO])
        sums[0] += item.spent
        sums[1] += item.returned
        sums[2] += item.counted
    return [Settlement(scope, start, *sums) for (scope, start), sums in merged.items()]
