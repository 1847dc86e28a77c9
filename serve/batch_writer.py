"""Records written in batches off the request path: chat turns, usage.

Serve stage, the one way the serving process writes what requests leave behind
(``sessions.py`` for chat turns, ``usage.py`` for what each turn cost). ``record`` queues an
item (synchronous, O(1)), so a response never waits for the database. One writer task takes
everything queued (at most ``max_batch`` items) and writes it in one worker-thread hop with
the owner's ``write`` (one transaction: group commit). When the write fails:

- transiently (``DatabaseUnavailable``: the server is down, restarting, read-only during a
  fail-over, a connection dropped): the batch is kept and retried with capped, jittered
  exponential backoff; a warning is logged at most every few seconds while it fails, and an
  info line with the number of items written once it succeeds;
- for any other reason (the database refuses some item's data): the batch's items are retried
  one at a time and only an item that fails on its own is dropped, logged at error level with
  the owner's short description of it (never its data).

Memory is bounded: at most ``max_pending`` items wait behind the batch being written; when
the queue is full the oldest waiting item is dropped (logged at most every few seconds).
Counters, for tests and metrics: ``written``, ``dropped`` (queue full), ``rejected``
(refused by the database), ``lost`` (given up at shutdown), and ``pending`` (queued or being
written); ``on_unstored(reason, count)`` is told of each loss as it happens.

Shutdown. ``close(timeout)`` writes everything pending, so a clean shutdown loses nothing
while the database answers; if it keeps failing, ``close`` gives up after ``timeout`` seconds
and logs at error level how many items are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from reconciler.errors import DatabaseError, DatabaseRefused, DatabaseUnavailable
from reconciler.store.db import driver_reason

Item = TypeVar("Item")


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be used right now (try again later), rather
    than that it refused this data (``reconciler/store/db.py`` decides which)."""
    return isinstance(exc, DatabaseUnavailable)


def log_safe_reason(exc: BaseException) -> str:
    """A log-safe reason: never the statement or its parameters, which hold the data."""
    if isinstance(exc, DatabaseRefused):
        return str(exc)
    if isinstance(exc, DatabaseError) and exc.__cause__ is not None:
        return driver_reason(exc.__cause__)
    return type(exc).__name__


class Every:
    """Lets a repeated log line through at most once per ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.last = seconds, -float("inf")

    def due(self) -> bool:
        now = time.monotonic()
        if now - self.last < self.seconds:
            return False
        self.last = now
        return True


class BatchWriter(Generic[Item]):
    """The queue and the writer task (see the module doc)."""

    def __init__(
        self,
        write: Callable[[Sequence[Item]], None],
        *,
        what: str,
        log: logging.Logger,
        name: str,
        describe: Callable[[Item], str] = lambda _item: "",
        forget: Callable[[Item], None] = lambda _item: None,
        max_pending: int = 10_000,
        max_batch: int = 500,
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
        log_every: float = 5.0,
        on_unstored: Callable[[str, int], None] = lambda _reason, _count: None,
        min_interval: float = 0.0,
    ) -> None:
        """``write``: one transaction for a batch, in a worker thread; ``what``: the items'
        plural for log lines ("chat turns"); ``name``: the writer task's; ``describe``: a
        short, log-safe phrase naming an item ("of session 1a2b3c4d"); ``forget``: told of
        every item that leaves the queue, written or not; ``max_pending``: items that may
        wait behind the batch being written; ``max_batch``: items per transaction;
        ``retry_initial``/``retry_max``: seconds between attempts while the database fails
        (doubling); ``log_every``: seconds between repeated logs; ``min_interval``: seconds
        from one write to the next at least (items gather meanwhile: fewer, larger
        transactions for items nobody waits for)."""
        self.write, self.what, self.log, self.name = write, what, log, name
        self.describe, self.forget, self.on_unstored = describe, forget, on_unstored
        self.max_pending, self.max_batch = max_pending, max_batch
        self.retry_initial, self.retry_max = retry_initial, retry_max
        self.min_interval = min_interval
        self.written = self.dropped = self.rejected = self.lost = 0
        self._queue: deque[Item] = deque()
        self._batch: list[Item] = []
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._hurry = asyncio.Event()  # cuts ``min_interval``'s wait short
        self._deadline = float("inf")
        self._writer: asyncio.Task[None] | None = None
        self._failing_since: float | None = None
        self._warn, self._full = Every(log_every), Every(log_every)

    @property
    def pending(self) -> int:
        """Items not written yet: queued, or in the batch being written."""
        return len(self._queue) + len(self._batch)

    @property
    def failing(self) -> bool:
        """Whether the last write failed transiently (the items wait for the database)."""
        return self._failing_since is not None

    def unwritten(self) -> Iterator[Item]:
        """The items not written yet, oldest first."""
        yield from self._batch
        yield from self._queue

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_forever(), name=self.name)

    @property
    def writer(self) -> asyncio.Task[None]:
        """The writer task (a root task of the serving process), once started."""
        assert self._writer is not None, "start() the writer first"
        return self._writer

    def record(self, item: Item) -> None:
        """Queue ``item`` for writing; when the queue is full, drop its oldest item."""
        if len(self._queue) >= self.max_pending:
            oldest = self._queue.popleft()
            self.forget(oldest)
            self.dropped += 1
            self.on_unstored("dropped", 1)
            if self._full.due():
                self.log.error(
                    "the %s queue is full (%d wait for the database): dropped the oldest, %s "
                    "(%d dropped since start)",
                    self.what,
                    self.max_pending,
                    self.describe(oldest),
                    self.dropped,
                    extra={"dropped": self.dropped},
                )
        self._queue.append(item)
        self._wake.set()

    def hurry(self) -> None:
        """Write what is queued without waiting out ``min_interval`` (something waits for
        it: what a process gives back of a scarce limit, which other processes need now)."""
        self._hurry.set()
        self._wake.set()

    async def close(self, timeout: float = 10.0) -> None:
        """Write everything pending, then stop. While the database fails, no attempt starts
        after ``timeout`` seconds; one already running is given as long again, then abandoned
        in its thread. What is left is logged as lost."""
        if self._writer is None:
            if not self.pending:
                return
            self.start()
        assert self._writer is not None
        self._deadline = asyncio.get_running_loop().time() + timeout
        self._closing.set()
        self._hurry.set()
        self._wake.set()
        done, _ = await asyncio.wait({self._writer}, timeout=2 * timeout)
        if not done:
            self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        if self.pending:
            self.lost += self.pending
            self.on_unstored("lost", self.pending)
            self.log.error(
                "gave up writing %d %s after %g s at shutdown: the database did not accept "
                "them, they are lost%s",
                self.pending,
                self.what,
                timeout,
                "" if done else " (unless the attempt still running in a thread succeeds)",
                extra={"count": self.pending},
            )
            for item in self.unwritten():
                self.forget(item)
            self._batch, self._queue = [], deque()

    async def _write_forever(self) -> None:
        delay = self.retry_initial
        loop = asyncio.get_running_loop()
        while True:
            if not self._batch:
                if not self._queue:
                    if self._closing.is_set():
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                self._batch = [
                    self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))
                ]
            try:
                await self._flush()
            except Exception as exc:  # transient: _flush handled the rest
                self._failed(exc, delay)
                if loop.time() >= self._deadline:
                    return
                await self._pause(delay, loop)
                if loop.time() >= self._deadline:
                    return
                delay = min(delay * 2, self.retry_max)
            else:
                delay = self.retry_initial
                if self.min_interval and not self._hurry.is_set():
                    with contextlib.suppress(TimeoutError):  # closing or hurry cut it short
                        await asyncio.wait_for(self._hurry.wait(), self.min_interval)
                if not self._closing.is_set():
                    self._hurry.clear()

    async def _flush(self) -> None:
        """Write the batch; raise only a transient error, keeping what is left of the batch."""
        batch = self._batch
        try:
            await asyncio.to_thread(self.write, batch)
        except Exception as exc:
            if transient(exc):
                raise
            while self._batch:  # find the item that the database refuses
                item = self._batch[0]
                try:
                    await asyncio.to_thread(self.write, [item])
                except Exception as alone:
                    if transient(alone):
                        raise
                    self._reject(item, alone)
                else:
                    self._done([item])
                self._batch.pop(0)
            return
        self._done(batch)
        self._batch = []

    def _done(self, items: Sequence[Item]) -> None:
        self.written += len(items)
        for item in items:
            self.forget(item)
        if self._failing_since is not None:
            self.log.info(
                "wrote %d %s after %.1f s of database failures (%d more pending)",
                len(items),
                self.what,
                time.monotonic() - self._failing_since,
                self.pending - len(items),
                extra={"count": len(items)},
            )
            self._failing_since = None

    def _failed(self, exc: BaseException, delay: float) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        if self._warn.due():
            self.log.warning(
                "could not write %d %s, keeping them and retrying (next in %.2g s): %s",
                self.pending,
                self.what,
                delay,
                log_safe_reason(exc),
                extra={"count": self.pending},
            )

    def _reject(self, item: Item, exc: BaseException) -> None:
        self.rejected += 1
        self.on_unstored("refused", 1)
        self.forget(item)
        self.log.error(
            "dropped one of the %s, %s, that the database refuses: %s",
            self.what,
            self.describe(item),
            log_safe_reason(exc),
        )

    async def _pause(self, delay: float, loop: asyncio.AbstractEventLoop) -> None:
        """Wait before the next attempt; closing cuts the wait short, once."""
        delay *= random.uniform(0.8, 1.2)  # noqa: S311 - spreads replicas' retries
        if self._closing.is_set():
            await asyncio.sleep(max(0.0, min(delay, self._deadline - loop.time())))
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), delay)
