"""Pacing of the daemon's passes: debounce, bursts, retry backoff, and outage reports.

Used by the loop in ``daemon.py``, which says when events arrive and passes start and end;
everything here takes the current (monotonic) time as an argument, so the rules are tested
with made-up times (``tests/daemon/test_pacing.py``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from reconciler.logs import Throttled
from reconciler.settings import DaemonSettings

log = logging.getLogger("samops.daemon")


class Pacer:
    """When the next pass is due: debounce, bursts and retry backoff.

    Pure bookkeeping: every method takes the current (monotonic) time, so the rules are
    tested with made-up times. A wake-up is owed from when it arrives until a pass that started
    after it succeeds (or ends with a recorded outcome such as invalid)."""

    def __init__(
        self,
        settings: DaemonSettings,
        jitter: Callable[[], float] = lambda: random.uniform(0.8, 1.2),  # noqa: S311
    ) -> None:
        self.settings = settings
        self.jitter = jitter
        self.owed_since: float | None = None
        """Time of the first wake-up that no pass has served yet (None: nothing owed)."""
        self.last_wake = 0.0
        self.burst = False
        self.running = False
        self.backoff = 0.0
        """The last retry wait (before jitter), 0 after a pass that did not fail."""
        self.retry_at = 0.0

    def woke(self, now: float) -> None:
        """An event. It ends a retry backoff: what it signals (a moved ref, a request, a new
        leader) may well succeed now, and is worth a pass at once."""
        if self.running or (self.owed_since is not None and self.burst):
            self.burst = True
        if self.owed_since is None:
            self.owed_since = now
        self.last_wake = now
        self.retry_at = 0.0

    def due(self) -> float | None:
        """When the owed pass may run (None when nothing is owed)."""
        if self.owed_since is None:
            return None
        quiet = self.settings.burst_quiet_seconds if self.burst else self.settings.debounce_seconds
        settled = min(
            self.last_wake + quiet, self.owed_since + self.settings.burst_max_wait_seconds
        )
        return max(settled, self.retry_at)

    def started(self) -> float | None:
        """A pass starts: it serves everything owed so far. Returns that, for ``failed``."""
        served, self.owed_since = self.owed_since, None
        self.running, self.burst = True, False
        return served

    def succeeded(self) -> None:
        self.running = False
        self.backoff = self.retry_at = 0.0

    def failed(self, now: float, served: float | None) -> float:
        """The pass failed transiently: what it served is owed again, after a backoff that
        doubles per failed pass. Returns the wait in seconds."""
        self.running = False
        initial, cap = self.settings.retry_initial_seconds, self.settings.retry_max_seconds
        self.backoff = initial if self.backoff == 0.0 else min(cap, self.backoff * 2)
        delay = self.backoff * self.jitter()
        self.retry_at = now + delay
        if served is not None:
            self.owed_since = served if self.owed_since is None else min(served, self.owed_since)
        return delay


class Outage(Throttled):
    """Reports an unreachable database without flooding the log (``Throttled``), with the
    daemon's retry intervals."""

    def __init__(self, settings: DaemonSettings) -> None:
        super().__init__(
            log,
            "database unavailable; serving the last applied state, retrying every "
            f"{settings.control_poll_seconds:g} s",
            "database reachable again",
            initial_seconds=settings.retry_initial_seconds,
            max_seconds=settings.retry_max_seconds,
        )
