"""Chat sessions: history, tool calls and plugin uses, persisted without holding responses.

Serve stage, used by the Smarter-compatible routes (``serve/chat_routes.py``). A session is
identified by a 64-hex ``session_key``; the next turn continues from its history.

Writing. ``record`` queues a finished turn; the batch writer (``batch_writer.py``: group
commit, retries while the database fails, a bounded queue, nothing lost at a clean shutdown)
writes batches of turns in one transaction each; several turns of a session in a batch get
consecutive positions. A turn the database refuses is dropped alone, logged with its session
key's first 8 characters (never the messages).

Reading. ``history`` returns the stored messages followed by those of the session's turns
still pending in this process, so a conversation continues while writes are slow or failing
(another replica sees a turn once it is written). It raises ``SessionsUnavailable`` when the
database cannot be read; any other error propagates.

Shutdown. ``close(timeout)`` writes everything pending (``batch_writer.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import secrets
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, insert, select

from reconciler.errors import DatabaseUnavailable
from reconciler.store import schema
from reconciler.store.db import reading, translated_errors
from serve.batch_writer import BatchWriter
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
        while the database fails (doubling); ``log_every``: seconds between repeated logs;
        ``on_unstored``: told (reason, turns) when turns cannot be stored (dropped, refused,
        lost)."""
        self.engine = engine
        self._by_session: Counter[str] = Counter()  # pending turns per session key
        self.turns: BatchWriter[_Pending] = BatchWriter(
            self._write,
            what="chat turns",
            log=log,
            name="samops-sessions",
            describe=lambda entry: f"of session {entry.turn.session_key[:8]}",
            forget=self._forget,
            max_pending=max_pending,
            max_batch=max_batch,
            retry_initial=retry_initial,
            retry_max=retry_max,
            log_every=log_every,
            on_unstored=on_unstored,
        )

    @property
    def pending(self) -> int:
        """Turns not written yet: queued, or in the batch being written."""
        return self.turns.pending

    written = property(lambda self: self.turns.written, doc="Turns written.")
    dropped = property(lambda self: self.turns.dropped, doc="Turns dropped: the queue was full.")
    rejected = property(lambda self: self.turns.rejected, doc="Turns the database refused.")
    lost = property(lambda self: self.turns.lost, doc="Turns given up at shutdown.")

    def start(self) -> None:
        self.turns.start()

    @property
    def writer(self) -> asyncio.Task[None]:
        """The writer task (a root task of the serving process), once started."""
        return self.turns.writer

    async def close(self, timeout: float = 10.0) -> None:
        """Write everything pending, then stop (``BatchWriter.close``)."""
        await self.turns.close(timeout)

    def record(self, turn: TurnRecord) -> None:
        """Queue ``turn`` for writing; when the queue is full, drop its oldest turn."""
        self._by_session[turn.session_key] += 1
        self.turns.record(_Pending(turn))

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
            for entry in self.turns.unwritten()
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
            for entry in self.turns.unwritten()
            if entry.turn.session_key == session_key and entry.turn.client == client
        ]

    def _forget(self, entry: _Pending) -> None:
        key = entry.turn.session_key
        self._by_session[key] -= 1
        if self._by_session[key] <= 0:
            del self._by_session[key]

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
