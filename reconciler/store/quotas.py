"""Shared counters of limits (budgets, rate limits): slices of a limit taken atomically.

Part of the store, used by the serving processes (issue 16). A limit is shared by every
``samops serve`` replica and ``--workers`` process: none may admit what the others already
spent. Asking the database before every chat turn would cost each turn a round trip, so a
process takes a *lease*, a slice of what is left, in one short transaction, admits turns
from it locally, and settles later what its turns actually spent. One row per scope (what is
counted: ``budget:<name>``, ``requests:client:<name>``) and period (the window it counts in):

- ``used``: what settled turns spent;
- ``leased``: slices handed out and not yet settled or returned.

``lease`` grants at most ``limit - used - leased``, so the leases and what was spent never
exceed the limit together, whatever the number of processes: the row is locked for the
transaction (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite every write transaction
begins ``IMMEDIATE``, one writer at a time). What
may exceed it is only what turns spend beyond the estimate they were admitted with. A slice a
process never settles (it was killed) stays leased until its period ends: counted as spent,
never given twice, so the error is on the side of refusing (keep slices small).
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Engine, Table, and_, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from reconciler.store import schema
from reconciler.store.db import reading

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


def add_periods(moment: dt.datetime, period: str, count: int) -> dt.datetime:
    """``count`` periods after ``moment`` (a month later is the same day of the next month,
    or its last day)."""
    if period == "month":
        months = moment.month - 1 + count
        year, month = moment.year + months // 12, months % 12 + 1
        day = min(moment.day, calendar.monthrange(year, month)[1])
        return moment.replace(year=year, month=month, day=day)
    seconds = {"minute": 60, "hour": 3600, "day": 86400, "week": 604800}[period]
    return moment + dt.timedelta(seconds=seconds * count)


@dataclass(frozen=True, slots=True)
class Counter:
    """A counter's row: what is spent and what is leased, in its period."""

    scope: str
    period_start: dt.datetime
    used: Decimal = ZERO
    leased: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a process gives back of one lease: ``spent`` moves from leased to used,
    ``returned`` goes back to what others may lease; ``counted`` is spending that took no
    lease (a budget that only warns), added to used."""

    scope: str
    period_start: dt.datetime
    spent: Decimal = ZERO
    returned: Decimal = ZERO
    counted: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class Crossing:
    """A counter's ``used`` before and after one settlement. Settlements of a counter are
    written one after the other (row locks), so each amount between two settlements is
    crossed by exactly one of them, in one process: a threshold is announced once, whatever
    the number of replicas."""

    scope: str
    period_start: dt.datetime
    before: Decimal
    after: Decimal


def _where(scope: str, period_start: dt.datetime) -> ColumnElement[bool]:
    table = schema.quota_counters
    return and_(table.c.scope == scope, table.c.period_start == period_start)


def lease(
    engine: Engine, scope: str, period_start: dt.datetime, want: Decimal, limit: Decimal
) -> Decimal:
    """Take up to ``want`` of what is left of ``limit`` in the period (0 when nothing is)."""
    return lease_left(engine, scope, period_start, want, limit)[0]


def lease_left(
    engine: Engine, scope: str, period_start: dt.datetime, want: Decimal, limit: Decimal
) -> tuple[Decimal, Decimal]:
    """``lease``, and what is left to lease after it (to see a limit running out)."""
    table = schema.quota_counters
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as connection:  # SQLite: BEGIN IMMEDIATE (``db.py``), one writer
        # The row first, so that there is a row to lock: two processes leasing a new
        # period's first slice at once would otherwise both find none and both insert it.
        fresh = _insert(connection.dialect.name)(table).values(
            scope=scope, period_start=period_start, used=0, leased=0, updated_at=now
        )
        connection.execute(fresh.on_conflict_do_nothing())
        row = connection.execute(
            select(table.c.used, table.c.leased)
            .where(_where(scope, period_start))
            .with_for_update()
        ).one()
        left = limit - Decimal(row.used) - Decimal(row.leased)
        granted = max(ZERO, min(want, left))
        if granted > ZERO:
            connection.execute(
                update(table)
                .where(_where(scope, period_start))
                .values(leased=table.c.leased + granted, updated_at=now)
            )
    return granted, max(ZERO, left - granted)


def _insert(dialect: str) -> Callable[[Table], Any]:
    """The dialect's ``INSERT`` (both have ``ON CONFLICT DO NOTHING``)."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def settle(engine: Engine, settlements: Sequence[Settlement]) -> list[Crossing]:
    """Settle several leases in one transaction (the limiter's batch, one item per counter);
    what each moved ``used`` from and to. Three statements whatever the batch's size (an
    executemany of the updates, then one read of the counters they moved: each row stays
    locked by this transaction in between, so what is read is what this batch made it)."""
    if not settlements:
        return []
    table = schema.quota_counters
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as connection:
        fresh = [  # no lease made these rows: make them
            {"scope": s.scope, "period_start": s.period_start, "used": 0, "leased": 0}
            for s in settlements
            if s.counted
        ]
        if fresh:
            insert = _insert(connection.dialect.name)(table).values(updated_at=now)
            connection.execute(insert.on_conflict_do_nothing(), fresh)
        connection.execute(
            _SETTLE,
            [
                {
                    "b_scope": s.scope,
                    "b_start": s.period_start,
                    "b_added": s.spent + s.counted,
                    "b_taken": s.spent + s.returned,
                    "b_now": now,
                }
                for s in settlements
            ],
        )
        added: dict[tuple[str, dt.datetime], Decimal] = {}
        for s in settlements:  # a counter twice in a batch: one crossing over both
            if s.spent + s.counted:
                key = (s.scope, s.period_start)
                added[key] = added.get(key, ZERO) + s.spent + s.counted
        if not added:
            return []
        rows = connection.execute(
            select(table.c.scope, table.c.period_start, table.c.used).where(
                or_(*(_where(scope, start) for scope, start in added))
            )
        )
        used = {(row.scope, _aware(row.period_start)): Decimal(row.used) for row in rows}
    return [
        Crossing(scope, start, used[scope, start] - amount, used[scope, start])
        for (scope, start), amount in added.items()
        if (scope, start) in used
    ]


def _aware(moment: dt.datetime) -> dt.datetime:
    """A stored period start as UTC (SQLite gives it back without its zone)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


_SETTLE = (
    update(schema.quota_counters)
    .where(
        schema.quota_counters.c.scope == bindparam("b_scope"),
        schema.quota_counters.c.period_start == bindparam("b_start"),
    )
    .values(
        used=schema.quota_counters.c.used + bindparam("b_added"),
        leased=schema.quota_counters.c.leased - bindparam("b_taken"),
        updated_at=bindparam("b_now"),
    )
)
"""One settlement: ``spent`` (and what was counted without a lease) moves to used, what was
leased for it leaves leased (sent as an executemany)."""


def read_counter(engine: Engine, scope: str, period_start: dt.datetime) -> Counter:
    """A counter as it stands (zeros when nothing was leased in the period)."""
    table = schema.quota_counters
    with reading(engine) as connection:
        row = connection.execute(
            select(table.c.used, table.c.leased).where(_where(scope, period_start))
        ).first()
        connection.rollback()
    if row is None:
        return Counter(scope, period_start)
    return Counter(scope, period_start, Decimal(row.used), Decimal(row.leased))
