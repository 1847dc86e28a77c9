"""The daemon: follow a source and keep the database equal to its latest revision.

The loop is level-based: whatever woke it (a ref moved, a webhook, the poll timer, a retry,
``samops reconcile``), a pass recomputes from the followed ref and the database, so bursts
coalesce (ten quick commits cause a couple of passes, and the last state wins) and nothing is
lost if an event is. One pass: [fetch] -> read -> validate -> apply -> publish, recorded once
in metrics and one log line carrying the revision.

What the loop does next depends on how a pass ended (the kopf/Flux split):

- applied, unchanged, up to date: wait for the next wake-up;
- invalid or refused: recorded by apply; nothing is retried until the ref moves (apply itself
  returns at once for an already-recorded revision);
- transient failure (git fetch, database): retry after a capped, jittered exponential backoff,
  while the server keeps serving the last applied state.

Only the leader applies (see ``leader.py``); a standby checks for leadership every
``control_poll_seconds``. Suspension and reconcile requests arrive through the state row.
Blocking work (git, the database) runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy.exc
from sqlalchemy import Engine

from reconciler.apply import ApplyError, ApplyResult, apply_revision
from reconciler.follow import Follower, Watch
from reconciler.leader import LeaderLock
from reconciler.metrics import ReconcilerMetrics
from reconciler.sam.load import LoadOptions
from reconciler.sam.revision import ParseCache, validate_files
from reconciler.source import SourceError
from reconciler.store.control import Control, read_control
from reconciler.store.db import DatabaseError

log = logging.getLogger("samops.daemon")
TRANSIENT = (
    SourceError,
    DatabaseError,
    ApplyError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
)


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """How the daemon paces itself. Every duration is in seconds."""

    source_name: str = "default"
    debounce_seconds: float = 0.01
    """Quiet time after a wake-up before a pass, so a burst of events is one pass."""
    poll_interval_seconds: float = 60.0
    """Fetch period for a remote repository (webhooks make it sooner)."""
    poll_jitter: float = 0.1
    """Random spread of the poll period, as a fraction of it (avoids herds of fetches)."""
    retry_initial_seconds: float = 0.5
    retry_max_seconds: float = 60.0
    control_poll_seconds: float = 1.0
    """How often suspension, reconcile requests and leadership are checked without events."""
    allow_empty: bool = False
    load_options: LoadOptions = field(default_factory=LoadOptions)


class Daemon:
    def __init__(
        self,
        *,
        engine: Engine,
        follower: Follower,
        leader: LeaderLock,
        metrics: ReconcilerMetrics,
        settings: DaemonSettings = DaemonSettings(),
        on_generation: Callable[[int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.follower = follower
        self.leader = leader
        self.metrics = metrics
        self.settings = settings
        self.on_generation = on_generation
        self.cache = ParseCache()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._fetch_wanted = True
        self._is_leader = False
        self._backoff = 0.0
        self._retry: asyncio.TimerHandle | None = None
        self._last_request: dt.datetime | None = None
        self.passes = 0

    # --- waking up ----------------------------------------------------------------------

    def trigger(self, reason: str, *, fetch: bool = False) -> None:
        """Ask for a pass soon. Safe to call from any thread (watchdog, webhook, timers)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        log.debug("wake-up", extra={"reason": reason})

        def wake() -> None:
            self._fetch_wanted = self._fetch_wanted or fetch
            self._wake.set()

        loop.call_soon_threadsafe(wake)

    async def _poll_remote(self, stop: asyncio.Event) -> None:
        interval = self.settings.poll_interval_seconds
        while not stop.is_set():
            spread = interval * self.settings.poll_jitter
            delay = max(0.1, interval + random.uniform(-spread, spread))  # noqa: S311
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                self.trigger("poll", fetch=True)

    # --- the loop -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set. Starts the watcher and, for a remote, the poll timer."""
        self._loop = asyncio.get_running_loop()
        watch = Watch(self.follower, lambda reason: self.trigger(reason))
        poller = (
            asyncio.create_task(self._poll_remote(stop), name="samops-poll")
            if self.follower.remote
            else None
        )
        log.info("following", extra={"source": self.follower.describe()})
        self.trigger("start", fetch=True)
        try:
            while not stop.is_set():
                woke = await self._wait(stop)
                if stop.is_set():
                    break
                await self._step(woke)
        finally:
            watch.stop()
            if poller is not None:
                poller.cancel()
            if self._retry is not None:
                self._retry.cancel()
            await asyncio.to_thread(self.leader.release)

    async def _wait(self, stop: asyncio.Event) -> bool:
        stopper = asyncio.ensure_future(stop.wait())
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait(
                {stopper, waker},
                timeout=self.settings.control_poll_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            stopper.cancel()
            waker.cancel()
        woke = self._wake.is_set()
        if woke:  # let a burst of events settle into one pass
            await asyncio.sleep(self.settings.debounce_seconds)
            self._wake.clear()
        return woke

    async def _step(self, woke: bool) -> None:
        try:
            leader, control = await asyncio.to_thread(self._leadership_and_control)
        except TRANSIENT as exc:
            log.warning("database unavailable", extra={"error": str(exc).splitlines()[0]})
            self._schedule_retry()
            return
        if leader and not self._is_leader:
            log.info("leading: this process applies revisions")
            woke, self._fetch_wanted = True, True
        self._is_leader = leader
        self.metrics.leader.set(1 if leader else 0)
        self.metrics.suspended.set(1 if control.suspended else 0)
        requested = control.reconcile_requested_at
        if self.passes and requested != self._last_request:  # `samops reconcile` since then
            woke, self._fetch_wanted = True, True
        self._last_request = requested
        if not leader or not woke:
            return
        if control.suspended:
            log.info("suspended: not applying", extra={"reason": control.suspended_reason})
            return
        fetch, self._fetch_wanted = self._fetch_wanted, False
        try:
            await asyncio.to_thread(self.reconcile_once, fetch=fetch)
        except TRANSIENT as exc:
            self.metrics.reconciles.labels(outcome="failed").inc()
            log.warning(
                "reconcile failed; retrying",
                extra={
                    "error": str(exc).splitlines()[0],
                    "retry_in_s": round(self._next_backoff(), 2),
                },
            )
            self._fetch_wanted = self._fetch_wanted or fetch
            self._schedule_retry()
        else:
            self._backoff = 0.0

    def _leadership_and_control(self) -> tuple[bool, Control]:
        leader = self.leader.try_acquire()
        with self.engine.connect() as connection:
            control = read_control(connection)
            connection.rollback()
        return leader, control

    def _next_backoff(self) -> float:
        if self._backoff == 0.0:
            return self.settings.retry_initial_seconds
        return min(self.settings.retry_max_seconds, self._backoff * 2)

    def _schedule_retry(self) -> None:
        self._backoff = self._next_backoff()
        delay = self._backoff * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not secrecy
        if self._retry is not None:
            self._retry.cancel()
        assert self._loop is not None
        self._retry = self._loop.call_later(delay, self.trigger, "retry")

    # --- one pass (worker thread) ---------------------------------------------------------

    def reconcile_once(self, *, fetch: bool = False) -> ApplyResult:
        """[fetch] -> read -> validate -> apply -> publish, with one summary at the end."""
        started = time.perf_counter()
        result: ApplyResult | None = None
        revision_id = ""
        try:
            if fetch and self.follower.remote:
                try:
                    self.follower.fetch()
                except SourceError:
                    self.metrics.fetch_failures.inc()
                    raise
            snapshot = self.follower.read()
            revision_id = snapshot.revision
            revision = validate_files(
                snapshot.revision,
                snapshot.files,
                options=self.settings.load_options,
                cache=self.cache,
                source_diagnostics=snapshot.diagnostics,
            )
            result = apply_revision(
                self.engine,
                revision,
                source=self.settings.source_name,
                allow_empty=self.settings.allow_empty,
                on_committed=self._published,
            )
            return result
        finally:
            self.passes += 1
            outcome = result.outcome if result is not None else "failed"
            self._summarise(outcome, revision_id, time.perf_counter() - started, result)

    def _summarise(
        self, outcome: str, revision: str, elapsed: float, result: ApplyResult | None
    ) -> None:
        self.metrics.duration.observe(elapsed)
        if outcome != "failed":
            self.metrics.reconciles.labels(outcome=outcome).inc()
        if result is None:
            return
        self.metrics.generation.set(result.generation)
        if outcome in ("applied", "unchanged"):
            self.metrics.last_applied.set(time.time())
        fields = {
            "revision": revision,
            "outcome": outcome,
            "generation": result.generation,
            "duration_ms": round(elapsed * 1000, 1),
        }
        if not result.plan.empty:
            fields["changes"] = (
                f"+{result.plan.count('create')} ~{result.plan.count('update')}"
                f" -{result.plan.count('delete')}"
            )
        if outcome == "invalid":
            fields["errors"] = len(result.errors)
            first = result.errors[0]
            log.warning(
                "revision is invalid; the last good state keeps serving: "
                f"{first.location()}: {first.message}",
                extra=fields,
            )
        elif outcome == "refused":
            log.warning(result.message, extra=fields)
        elif outcome == "up-to-date":
            log.debug("reconciled", extra=fields)
        else:
            log.info("reconciled", extra=fields)

    def _published(self, generation: int) -> None:
        """Called after the commit, in the worker thread: hand the generation to the loop."""
        if self.on_generation is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self.on_generation, generation)
