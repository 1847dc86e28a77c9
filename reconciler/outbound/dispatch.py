"""Sending events off the reconcile's path: deduplicated, queued, retried, counted.

Publish stage, after the fact. ``emit`` may be called from any thread (the daemon's pass runs
in a worker thread) and returns at once: it drops an event whose ``dedupe`` key was sent
before, then queues one delivery per target that takes the event. One task per target sends
its deliveries in order (a commit's ``pending`` before its ``success``), each with a timeout,
and retries a failed one (a connection error, a 5xx or a 429) with capped, jittered
exponential backoff; a refusal (any other 4xx) is not retried. Nothing here can slow or stop a
reconcile: a queue that is full drops its oldest delivery, and every outcome is counted in
``samops_outbound_deliveries_total{target,result}`` (sent, retried, failed, dropped) and
``samops_outbound_deduplicated_total``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from prometheus_client import CollectorRegistry, Counter

from reconciler.outbound.events import Event
from reconciler.outbound.targets import Request, Target

log = logging.getLogger("samops.outbound")
REMEMBERED = 4096
"""Dedupe keys kept (the oldest are forgotten first)."""


@dataclass(frozen=True, slots=True)
class Retry:
    attempts: int = 6
    first_delay: float = 1.0
    max_delay: float = 60.0
    timeout: float = 10.0
    """Seconds one request may take, connection included."""
    queue: int = 1000
    """Deliveries waiting per target."""

    def delay(self, attempt: int) -> float:
        """Before attempt ``attempt + 1``: doubling, capped, with up to 25 % jitter."""
        base: float = min(self.max_delay, self.first_delay * 2.0 ** (attempt - 1))
        return base * (0.75 + random.random() / 4)  # noqa: S311 - jitter, not a secret


class Retryable(Exception):
    """A delivery that may succeed later (connection, timeout, 5xx, 429)."""


class Outbound:
    """The dispatcher of one process. Create it inside the event loop it will run on."""

    def __init__(
        self,
        targets: Sequence[Target],
        *,
        registry: CollectorRegistry | None = None,
        retry: Retry | None = None,
    ) -> None:
        self.targets = list(targets)
        self.retry = retry or Retry()
        self._loop = asyncio.get_running_loop()
        self._queues: dict[str, asyncio.Queue[tuple[Event, Request]]] = {
            target.name: asyncio.Queue(self.retry.queue) for target in self.targets
        }
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.deliveries = Counter(
            "samops_outbound_deliveries",
            "Commit statuses and notifications by target and result: sent, retried (an "
            "attempt failed and another follows), failed (given up), dropped (queue full).",
            ["target", "result"],
            registry=registry,
        )
        self.deduplicated = Counter(
            "samops_outbound_deduplicated",
            "Events not sent again: the same kind, revision and reason were sent before.",
            registry=registry,
        )

    @property
    def enabled(self) -> bool:
        return bool(self.targets)

    def emit(self, event: Event) -> None:
        """Queue ``event`` for its targets. Any thread; never blocks."""
        if not self.targets:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._queue(event)
        else:
            self._loop.call_soon_threadsafe(self._queue, event)

    def _queue(self, event: Event) -> None:
        key = event.dedupe
        if key in self._seen:
            self.deduplicated.inc()
            log.debug("not sent again", extra={"kind": event.kind, "revision": event.revision})
            return
        self._seen[key] = None
        while len(self._seen) > REMEMBERED:
            self._seen.popitem(last=False)
        for target in self.targets:
            request = target.request(event)
            if request is None:
                continue
            queue = self._queues[target.name]
            if queue.full():
                queue.get_nowait()
                self.deliveries.labels(target.name, "dropped").inc()
            queue.put_nowait((event, request))

    async def run(self, stop: asyncio.Event) -> None:
        """Send until ``stop``; one task per target."""
        if not self.targets:
            await stop.wait()
            return
        timeout = aiohttp.ClientTimeout(total=self.retry.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            senders = [
                asyncio.create_task(self._send_all(http, target), name=f"outbound-{target.name}")
                for target in self.targets
            ]
            try:
                await stop.wait()
            finally:
                for sender in senders:
                    sender.cancel()
                await asyncio.gather(*senders, return_exceptions=True)

    async def _send_all(self, http: aiohttp.ClientSession, target: Target) -> None:
        queue = self._queues[target.name]
        while True:
            event, request = await queue.get()
            await self._deliver(http, target, event, request)

    async def _deliver(
        self, http: aiohttp.ClientSession, target: Target, event: Event, request: Request
    ) -> None:
        fields = {"target": repr(target), "kind": event.kind, "revision": event.revision}
        for attempt in range(1, self.retry.attempts + 1):
            try:
                await _post(http, request)
            except Retryable as exc:
                if attempt == self.retry.attempts:
                    self.deliveries.labels(target.name, "failed").inc()
                    log.warning("delivery given up", extra={**fields, "error": str(exc)})
                    return
                self.deliveries.labels(target.name, "retried").inc()
                await asyncio.sleep(self.retry.delay(attempt))
            except ValueError as exc:  # refused: the same request would be refused again
                self.deliveries.labels(target.name, "failed").inc()
                log.warning("delivery refused", extra={**fields, "error": str(exc)})
                return
            else:
                self.deliveries.labels(target.name, "sent").inc()
                log.debug("delivered", extra=fields)
                return


async def _post(http: aiohttp.ClientSession, request: Request) -> None:
    """One attempt: ``Retryable`` or ``ValueError`` (refused) when it did not land. The
    library's errors are translated here, and never carry the URL (it may hold a secret)."""
    try:
        async with http.post(request.url, data=request.body, headers=request.headers) as answer:
            status = answer.status
            if status < 300:
                return
            detail = (await answer.text())[:200]
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise Retryable(f"{type(exc).__name__}: the target could not be reached") from None
    if status >= 500 or status == 429:
        raise Retryable(f"HTTP {status}")
    raise ValueError(f"HTTP {status}: {detail}")
