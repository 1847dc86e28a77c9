"""When passes run: the daemon's pacing rules (debounce, bursts, retry backoff) and its outage
reports, on made-up times (no clock, no sleeps)."""

from __future__ import annotations

import logging

import pytest

from reconciler.pacing import Outage, Pacer
from reconciler.settings import DaemonSettings

SETTINGS = DaemonSettings(
    debounce_seconds=0.01,
    burst_quiet_seconds=0.1,
    burst_max_wait_seconds=1.0,
    retry_initial_seconds=0.5,
    retry_max_seconds=4.0,
    control_poll_seconds=1.0,
)


def pacer() -> Pacer:
    return Pacer(SETTINGS, jitter=lambda: 1.0)


def test_nothing_owed_means_no_pass() -> None:
    assert pacer().due() is None


@pytest.mark.parametrize(
    ("wakes", "due"),
    [
        pytest.param([10.0], 10.01, id="isolated-wake-after-the-debounce"),
        pytest.param([10.0, 10.002, 10.004], 10.014, id="events-of-one-commit-restart-it"),
        pytest.param([10.0 + n * 0.005 for n in range(1000)], 11.0, id="never-quiet-capped"),
    ],
)
def test_wake_ups_before_a_pass_are_debounced(wakes: list[float], due: float) -> None:
    p = pacer()
    for moment in wakes:
        p.woke(moment)
    assert p.due() == pytest.approx(due)


def test_wake_ups_during_a_pass_wait_for_a_quiet_period() -> None:
    p = pacer()
    p.woke(10.0)
    p.started()
    p.woke(10.02)  # a second commit lands while the first is applied
    p.succeeded()
    assert p.due() == pytest.approx(10.12)
    p.woke(10.15)  # the burst goes on: each event restarts the quiet period
    p.woke(10.24)
    assert p.due() == pytest.approx(10.34)
    for n in range(40):  # and it never waits more than the cap after its first event
        p.woke(10.3 + n * 0.05)
    assert p.due() == pytest.approx(11.02)


def test_after_a_burst_an_isolated_wake_is_fast_again() -> None:
    p = pacer()
    p.woke(10.0)
    p.started()
    p.woke(10.02)
    p.succeeded()
    p.started()
    p.succeeded()
    assert p.due() is None
    p.woke(20.0)
    assert p.due() == pytest.approx(20.01)


def test_failed_pass_stays_owed_with_a_doubling_capped_backoff() -> None:
    p = pacer()
    p.woke(10.0)
    retries = []
    now = 10.01
    for _ in range(5):
        served = p.started()
        retries.append(p.failed(now, served))
        assert p.due() == pytest.approx(now + retries[-1])
        now += retries[-1]
    assert retries == [0.5, 1.0, 2.0, 4.0, 4.0]
    p.started()
    p.succeeded()
    assert (p.due(), p.backoff) == (None, 0.0)


def test_an_event_during_the_backoff_is_served_at_once() -> None:
    p = pacer()
    p.woke(10.0)
    p.failed(10.01, p.started())
    p.woke(10.2)  # a new commit: worth trying now
    assert p.due() == pytest.approx(10.21)
    p.failed(10.21, p.started())
    assert p.backoff == 1.0  # and if it fails too, the backoff goes on growing


def test_outage_is_reported_once_then_sparsely_then_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage(SETTINGS)
    with caplog.at_level(logging.DEBUG, logger="samops.daemon"):
        for second in range(60):  # a control check a second, for a minute
            outage.failed(100.0 + second, "connection refused")
        outage.recovered(160.0)
        outage.recovered(161.0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    checks = [r for r in caplog.records if r.levelno in (logging.DEBUG, logging.WARNING)]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(checks) == 60
    assert [vars(r)["failed_checks"] for r in warnings][:5] == [1, 2, 3, 5, 9]
    assert len(warnings) <= 3 + 60 // SETTINGS.retry_max_seconds + 1
    assert infos == ["database reachable again"]
