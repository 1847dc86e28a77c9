"""Chat sessions: history, tool calls and plugin uses, persisted without holding responses.

Serve stage, used by the Smarter-compatible routes (``serve/chat_routes.py``). A session is
identified by a 64-hex ``session_key``; the next turn continues from its history.

Writing. ``record`` queues a finished turn (synchronous, O(1)), so a response never waits for
the database. One writer task takes everything queued (at most ``max_batch`` turns) and writes
it in one transaction, in one worker-thread hop (group commit); several turns of a session in
a batch get consecutive positions. When the write fails:

- transiently (``SQLAlchemy``'s ``OperationalError``, ``InterfaceError``, ``TimeoutError``, an
  invalidated connection, a read-only server during a fail-over): the batch is kept and retried
  with capped, jittered exponential backoff; a warning is logged at most every few seconds
  while it fails, and an info line with the number of turns written once it succeeds;
- for any other reason (the database refuses some turn's data): the batch's turns are retried
  one at a time and only a turn that fails on its own is dropped, logged at error level with
  its session key's first 8 characters (never the messages).

Memory is bounded: at most ``max_pending`` turns wait behind the batch being written; when the
queue is full the oldest waiting turn is dropped (logged at most every few seconds). Counters,
for tests and metrics: ``written``, ``dropped`` (queue full), ``rejected`` (refused by the
database), ``lost`` (given up at shutdown), and ``pending`` (queued or being written).

Reading. ``history`` returns the stored messages followed by those of the session's turns
still pending in this process, so a conversation continues while writes are slow or failing
(another replica sees a turn once it is written). It raises ``SessionsUnavailable`` when the
database cannot be read; any other error propagates.

Shutdown. ``close(timeout)`` writes everything pending, so a clean shutdown loses nothing
while the database answers; if it keeps failing, ``close`` gives up after ``timeout`` seconds
and logs at error level how many turns are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, insert, select

from reconciler.errors import DatabaseError, DatabaseRefused, DatabaseUnavailable
from reconciler.store import schema
from reconciler.store.db import driver_reason, reading, translated_errors
from serve.chat import ToolCallRecord
from serve.session_rows import history_message, message_fields, session_ids, stored_text

log = logging.getLogger("samops.sessions")
SESSION_KEY = re.compile(r"^[0-9a-f]{64}$")


class SessionsUnavailable(Exception):
    """The database cannot be read now, so a session's history is unknown."""


class SessionNotYours(Exception):
    """The session_key names a session of another client, or one opened with another key (or
    without one): a session belongs to its client and to the key that opened it."""


def new_session_key() -> str:
    return secrets.token_hex(32)


@dataclass(frozen=True, slots=True)
class TurnRecord:
    session_key: str
    client: str
    generation: int
    messages: Sequence[Mapping[str, Any]]
    tool_calls: Sequence[ToolCallRecord]
    plugins: Sequence[str]
    opened_by: str | None = None
    """The SmarterAuthToken whose key made the turn (None: no key); the session's owner."""


@dataclass(eq=False, slots=True)
class _Pending:
    turn: TurnRecord
    position: int | None = None  # of its first message, set by the latest write attempt


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be used right now (try again later), rather
    than that it refused this data (``reconciler/store/db.py`` decides which)."""
    return isinstance(exc, DatabaseUnavailable)


def _reason(exc: BaseException) -> str:
    """A log-safe reason: never the statement or its parameters, which hold message texts."""
    if isinstance(exc, DatabaseRefused):
        return str(exc)
    if isinstance(exc, DatabaseError) and exc.__cause__ is not None:
        return driver_reason(exc.__cause__)
    return type(exc).__name__


class _Every:
    """Lets a repeated log line through at most once per ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.last = seconds, -float("inf")

    def due(self) -> bool:
        now = time.monotonic()
        if now - self.last < self.seconds:
            return False
        self.last = now
        return True


class SessionStore:
    def __init__(
        self,
        engine: Engine,
        *,
        max_pending: int = 10_000,
        max_batch: int = 500,
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
        log_every: float = 5.0,
        on_unstored: Callable[[str, int], None] = lambda _reason, _turns: None,
    ) -> None:
        """``max_pending``: turns that may wait behind the batch being written; ``max_batch``:
        turns per transaction; ``retry_initial``/``retry_max``: seconds between attempts
        while the database fails (doubling); ``log_every``: seconds between repeated logs."""
        self.engine = engine
        self.on_unstored = on_unstored
        """Told (reason, turns) when turns cannot be stored: dropped, refused, lost."""
        self.max_pending, self.max_batch = max_pending, max_batch
        self.retry_initial, self.retry_max = retry_initial, retry_max
        self.written = self.dropped = self.rejected = self.lost = 0
        self._queue: deque[_Pending] = deque()
        self._batch: list[_Pending] = []
        self._by_session: Counter[str] = Counter()  # pending turns per session key
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._deadline = float("inf")
        self._writer: asyncio.Task[None] | None = None
        self._failing_since: float | None = None
        self._warn, self._full = _Every(log_every), _Every(log_every)

    @property
    def pending(self) -> int:
        """Turns not written yet: queued, or in the batch being written."""
        return len(self._queue) + len(self._batch)

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_forever(), name="samops-sessions")

    @property
    def writer(self) -> asyncio.Task[None]:
        """The writer task (a root task of the serving process), once started."""
        assert self._writer is not None, "start() the session store first"
        return self._writer

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
        self._wake.set()
        done, _ = await asyncio.wait({self._writer}, timeout=2 * timeout)
        if not done:
            self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        if self.pending:
            self.lost += self.pending
            self.on_unstored("lost", self.pending)
            log.error(
                "gave up writing %d chat turns after %g s at shutdown: the database did not "
                "accept them, they are lost%s",
                self.pending,
                timeout,
                "" if done else " (unless the attempt still running in a thread succeeds)",
                extra={"turns": self.pending},
            )
            for entry in [*self._batch, *self._queue]:
                self._forget(entry)
            self._batch, self._queue = [], deque()

    def record(self, turn: TurnRecord) -> None:
        """Queue ``turn`` for writing; when the queue is full, drop its oldest turn."""
        if len(self._queue) >= self.max_pending:
            oldest = self._queue.popleft()
            self._forget(oldest)
            self.dropped += 1
            self.on_unstored("dropped", 1)
            if self._full.due():
                log.error(
                    "the chat turn queue is full (%d turns wait for the database): dropped "
                    "the oldest, of session %s (%d dropped since start)",
                    self.max_pending,
                    oldest.turn.session_key[:8],
                    self.dropped,
                    extra={"session": oldest.turn.session_key[:8], "dropped": self.dropped},
                )
        self._queue.append(_Pending(turn))
        self._by_session[turn.session_key] += 1
        self._wake.set()

    async def history(
        self, session_key: str, client: str, opened_by: str | None = None
    ) -> list[dict[str, Any]] | None:
        """The messages of a session of ``client`` opened by ``opened_by``: stored ones, then
        those of its turns still pending here; None when no session has that key. Raises
        ``SessionNotYours`` for a session of another owner, ``SessionsUnavailable``."""
        # Taken before the read: a turn written meanwhile is then in both, and dropped below.
        pending = self._pending_turns(session_key, client)
        if any(entry.turn.opened_by != opened_by for entry in pending) or any(
            entry.turn.client != client
            for entry in (*self._batch, *self._queue)
            if entry.turn.session_key == session_key
        ):
            raise SessionNotYours(session_key[:8])
        try:
            stored = await asyncio.to_thread(self._read, session_key, client, opened_by)
        except DatabaseUnavailable as exc:
            raise SessionsUnavailable(
                f"the database cannot be read ({type(exc.__cause__).__name__})"
            ) from exc
        if stored is None and not pending:
            return None
        messages = stored or []
        count = len(messages)
        for entry in pending:
            # In what was read: its write set its first position before committing.
            if entry.position is not None and entry.position < count:
                continue
            messages.extend(history_message(message_fields(m)) for m in entry.turn.messages)
        return messages

    def _pending_turns(self, session_key: str, client: str) -> list[_Pending]:
        if not self._by_session.get(session_key):
            return []
        return [
            entry
            for entry in (*self._batch, *self._queue)
            if entry.turn.session_key == session_key and entry.turn.client == client
        ]

    def _forget(self, entry: _Pending) -> None:
        key = entry.turn.session_key
        self._by_session[key] -= 1
        if self._by_session[key] <= 0:
            del self._by_session[key]

    # --- the writer ---------------------------------------------------------------------------

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

    async def _flush(self) -> None:
        """Write the batch; raise only a transient error, keeping what is left of the batch."""
        batch = self._batch
        try:
            await asyncio.to_thread(self._write, batch)
        except Exception as exc:
            if transient(exc):
                raise
            while self._batch:  # find the turn that the database refuses
                entry = self._batch[0]
                try:
                    await asyncio.to_thread(self._write, [entry])
                except Exception as alone:
                    if transient(alone):
                        raise
                    self._reject(entry, alone)
                else:
                    self._done([entry])
                self._batch.pop(0)
            return
        self._done(batch)
        self._batch = []

    def _done(self, entries: Sequence[_Pending]) -> None:
        self.written += len(entries)
        for entry in entries:
            self._forget(entry)
        if self._failing_since is not None:
            log.info(
                "wrote %d chat turns after %.1f s of database failures (%d more pending)",
                len(entries),
                time.monotonic() - self._failing_since,
                self.pending - len(entries),
                extra={"turns": len(entries)},
            )
            self._failing_since = None

    def _failed(self, exc: BaseException, delay: float) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        if self._warn.due():
            log.warning(
                "could not write %d chat turns, keeping them and retrying (next in %.2g s): %s",
                self.pending,
                delay,
                _reason(exc),
                extra={"turns": self.pending},
            )

    def _reject(self, entry: _Pending, exc: BaseException) -> None:
        self.rejected += 1
        self.on_unstored("refused", 1)
        self._forget(entry)
        key = entry.turn.session_key[:8]
        log.error(
            "dropped a chat turn of session %s that the database refuses: %s",
            key,
            _reason(exc),
            extra={"session": key},
        )

    async def _pause(self, delay: float, loop: asyncio.AbstractEventLoop) -> None:
        """Wait before the next attempt; closing cuts the wait short, once."""
        delay *= random.uniform(0.8, 1.2)  # noqa: S311 - spreads replicas' retries
        if self._closing.is_set():
            await asyncio.sleep(max(0.0, min(delay, self._deadline - loop.time())))
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), delay)

    # --- the database, in worker threads -----------------------------------------------------

    def _read(
        self, session_key: str, client: str, opened_by: str | None
    ) -> list[dict[str, Any]] | None:
        sessions = schema.chat_sessions
        with translated_errors(str(self.engine.url)), reading(self.engine) as connection:
            found = connection.execute(
                select(sessions.c.id, sessions.c.client_name, sessions.c.opened_by).where(
                    sessions.c.session_key == session_key
                )
            ).first()
            if found is None:
                return None
            if (found.client_name, found.opened_by) != (client, opened_by):
                raise SessionNotYours(session_key[:8])
            session_id = found.id
            rows = (
                connection.execute(
                    select(schema.chat_messages)
                    .where(schema.chat_messages.c.session_id == session_id)
                    .order_by(schema.chat_messages.c.position)
                )
                .mappings()
                .all()
            )
            connection.rollback()
        return [history_message(row) for row in rows]

    def _write(self, batch: Sequence[_Pending]) -> None:
        """One transaction for the whole batch; positions continue each session's count."""
        now = dt.datetime.now(dt.UTC)
        with translated_errors(str(self.engine.url)), self.engine.begin() as connection:
            wanted = [(e.turn.session_key, e.turn.client, e.turn.opened_by) for e in batch]
            ids = session_ids(connection, wanted, now)
            messages = schema.chat_messages
            counts = connection.execute(
                select(messages.c.session_id, func.count())
                .where(messages.c.session_id.in_(list(ids.values())))
                .group_by(messages.c.session_id)
            ).all()
            following: dict[int, int] = dict(counts)
            rows, calls, uses = [], [], []
            for entry in batch:
                turn = entry.turn
                session_id = ids.get((turn.session_key, turn.client, turn.opened_by))
                if session_id is None:  # another owner's session: never appended to
                    log.warning(
                        "turn not stored: its session belongs to another client or key",
                        extra={"session": turn.session_key[:8], "client": turn.client},
                    )
                    continue
                start = entry.position = following.get(session_id, 0)
                following[session_id] = start + len(turn.messages)
                common = {"session_id": session_id, "created_at": now}
                generation = turn.generation
                rows += [
                    {
                        **common,
                        **message_fields(m),
                        "position": start + i,
                        "generation": generation,
                    }
                    for i, m in enumerate(turn.messages)
                ]
                calls += [
                    {
                        **common,
                        "tool": c.name,
                        "arguments": dict(c.arguments),
                        "result": stored_text(c.result),
                        "error": stored_text(c.error),
                        "duration_ms": c.duration_ms,
                    }
                    for c in turn.tool_calls
                ]
                uses += [{**common, "plugin": p} for p in turn.plugins]
            for table, values in (
                (messages, rows),
                (schema.chat_tool_calls, calls),
                (schema.chat_plugin_uses, uses),
            ):
                if values:
                    connection.execute(insert(table), values)


"""(session key, client, opened by): a session is written to only by its owner."""
