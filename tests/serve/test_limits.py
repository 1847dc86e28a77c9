"""Limits admitted locally from shared leases (``serve/limits.py``): several processes' worth
of limiters on one database admit exactly what the limit allows, periods roll over on the
clock, and an outage admits only what a process already holds. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import Engine

from reconciler.store.quotas import period_start, read_counter
from serve.limits import Limit, Limiter
from tests.serve.outages import Outages

NOW = dt.datetime(2026, 11, 27, 13, 45, 30, 500, tzinfo=dt.UTC)  # a Friday


@pytest.mark.parametrize(
    ("period", "start"),
    [
        pytest.param("minute", dt.datetime(2026, 11, 27, 13, 45, tzinfo=dt.UTC), id="minute"),
        pytest.param("hour", dt.datetime(2026, 11, 27, 13, tzinfo=dt.UTC), id="hour"),
        pytest.param("day", dt.datetime(2026, 11, 27, tzinfo=dt.UTC), id="day"),
        pytest.param("week", dt.datetime(2026, 11, 23, tzinfo=dt.UTC), id="week-from-monday"),
        pytest.param("month", dt.datetime(2026, 11, 1, tzinfo=dt.UTC), id="month"),
    ],
)
def test_a_period_starts_on_the_calendar_in_utc(period: str, start: dt.datetime) -> None:
    assert period_start(period, NOW) == start
    assert period_start(period, NOW.astimezone(dt.timezone(dt.timedelta(hours=-8)))) == start


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now


def test_limiters_sharing_a_limit_admit_exactly_the_limit(engine: Engine) -> None:
    limit = Limit("requests:client:support", "minute", Decimal(100))

    async def scenario() -> list[bool]:
        clock = Clock()
        fleet = [Limiter(engine, clock=clock) for _ in range(3)]  # three processes' worth
        for limiter in fleet:
            limiter.settlements.start()
        asked = [fleet[n % 3].admit(limit, Decimal(1)) for n in range(150)]
        admitted = [a is not None for a in await asyncio.gather(*asked)]
        for limiter in fleet:
            await limiter.close()
        return admitted

    admitted = asyncio.run(scenario())

    assert admitted.count(True) == 100
    counter = read_counter(engine, limit.scope, period_start("minute", NOW))
    assert counter.used == 0 and counter.leased == 100  # admitted, not yet settled


def test_what_a_turn_did_not_spend_is_admitted_again(engine: Engine) -> None:
    budget = Limit("budget:support_monthly", "month", Decimal(10))

    async def scenario() -> tuple[int, Decimal, Decimal]:
        limiter = Limiter(engine, clock=Clock())
        limiter.settlements.start()
        admitted = 0
        for _ in range(20):  # each turn estimated at 4 dollars, spends 1
            admission = await limiter.admit(budget, Decimal(4))
            if admission is None:
                break
            admitted += 1
            limiter.settle(admission, Decimal(1))
        held = limiter.held(budget.scope, period_start("month", NOW))
        await limiter.close()
        counter = read_counter(engine, budget.scope, period_start("month", NOW))
        assert counter.leased == 0  # everything settled or given back
        return admitted, counter.used, held

    admitted, used, held = asyncio.run(scenario())

    # Each turn leaves 3 of its 4 dollars for the next; the eighth is refused because its
    # estimate (4) no longer fits in what is left (3). With less than two slices left to
    # lease, what a turn did not spend goes back at once (for other processes): none held.
    assert (admitted, used, held) == (7, Decimal(7), Decimal(0))


def test_a_new_period_starts_from_nothing_on_the_clock(engine: Engine) -> None:
    limit = Limit("requests:key:advisor_key", "minute", Decimal(3))

    async def scenario() -> list[bool]:
        clock = Clock()
        limiter = Limiter(engine, clock=clock)
        limiter.settlements.start()
        seen = [await limiter.admit(limit, Decimal(1)) is not None for _ in range(4)]
        clock.now = NOW + dt.timedelta(seconds=30)  # the next minute
        seen += [await limiter.admit(limit, Decimal(1)) is not None for _ in range(4)]
        await limiter.close()
        return seen

    assert asyncio.run(scenario()) == [True, True, True, False, True, True, True, False]


def test_an_outage_admits_only_what_the_process_holds(engine: Engine, outages: Outages) -> None:
    limit = Limit("budget:lab", "day", Decimal(100))

    async def scenario() -> list[bool]:
        limiter = Limiter(engine, clock=Clock(), slice_fraction=Decimal("0.03"))
        limiter.settlements.start()
        assert await limiter.admit(limit, Decimal(1)) is not None  # holds a slice of 3
        with outages.unreachable():
            seen = [await limiter.admit(limit, Decimal(1)) is not None for _ in range(5)]
        seen.append(await limiter.admit(limit, Decimal(1)) is not None)  # the database is back
        await limiter.close()
        return seen

    assert asyncio.run(scenario()) == [True, True, False, False, False, True]


def test_turns_waiting_for_a_lease_all_go_on_when_it_is_granted(engine: Engine) -> None:
    """Reproduces issue 18's stall: at a period's start every turn in flight needs the new
    period's first lease. They waited on a lock handed from one turn to the next, one event
    loop iteration per turn, and on a loaded loop the last of 64 waited 0.8 s. Now they await
    the one lease together: once it is granted, every one of them is admitted within a couple
    of iterations, however many there are (counted in iterations, not in seconds)."""
    limit = Limit("requests:client:support", "minute", Decimal(1_000_000))
    waiting = 64

    async def scenario() -> tuple[int, int, int]:
        limiter = Limiter(engine, clock=Clock())
        limiter.settlements.start()
        granted = asyncio.Event()
        leases = 0
        lease = limiter._lease

        async def held_until_granted(*args: object) -> tuple[Decimal, Decimal]:
            nonlocal leases
            leases += 1
            await granted.wait()  # the database's answer, when the test says so
            return await lease(*args)  # type: ignore[arg-type]

        limiter._lease = held_until_granted  # type: ignore[method-assign,assignment]
        turns = [asyncio.ensure_future(limiter.admit(limit, Decimal(1))) for _ in range(waiting)]
        while not leases:
            await asyncio.sleep(0)
        for _ in range(5):  # every turn is waiting now
            await asyncio.sleep(0)
        granted.set()
        while not turns[0].done():  # the lease is written in a worker thread
            await asyncio.sleep(0.001)
        for _ in range(3):
            await asyncio.sleep(0)
        done_soon = sum(t.done() for t in turns)
        admitted = sum(a is not None for a in await asyncio.gather(*turns))
        await limiter.close()
        return leases, done_soon, admitted

    leases, done_soon, admitted = asyncio.run(scenario())

    assert leases == 1  # one lease for all of them
    assert admitted == waiting
    assert done_soon == waiting  # with the lock: about 4 of 64


def test_the_next_period_is_leased_before_it_starts(engine: Engine) -> None:
    """In a period's last two seconds a turn leases the next period's first slice in the
    background: when the period rolls over, no turn waits for the database. What is held of
    the period that ended goes back to its counter."""
    limit = Limit("requests:client:support", "minute", Decimal(1000))
    this_minute = dt.datetime(2026, 11, 27, 13, 45, tzinfo=dt.UTC)
    next_minute = this_minute + dt.timedelta(minutes=1)

    async def scenario() -> tuple[Decimal, int, Decimal, Decimal]:
        clock = Clock()
        clock.now = this_minute + dt.timedelta(seconds=59)
        limiter = Limiter(engine, clock=clock)
        limiter.settlements.start()
        assert await limiter.admit(limit, Decimal(1)) is not None
        while (limit.scope, next_minute) in limiter._leasing:
            await asyncio.sleep(0.001)
        ahead = limiter.held(limit.scope, next_minute)
        leases = 0
        lease = limiter._lease

        async def counted(*args: object) -> tuple[Decimal, Decimal]:
            nonlocal leases
            leases += 1
            return await lease(*args)  # type: ignore[arg-type]

        limiter._lease = counted  # type: ignore[method-assign,assignment]
        clock.now = next_minute + dt.timedelta(milliseconds=10)
        assert await limiter.admit(limit, Decimal(1)) is not None
        still_held = limiter.held(limit.scope, this_minute)
        await limiter.close()
        ended = read_counter(engine, limit.scope, this_minute)
        return ahead, leases, still_held, ended.leased

    ahead, leases, still_held, leased_in_ended_minute = asyncio.run(scenario())

    assert ahead == 50  # a slice: 5 % of the limit, leased while 13:45 still ran
    assert leases == 0  # the first turn of 13:46 did not wait for the database
    assert still_held == 0  # 13:45's slice given back when 13:46 began
    assert leased_in_ended_minute == 1  # the one turn admitted in 13:45 (not settled here)


def test_what_a_process_gives_back_of_a_scarce_limit_is_written_at_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settlements are written a few times a second (``SETTLE_INTERVAL``), but what a process
    gives back of a limit that is running out cannot wait for that: the other processes are
    refused meanwhile (a fleet under 25 requests a minute admitted 24 in CI once the interval
    grew from 0.05 to 0.25 s). Here the interval is 30 s, so only ``hurry`` can write it."""
    monkeypatch.setattr("serve.limits.SETTLE_INTERVAL", 30.0)
    limit = Limit("requests:client:burst", "minute", Decimal(4))
    start = period_start("minute", NOW)

    async def scenario() -> tuple[Decimal, Decimal]:
        limiter = Limiter(engine, clock=Clock(), slice_fraction=Decimal("0.5"))
        limiter.settlements.start()
        first = await limiter.admit(limit, Decimal(1))  # leases a slice of 2: 2 left, scarce
        assert first is not None
        limiter.settle(first, Decimal(1))  # written at once (the writer was idle) ...
        while limiter.settlements.pending:
            await asyncio.sleep(0.01)
        second = await limiter.admit(limit, Decimal(1))  # ... then it waits 30 s
        assert second is not None
        limiter.settle(second, Decimal(0))  # not spent: given back, the limit being scarce
        for _ in range(500):  # at most 5 s, far less than the interval
            counter = read_counter(engine, limit.scope, start)
            if counter.leased == 0:
                break
            await asyncio.sleep(0.01)
        await limiter.close()
        return counter.used, counter.leased

    assert asyncio.run(scenario()) == (Decimal(1), Decimal(0))
