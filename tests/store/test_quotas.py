"""Shared counters of limits (``reconciler/store/quotas.py``): processes racing for slices of
one limit, on SQLite and PostgreSQL, never get more than the limit together."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
from decimal import Decimal

from sqlalchemy import Engine

from reconciler.store.quotas import Settlement, lease, read_counter, settle
from tests.conftest import PROJECT_ROOT

PERIOD = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
RACER = """
import datetime as dt, sys
from decimal import Decimal
from reconciler.store.db import create_database_engine
from reconciler.store.quotas import lease
engine = create_database_engine(sys.argv[1], create=False)
period = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
granted = [lease(engine, "budget:shared", period, Decimal(7), Decimal(1000)) for _ in range(60)]
print(sum(granted))
"""


def test_racing_processes_lease_exactly_the_limit_and_no_more(
    engine: Engine, database_url: str
) -> None:
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, database_url],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    taken = [Decimal(racer.communicate(timeout=120)[0].strip()) for racer in racers]

    assert sum(taken) == Decimal(1000)  # 4 x 60 x 7 = 1,680 asked for: the limit is given
    counter = read_counter(engine, "budget:shared", PERIOD)
    assert (counter.used, counter.leased) == (Decimal(0), Decimal(1000))


def test_settling_moves_spent_to_used_and_returns_the_rest(engine: Engine) -> None:
    first = lease(engine, "requests:client:support", PERIOD, Decimal(30), Decimal(50))
    second = lease(engine, "requests:client:support", PERIOD, Decimal(30), Decimal(50))
    assert (first, second) == (Decimal(30), Decimal(20))
    assert lease(engine, "requests:client:support", PERIOD, Decimal(1), Decimal(50)) == 0

    settle(
        engine,
        [Settlement("requests:client:support", PERIOD, spent=Decimal(12), returned=Decimal(18))],
    )

    counter = read_counter(engine, "requests:client:support", PERIOD)
    assert (counter.used, counter.leased) == (Decimal(12), Decimal(20))
    assert lease(engine, "requests:client:support", PERIOD, Decimal(100), Decimal(50)) == 18
    next_period = PERIOD + dt.timedelta(minutes=1)  # a new window starts from nothing
    assert lease(engine, "requests:client:support", next_period, Decimal(100), Decimal(50)) == 50


def test_a_new_periods_first_slices_leased_at_once_are_all_counted(engine: Engine) -> None:
    """Eight leases of a period nobody counted yet, released together: each finds or makes
    the one row (it once failed with a duplicate key when two inserted it at once)."""
    start = threading.Barrier(8)
    granted: list[Decimal] = []

    def racer() -> None:
        start.wait(timeout=30)
        granted.append(lease(engine, "budget:fresh", PERIOD, Decimal(10), Decimal(50)))

    threads = [threading.Thread(target=racer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(granted) == [0, 0, 0, 10, 10, 10, 10, 10]
    assert read_counter(engine, "budget:fresh", PERIOD).leased == Decimal(50)
