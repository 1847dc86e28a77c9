"""Chat sessions: history, tool calls and plugin uses, persisted without holding responses.

Used by the Smarter-compatible routes. A session is identified by a 64-hex ``session_key``;
the next turn continues from its stored history. Writes go through a queue to one writer task
that runs them in a worker thread, so a response never waits for the database; on clean
shutdown the queue is drained before the process exits, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, insert, select, update

from reconciler.store import schema
from serve.chat import ToolCallRecord

log = logging.getLogger("samops.sessions")
SESSION_KEY = re.compile(r"^[0-9a-f]{64}$")


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


class SessionStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.queue: asyncio.Queue[TurnRecord | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_forever(), name="samops-sessions")

    async def close(self) -> None:
        """Write everything queued, then stop."""
        if self._writer is not None:
            await self.queue.put(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    def record(self, turn: TurnRecord) -> None:
        self.queue.put_nowait(turn)

    async def history(self, session_key: str, client: str) -> list[dict[str, Any]] | None:
        """The stored messages of a session of ``client``, or None when it is unknown."""
        return await asyncio.to_thread(self._history, session_key, client)

    async def _write_forever(self) -> None:
        while (turn := await self.queue.get()) is not None:
            try:
                await asyncio.to_thread(self._write, turn)
            except Exception:
                log.exception(
                    "could not persist a chat turn", extra={"session": turn.session_key[:8]}
                )

    def _history(self, session_key: str, client: str) -> list[dict[str, Any]] | None:
        with self.engine.connect() as connection:
            session_id = connection.execute(
                select(schema.chat_sessions.c.id).where(
                    schema.chat_sessions.c.session_key == session_key,
                    schema.chat_sessions.c.client_name == client,
                )
            ).scalar()
            if session_id is None:
                return None
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
        messages = []
        for row in rows:
            message: dict[str, Any] = {"role": row["role"], "content": row["content"]}
            if row["tool_calls"]:
                message["tool_calls"] = row["tool_calls"]
            if row["tool_call_id"]:
                message["tool_call_id"] = row["tool_call_id"]
            messages.append(message)
        return messages

    def _write(self, turn: TurnRecord) -> None:
        now = dt.datetime.now(dt.UTC)
        with self.engine.begin() as connection:
            session_id = connection.execute(
                select(schema.chat_sessions.c.id).where(
                    schema.chat_sessions.c.session_key == turn.session_key
                )
            ).scalar()
            if session_id is None:
                session_id = connection.execute(
                    insert(schema.chat_sessions).values(
                        session_key=turn.session_key,
                        client_name=turn.client,
                        created_at=now,
                        updated_at=now,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            else:
                connection.execute(
                    update(schema.chat_sessions)
                    .where(schema.chat_sessions.c.id == session_id)
                    .values(updated_at=now)
                )
            start = connection.execute(
                select(func.count())
                .select_from(schema.chat_messages)
                .where(schema.chat_messages.c.session_id == session_id)
            ).scalar_one()
            rows = [
                {
                    "session_id": session_id,
                    "position": start + i,
                    "role": m["role"],
                    "content": m.get("content")
                    if isinstance(m.get("content"), str | None)
                    else str(m.get("content")),
                    "tool_calls": m.get("tool_calls"),
                    "tool_call_id": m.get("tool_call_id"),
                    "generation": turn.generation,
                    "created_at": now,
                }
                for i, m in enumerate(turn.messages)
            ]
            if rows:
                connection.execute(insert(schema.chat_messages), rows)
            calls = [
                {
                    "session_id": session_id,
                    "tool": c.name,
                    "arguments": dict(c.arguments),
                    "result": c.result,
                    "error": c.error,
                    "duration_ms": c.duration_ms,
                    "created_at": now,
                }
                for c in turn.tool_calls
            ]
            if calls:
                connection.execute(insert(schema.chat_tool_calls), calls)
            uses = [
                {"session_id": session_id, "plugin": p, "created_at": now} for p in turn.plugins
            ]
            if uses:
                connection.execute(insert(schema.chat_plugin_uses), uses)
