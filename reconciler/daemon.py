"""The daemon: follow a source and keep the database equal to its latest revision.

The loop is level-based: whatever woke it (a ref moved, a webhook, the poll timer,
``samops reconcile``, leadership gained), a pass recomputes from the followed ref and the
database, so nothing is lost if an event is, and the last state always wins. One pass:
[fetch] -> read -> validate -> apply -> publish, recorded once in metrics and one log line
carrying the revision.

When a pass runs is the ``Pacer``'s decision (``pacing.py``; pure, so it is tested without a
clock):

- an isolated wake-up passes after a short debounce (``debounce_seconds``; each event within
  it restarts it, since one commit makes several file-system events), so a commit applies in
  tens of milliseconds;
- wake-ups that arrive while a pass runs, or while a burst settles, make a burst: the next pass
  waits for ``burst_quiet_seconds`` without events (at most ``burst_max_wait_seconds`` after
  the first unserved wake-up), so ten quick commits cause a couple of passes;
- a wake-up stays owed until a pass has served it: a transient failure anywhere (the
  leadership/control check, git, the database) leaves it owed.

What the loop does next depends on how a pass ended (the kopf/Flux split):

- applied, unchanged, up to date: wait for the next wake-up;
- invalid or refused: recorded by apply; nothing is retried until the ref moves (apply itself
  returns at once for an already-recorded revision);
- transient failure (git fetch, database): retry after a capped, jittered exponential backoff,
  while the server keeps serving the last applied state. A new event retries at once.

Before every pass, and every ``control_poll_seconds`` without events, the control check reads
leadership (only the leader applies, see ``leader.py``), suspension and reconcile requests from
the database. A failed check is an outage, not a failed pass: it never grows the pass backoff,
it is retried every ``control_poll_seconds``, the owed pass runs as soon as the database
answers, and the outage is logged once when it starts, then at most once per backoff interval,
and once (info) when it ends. Blocking work (git, the database) runs in a worker thread, never
on the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Mapping

from sqlalchemy import Engine

from reconciler.apply import ApplyResult, StalePlan, apply_if_files_unchanged, apply_revision
from reconciler.desired import Identity, ResourceState
from reconciler.errors import PermanentError, SourceError, TemporaryError
from reconciler.follow import Follower, Watch
from reconciler.incremental import AppliedRevision, Listing, Planned, next_revision
from reconciler.leader import LeaderLock
from reconciler.logs import log_pass
from reconciler.metrics import ReconcilerMetrics
from reconciler.outbound.reporter import SyncReporter
from reconciler.pacing import Outage, Pacer
from reconciler.progress import Progress
from reconciler.sam.revision import ParseCache, Revision, validate_files
from reconciler.sam.yamlread import ReadLimits
from reconciler.settings import DaemonSettings
from reconciler.source import Known, RevisionFiles
from reconciler.store.control import Control, read_control
from reconciler.store.db import reading, translated_errors
from reconciler.store.read import read_actual
from reconciler.whole import RunningChild, pass_whole, pass_whole_in_child

log = logging.getLogger("samops.daemon")
DEFAULT_SETTINGS = DaemonSettings()
TRANSIENT = TemporaryError
"""What the loop retries with backoff; ``PermanentError`` and bugs wait for the next trigger."""


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


PARSE_CACHE_ENTRIES = 2_000
"""Files whose parse the daemon keeps: the files of recent commits, which passes by what
changed parse (a revert parses nothing). The whole-revision path (a start, an invalid commit)
reads and parses every file and keeps none of them: 20,000 parses hold about 200 MB, and
kept ones would pin the memory of the pass that made them."""
MAX_CATCH_UPS = 3
"""Newer commits a pass follows before it applies what it has (a ref that never rests)."""


class Daemon:
    def __init__(
        self,
        *,
        engine: Engine,
        follower: Follower,
        leader: LeaderLock,
        metrics: ReconcilerMetrics,
        settings: DaemonSettings = DEFAULT_SETTINGS,
        on_generation: Callable[[int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.follower = follower
        self.leader = leader
        self.metrics = metrics
        self.settings = settings
        self.on_generation = on_generation
        self.cache = ParseCache(max_entries=PARSE_CACHE_ENTRIES)
        self.pacer = Pacer(settings)
        self.outage = Outage(settings)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._fetch_wanted = True
        self._blocked = False
        """The owed pass cannot run (standby, suspended, database down) until a control check
        says otherwise: wait for the next one instead of spinning."""
        self._is_leader = False
        self._control_seen = False
        self._last_request: dt.datetime | None = None
        self.memory: AppliedRevision | None = None
        self._child = RunningChild()
        """What this process last applied, for passes that cost what changed."""
        self._reading = ""
        self.last_pass_incremental = False
        """Whether the last pass was planned by what changed (tests and the log line)."""
        self.passes = 0
        self.last_pass_revision: str | None = None
        """The revision the last pass read (None when it failed before reading one)."""
        self.reporter = SyncReporter()
        """Tells ``reporter.on_event`` of each pass and control change (``outbound/``)."""

    # --- waking up ----------------------------------------------------------------------

    def trigger(self, reason: str, *, fetch: bool = False) -> None:
        """Ask for a pass soon. Safe to call from any thread (watchdog, webhook, timers)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._woke, reason, fetch)

    def _woke(self, reason: str, fetch: bool) -> None:
        log.debug("wake-up", extra={"reason": reason})
        self._fetch_wanted = self._fetch_wanted or fetch
        self.pacer.woke(time.monotonic())
        self._blocked = False
        self._wake.set()

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
        self._woke("start", True)
        try:
            while not stop.is_set():
                await self._sleep(stop)
                if stop.is_set():
                    break
                await self._step()
        finally:
            self._child.kill()  # a whole pass under way: its transaction rolls back
            watch.stop()
            if poller is not None:
                poller.cancel()
            await asyncio.to_thread(self.leader.release)

    async def _sleep(self, stop: asyncio.Event) -> None:
        """Until the owed pass is due, the control check is, or ``stop``."""
        poll_at = time.monotonic() + self.settings.control_poll_seconds
        while not stop.is_set():
            due = None if self._blocked else self.pacer.due()
            timeout = (poll_at if due is None else min(poll_at, due)) - time.monotonic()
            if timeout <= 0:
                return
            self._wake.clear()
            stopper = asyncio.ensure_future(stop.wait())
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait(
                    {stopper, waker}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                stopper.cancel()
                waker.cancel()

    async def _step(self) -> None:
        """The control check, then the owed pass if it is due and allowed."""
        try:
            leader, control = await asyncio.to_thread(self._leadership_and_control)
        except TRANSIENT as exc:
            self.outage.failed(time.monotonic(), _first_line(exc))
            self._blocked = True
            return
        self.outage.recovered(time.monotonic())
        was_blocked, self._blocked = self._blocked, False
        self._observe(leader, control)
        due = self.pacer.due()
        if due is None or due > time.monotonic():
            return
        if not leader:
            self._blocked = True
            return
        if control.suspended:
            if not was_blocked:  # once per wake-up, not once per control check
                log.info("suspended: not applying", extra={"reason": control.suspended_reason})
            self._blocked = True
            return
        await self._pass()

    @property
    def leading(self) -> bool:
        """Whether this daemon held the leader lock at its last look."""
        return self._is_leader

    def _observe(self, leader: bool, control: Control) -> None:
        if leader and not self._is_leader:
            log.info("leading: this process applies revisions")
            self._woke("leading", True)
        self._is_leader = leader
        if leader:
            self.reporter.control(control)
        self.metrics.leader.set(1 if leader else 0)
        self.metrics.suspended.set(1 if control.suspended else 0)
        requested = control.reconcile_requested_at
        if self._control_seen and requested != self._last_request:  # `samops reconcile`
            self._woke("reconcile requested", True)
        self._control_seen, self._last_request = True, requested

    async def _pass(self) -> None:
        fetch, self._fetch_wanted = self._fetch_wanted, False
        served = self.pacer.started()
        try:
            await asyncio.to_thread(self._translated_pass, fetch)
        except TemporaryError as exc:
            delay = self.pacer.failed(time.monotonic(), served)
            self._fetch_wanted = self._fetch_wanted or fetch
            fields = {**self._revision_field(), "error": _first_line(exc)}
            log.warning(
                "reconcile failed; retrying", extra={**fields, "retry_in_s": round(delay, 2)}
            )
            self._failed(_first_line(exc))
        except PermanentError as exc:  # the same input fails the same way: wait for a new one
            self.pacer.succeeded()
            fields = {**self._revision_field(), "error": _first_line(exc)}
            log.error("reconcile failed; waiting for a new revision", extra=fields)
            self._failed(_first_line(exc))
        except Exception:  # a bug in samops: shown in full, never retried as if transient
            self.pacer.succeeded()
            log.exception(
                "reconcile failed on an internal error; waiting for a new revision",
                extra=self._revision_field(),
            )
            self._failed("an internal error of samops (see its log)")
        else:
            self.pacer.succeeded()

    def _failed(self, message: str) -> None:
        """A pass that raised: a failed sync, if it had read a revision."""
        if self.last_pass_revision:
            self.reporter.finished("failed", self.last_pass_revision, 0, [], message)

    def _revision_field(self) -> dict[str, object]:
        return {"revision": self.last_pass_revision} if self.last_pass_revision else {}

    def _translated_pass(self, fetch: bool) -> ApplyResult:
        """``reconcile_once``, with the database's errors as ``DatabaseError``s wherever they
        surface (a read before the apply's own translation, the record of an invalid one)."""
        with translated_errors(str(self.engine.url)):
            return self.reconcile_once(fetch=fetch)

    def _leadership_and_control(self) -> tuple[bool, Control]:
        with translated_errors(str(self.engine.url)):
            return self._read_leadership_and_control()

    def _read_leadership_and_control(self) -> tuple[bool, Control]:
        leader = self.leader.try_acquire()
        with reading(self.engine) as connection:
            control = read_control(connection)
            connection.rollback()
        return leader, control

    # --- one pass (worker thread) ---------------------------------------------------------

    def reconcile_once(self, *, fetch: bool = False) -> ApplyResult:
        """[fetch] -> peek (the applied files again? record it, done) -> read -> validate ->
        apply -> publish, with one summary at the end."""
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
            peek = self.follower.peek()
            if peek is not None:  # a commit that leaves the manifests as applied: no read
                revision_id = peek.revision
                self.reporter.started(peek.revision)
                result = apply_if_files_unchanged(
                    self.engine, peek, source=self.settings.source_name
                )
                if result is not None:
                    if self.memory is not None:
                        self.memory.moved_to(result.revision, result.generation)
                    return result
            self._reading, self.last_pass_incremental = "", False
            result = self._apply_newest()
            return result
        finally:
            revision_id = result.revision if result is not None else self._reading or revision_id
            self.passes += 1
            self.last_pass_revision = revision_id or None
            outcome = result.outcome if result is not None else "failed"
            self._summarise(outcome, revision_id, time.perf_counter() - started, result)

    def _apply_newest(self) -> ApplyResult:
        """Read the followed ref and apply it: by what changed since the applied revision
        (``incremental.py``) when this process remembers it and can prove the change valid,
        else as a whole revision. When the ref moved meanwhile (a revocation committed while a
        large revision was being validated), start again from the newer commit rather than
        apply a stale one."""
        options, limits = self.settings.load_options, ReadLimits()
        memory = self.memory

        def known(path: str, blob: str) -> bool:  # its parse is at hand: git need not read it
            at_hand = memory is not None and memory.files.get(path) == blob
            return at_hand or (path, blob, options, limits) in self.cache

        for _ in range(MAX_CATCH_UPS + 1):
            self._reading, snapshot, listing = self._list(memory, known)
            self.reporter.started(self._reading)
            change = (
                next_revision(
                    memory,
                    listing,
                    cache=self.cache,
                    options=options,
                    limits=limits,
                    rows=self._rows,
                )
                if memory is not None and listing is not None
                else None
            )
            latest = self.follower.peek()
            if latest is None or latest.revision == self._reading:
                break
            log.info(
                "superseded before apply: reading the newer commit",
                extra={"revision": self._reading, "newer": latest.revision},
            )
        if change is not None and memory is not None:
            try:
                result = self._apply(change.revision, change.planned)
            except StalePlan:
                log.info("another applier moved the database: planning against its rows")
                self.memory = None
            else:
                if result.outcome in ("applied", "unchanged"):
                    memory.advance(change, result.generation)
                self.last_pass_incremental = True
                return result
        if snapshot is None:  # the changes were listed: the whole revision is needed
            snapshot = self.follower.read(lambda _path, _blob: True)
            self._reading = snapshot.revision
        return self._apply_whole(snapshot)

    def _list(
        self, memory: AppliedRevision | None, known: Known
    ) -> tuple[str, RevisionFiles | None, Listing | None]:
        """The followed revision and its files: what changed since the memory's git tree when
        a diff can say (milliseconds at any size), else every file listed (those ``known``
        left unread; without a memory, all of them: the whole pass reads them where it runs).
        The listing is None without a memory; the files, with a diff."""
        if memory is None:
            snapshot = self.follower.read(lambda _path, _blob: True)
            return snapshot.revision, snapshot, None
        if memory.tree is not None and not memory.links:
            found = self.follower.changes(memory.tree)
            if found is not None:
                return found.revision, None, Listing.of_changes(memory, found)
        snapshot = self.follower.read(known)
        return snapshot.revision, snapshot, Listing.of_files(memory, snapshot)

    def _apply_whole(self, snapshot: RevisionFiles) -> ApplyResult:
        """Validate, plan and apply every file (``whole.py``): in a child process when the
        revision has ``whole_pass_child_files`` files or more, else here. Remember the
        revision once the database is at it."""
        self.memory = None
        threshold = self.settings.whole_pass_child_files
        if threshold is not None and len(snapshot.files) >= threshold:
            done = pass_whole_in_child(self.engine, self.follower, self.settings, self._child)
            if done.result.outcome == "applied":
                self._published(done.result.generation)
        else:
            options, limits = self.settings.load_options, ReadLimits()

            def reread() -> RevisionFiles:
                fresh = self.follower.read(lambda p, b: (p, b, options, limits) in self.cache)
                self._reading = fresh.revision
                return fresh

            done = pass_whole(
                self.engine,
                snapshot,
                settings=self.settings,
                cache=self.cache,
                reread=reread,
                on_committed=self._published,
            )
        self.memory = done.memory
        return done.result

    def validated(self, snapshot: RevisionFiles, progress: Progress | None = None) -> Revision:
        """Every file of ``snapshot`` validated as one revision: parses from the cache when
        it has them, none added (``PARSE_CACHE_ENTRIES``)."""
        return validate_files(
            snapshot.revision,
            snapshot.files,
            options=self.settings.load_options,
            limits=ReadLimits(),
            cache=self.cache,
            source_diagnostics=snapshot.diagnostics,
            digest=snapshot.digest,
            keep_new_parses=False,
            progress=progress,
        )

    def _rows(self, identities: set[Identity]) -> Mapping[Identity, ResourceState]:
        """The stored rows of ``identities`` (those of this source that exist)."""
        with reading(self.engine) as connection:
            found = read_actual(connection, source=self.settings.source_name, only=identities)
            connection.rollback()
        return found

    def _apply(
        self, revision: Revision, planned: Planned | None, progress: Progress | None = None
    ) -> ApplyResult:
        return apply_revision(
            self.engine,
            revision,
            source=self.settings.source_name,
            allow_empty=self.settings.allow_empty,
            on_committed=self._published,
            planned=planned,
            progress=progress,
        )

    def _summarise(
        self, outcome: str, revision: str, elapsed: float, result: ApplyResult | None
    ) -> None:
        """Metrics and the log line of a pass; a failed pass is logged by the loop, which
        knows when it retries."""
        self.metrics.duration.observe(elapsed)
        self.metrics.reconciles.labels(outcome=outcome).inc()
        if result is None:
            return
        self.metrics.generation.set(result.generation)
        if revision:
            errors = [d.to_json() for d in result.errors]
            self.reporter.finished(outcome, revision, result.generation, errors, result.message)
        if outcome in ("applied", "unchanged"):
            self.metrics.last_applied.set(time.time())
        log_pass(log, outcome, revision, elapsed, result, incremental=self.last_pass_incremental)

    def _published(self, generation: int) -> None:
        """Called after the commit, in the worker thread: hand the generation to the loop."""
        if self.on_generation is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self.on_generation, generation)
