"""Chat sessions on real SQLite and PostgreSQL databases, including real outages.

Outages are provoked for real, never mocked: on SQLite the database file cannot be opened (a
folder stands in its place while it is moved aside) or may not grow (``max_page_count``:
"database or disk is full"); on PostgreSQL the
database refuses connections (``ALLOW_CONNECTIONS false``) or turns read-only, as a standby
does during a fail-over (``default_transaction_read_only``). The store's SQLite busy timeout is
lowered so that a locked database fails in milliseconds instead of 10 s.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import Engine, select

from reconciler.apply import apply_revision
from reconciler.source import DirectorySource, validate_source
from reconciler.store import schema
from serve.chat import ToolCallRecord
from serve.sessions import SessionNotYours, SessionStore, SessionsUnavailable, TurnRecord
from tests.conftest import MANIFESTS
from tests.fakes.upstream import REQUESTS, create_scripted_app
from tests.serve.harness import chat_routes
from tests.serve.outages import Outages

A, B, C = "a" * 64, "b" * 64, "c" * 64


def turn(key: str, text: str, *, client: str = "support", role: Any = "user") -> TurnRecord:
    """A turn with a question, a tool call and its result, an answer, and one plugin use."""
    call = {"id": "call-1", "type": "function", "function": {"name": "calculator"}}
    return TurnRecord(
        key,
        client,
        7,
        [
            {"role": role, "content": text},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call-1", "content": f"result {text}"},
            {"role": "assistant", "content": f"answer {text}"},
        ],
        [ToolCallRecord("calculator", {"expression": text}, f"result {text}", None, 3)],
        ["everlasting_gobstopper"],
    )


def expected_history(*turns: TurnRecord) -> list[dict[str, Any]]:
    return [dict(m) for t in turns for m in t.messages]


def stored(engine: Engine) -> dict[str, dict[str, list[Any]]]:
    """Per session key: its messages ``(position, role, content, created_at)``, tool calls
    ``(tool, arguments)`` and plugin uses, read from the tables."""
    sessions, messages = schema.chat_sessions, schema.chat_messages
    found: dict[str, dict[str, list[Any]]] = {}
    with engine.connect() as connection:
        for key, session_id in connection.execute(select(sessions.c.session_key, sessions.c.id)):
            rows = connection.execute(
                select(messages.c.position, messages.c.role, messages.c.content)
                .where(messages.c.session_id == session_id)
                .order_by(messages.c.position)
            )
            calls = connection.execute(
                select(schema.chat_tool_calls.c.tool, schema.chat_tool_calls.c.arguments)
                .where(schema.chat_tool_calls.c.session_id == session_id)
                .order_by(schema.chat_tool_calls.c.id)
            )
            uses = connection.execute(
                select(schema.chat_plugin_uses.c.plugin).where(
                    schema.chat_plugin_uses.c.session_id == session_id
                )
            )
            found[key] = {
                "messages": [tuple(r) for r in rows],
                "calls": [tuple(c) for c in calls],
                "plugins": list(uses.scalars()),
            }
        connection.rollback()
    return found


def contents(engine: Engine, key: str) -> list[str | None]:
    return [content for _, _, content in stored(engine)[key]["messages"]]


async def until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def logged(caplog: pytest.LogCaptureFixture, level: int, text: str) -> Callable[[], bool]:
    def seen() -> bool:
        return any(
            r.name == "samops.sessions" and r.levelno == level and text in r.getMessage()
            for r in caplog.records
        )

    return seen


def fast_store(engine: Engine, **settings: Any) -> SessionStore:
    return SessionStore(engine, retry_initial=0.02, retry_max=0.2, **settings)


def test_turns_of_two_sessions_are_written_in_order_with_consecutive_positions(
    engine: Engine,
) -> None:
    async def scenario() -> None:
        store = fast_store(engine)
        store.start()
        first = [turn(A, "a1"), turn(B, "b1"), turn(A, "a2"), turn(A, "a3"), turn(B, "b2")]
        for t in first:  # recorded before the writer runs: one batch
            store.record(t)
        await until(lambda: store.written == 5, "the first batch")
        store.record(turn(A, "a4"))
        await store.close()
        assert (store.written, store.pending, store.dropped, store.rejected) == (6, 0, 0, 0)
        assert await store.history(A, "support") == expected_history(
            first[0], first[2], first[3], turn(A, "a4")
        )

    asyncio.run(scenario())
    tables = stored(engine)
    a, b = tables[A], tables[B]
    assert [r for _, r, _ in a["messages"]] == ["user", "assistant", "tool", "assistant"] * 4
    assert [p for p, _, _ in a["messages"]] == list(range(16))
    assert [p for p, _, _ in b["messages"]] == list(range(8))
    assert contents(engine, A)[::4] == ["a1", "a2", "a3", "a4"]
    assert contents(engine, B)[::4] == ["b1", "b2"]
    assert a["calls"] == [("calculator", {"expression": f"a{n}"}) for n in range(1, 5)]
    assert b["plugins"] == ["everlasting_gobstopper"] * 2


def test_group_commit_writes_a_batch_in_one_transaction(engine: Engine) -> None:
    """Every row of a batch carries the same ``created_at``: one transaction, one clock read."""

    async def scenario() -> None:
        store = fast_store(engine)
        store.start()
        for n in range(50):
            store.record(turn(A if n % 2 else B, f"t{n}"))
        await store.close()

    asyncio.run(scenario())
    with engine.connect() as connection:
        moments = set(connection.execute(select(schema.chat_messages.c.created_at)).scalars())
    assert len(moments) == 1


def test_history_includes_turns_pending_while_writes_fail(
    engine: Engine, outages: Outages, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="samops.sessions")
    big = "x" * 50_000  # needs new pages, which a full SQLite file cannot give

    async def scenario() -> None:
        store = fast_store(engine)
        store.start()
        written = turn(A, "a1")
        store.record(written)
        await until(lambda: store.written == 1, "the first turn")
        held = [turn(A, big + "a2"), turn(C, big + "c1"), turn(A, big + "a3")]
        with outages.read_only():
            for t in held:
                store.record(t)
            await until(logged(caplog, logging.WARNING, "could not write 3 chat turns"), "a try")
            assert (store.written, store.pending) == (1, 3)
            assert await store.history(A, "support") == expected_history(written, *held[::2])
            assert await store.history(C, "support") == expected_history(held[1])
            with pytest.raises(SessionNotYours):  # issue 12.9: another client's session
                await store.history(C, "another-client")
        await until(lambda: store.pending == 0, "the held turns")
        assert await store.history(A, "support") == expected_history(written, *held[::2])
        await store.close()
        assert (store.written, store.dropped, store.rejected, store.lost) == (4, 0, 0, 0)

    asyncio.run(scenario())
    assert logged(caplog, logging.INFO, "wrote 3 chat turns after")()
    assert [p for p, _, _ in stored(engine)[A]["messages"]] == list(range(12))
    assert contents(engine, C)[0] == big + "c1"


def test_unreachable_database_keeps_turns_and_history_is_unavailable(
    engine: Engine, outages: Outages, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="samops.sessions")

    async def scenario() -> None:
        store = fast_store(engine)
        store.start()
        store.record(turn(A, "a1"))
        await until(lambda: store.written == 1, "the first turn")
        with outages.unreachable():
            for n in range(2, 12):
                store.record(turn(A if n % 2 else B, f"t{n}"))
            await until(logged(caplog, logging.WARNING, "could not write 10 chat turns"), "a try")
            with pytest.raises(SessionsUnavailable, match="cannot be read"):
                await store.history(A, "support")
            assert store.written == 1
        await until(lambda: store.pending == 0, "the held turns")
        await store.close()
        assert (store.written, store.dropped, store.rejected, store.lost) == (11, 0, 0, 0)
        history = await store.history(A, "support")
        assert history is not None
        assert [m["content"] for m in history][::4] == ["a1", "t3", "t5", "t7", "t9", "t11"]

    asyncio.run(scenario())
    assert logged(caplog, logging.INFO, "wrote 10 chat turns after")()
    assert [p for p, _, _ in stored(engine)[B]["messages"]] == list(range(20))


@pytest.mark.parametrize(
    ("refused", "dialects"),
    [
        pytest.param(turn(C, "no role", role=None), {"sqlite", "postgresql"}, id="null-role"),
        pytest.param(turn(C + "0", "long key"), {"postgresql"}, id="key-too-long"),
    ],
)
def test_a_turn_the_database_refuses_is_dropped_alone(
    engine: Engine,
    refused: TurnRecord,
    dialects: set[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    if engine.dialect.name not in dialects:
        pytest.skip(f"{engine.dialect.name} accepts this turn")

    async def scenario() -> SessionStore:
        store = fast_store(engine)
        store.start()
        for t in [turn(A, "a1"), turn(B, "b1"), refused, turn(A, "a2")]:
            store.record(t)
        await store.close()
        return store

    store = asyncio.run(scenario())
    assert (store.written, store.rejected, store.dropped, store.pending) == (3, 1, 0, 0)
    tables = stored(engine)
    assert set(tables) == {A, B}
    assert [p for p, _, _ in tables[A]["messages"]] == list(range(8))
    assert contents(engine, A)[::4] == ["a1", "a2"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"session {C[:8]}" in errors[0]
    assert refused.messages[0]["content"] not in errors[0]


def test_full_queue_drops_the_oldest_turn_and_counts_it(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> SessionStore:
        store = fast_store(engine, max_pending=3)
        for n in range(5):  # the writer has not started: everything waits
            store.record(turn(A, f"a{n}"))
        assert (store.pending, store.dropped) == (3, 2)
        assert [m["content"] for m in await store.history(A, "support") or []][::4] == [
            "a2",
            "a3",
            "a4",
        ]
        store.start()
        await store.close()
        return store

    store = asyncio.run(scenario())
    assert (store.written, store.dropped) == (3, 2)
    assert contents(engine, A)[::4] == ["a2", "a3", "a4"]
    full = [r for r in caplog.records if "queue is full" in r.getMessage()]
    assert len(full) == 1  # rate-limited
    assert full[0].levelno == logging.ERROR


def test_close_gives_up_after_its_timeout_while_the_database_is_down(
    engine: Engine, outages: Outages, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> SessionStore:
        store = fast_store(engine)
        store.start()
        with outages.unreachable():
            for n in range(4):
                store.record(turn(A, f"a{n}"))
            await store.close(timeout=0.5)
        return store

    store = asyncio.run(scenario())
    assert (store.written, store.lost, store.pending) == (0, 4, 0)
    assert logged(caplog, logging.ERROR, "gave up writing 4 chat turns after 0.5 s")()
    assert A not in stored(engine)


def test_close_writes_everything_queued(engine: Engine) -> None:
    async def scenario() -> None:
        store = fast_store(engine, max_batch=7)
        store.start()
        for n in range(100):
            store.record(turn(A, f"a{n}"))
        await store.close()
        assert (store.written, store.pending) == (100, 0)

    asyncio.run(scenario())
    assert contents(engine, A)[::4] == [f"a{n}" for n in range(100)]


# --- through HTTP ------------------------------------------------------------------------------


@asynccontextmanager
async def chat_server(
    engine: Engine, tmp_path: Path
) -> AsyncIterator[tuple[str, aiohttp.ClientSession, SessionStore, web.Application]]:
    """The chat routes over the applied example manifests on ``engine``, in front of the
    scripted upstream; yields the base URL, an HTTP client, the store and the upstream app."""
    folder = shutil.copytree(MANIFESTS, tmp_path / "manifests")
    apply_revision(engine, validate_source(DirectorySource(Path(folder))))
    upstream_app = create_scripted_app(record=True)
    upstream = web.AppRunner(upstream_app, access_log=None)
    await upstream.setup()
    await web.TCPSite(upstream, "127.0.0.1", 0).start()
    sessions = fast_store(engine)
    sessions.start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            chat_routes(
                engine,
                http,
                sessions,
                upstream_url=f"http://127.0.0.1:{upstream.addresses[0][1]}/v1",
                data_dir=tmp_path,
            ) as base,
        ):
            yield base, http, sessions, upstream_app
    finally:
        await sessions.close()
        await upstream.cleanup()


def test_prompt_in_a_session_is_a_503_while_its_history_cannot_be_read(
    engine: Engine, outages: Outages, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with chat_server(engine, tmp_path) as (base, http, sessions, upstream):
            url = f"{base}/api/v1/llm-clients/support/prompt/"

            async def prompt(text: str, key: str | None = None) -> tuple[int, dict[str, Any]]:
                body: dict[str, Any] = {"messages": [{"role": "user", "content": text}]}
                if key is not None:
                    body["session_key"] = key
                async with http.post(url, json=body) as response:
                    return response.status, await response.json()

            status, first = await prompt("first question")
            assert status == 200
            key = first["data"]["session_key"]
            await until(lambda: sessions.written == 1, "the first turn")
            with outages.unreachable():
                status, refused = await prompt("second question", key)
                assert (status, refused["error"]["code"]) == (503, "database_unavailable")
                assert "without session_key" in refused["error"]["message"]
                status, fresh = await prompt("a new conversation")
                assert status == 200
                assert fresh["data"]["choices"][0]["message"]["content"] == (
                    "echo: a new conversation"
                )
            status, _ = await prompt("second question", key)
            assert status == 200
            sent = upstream[REQUESTS][-1]["messages"]
            assert [m["content"] for m in sent if m["role"] == "user"] == [
                "first question",
                "second question",
            ]
            await until(lambda: sessions.pending == 0, "the turns")
            assert (sessions.written, sessions.dropped, sessions.rejected) == (3, 0, 0)

    asyncio.run(scenario())


def test_a_nul_character_is_stored_escaped_not_dropped(engine: Engine) -> None:
    # Issue 12, item 19: a NUL character in a message dropped the turn on PostgreSQL.
    async def scenario() -> SessionStore:
        store = fast_store(engine)
        store.start()
        store.record(turn(A, "nul \x00 byte"))
        await store.close()
        return store

    store = asyncio.run(scenario())
    assert (store.written, store.rejected) == (1, 0)
    assert contents(engine, A)[0] == "nul \\u0000 byte"
