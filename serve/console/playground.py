"""The console's chat playground: one turn, streamed to the page as it happens.

Beside the serve stage. ``POST /console/api/chat/{client}`` takes ``{"messages", "key"?,
"ref"?}`` from a signed-in page (CSRF token required) and answers server-sent events:

    event: progress   {"type": "llm_request" | "tool_called" | "tool_responded" | ..., ...}
    event: delta      {"content": "..."}                 the answer, piece by piece
    event: done       {"generation" | "revision", "usage", "tool_calls", "model"}
    event: error      {"status", "code", "message"}      the turn failed (nothing after it)

Without ``ref`` the turn is an ordinary chat turn of the applied client: the client's key is
checked exactly as the chat routes check it (``key`` stands for the ``Authorization`` header),
and its rate limits, budgets and usage count it (recorded as the ``openai`` route: the same
request without the envelope). With ``ref`` (admins only) it is a preview: the revision at
that ref, compiled as ``serve/preview.py`` does, nothing recorded. The conversation lives in
the page; no session is stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from aiohttp import web

from reconciler.api import presented_digests
from serve import jsonwire
from serve.chat import Caller, Turn, TurnResult
from serve.chat_http import (
    CHAT,
    ChatDeps,
    ChatError,
    account_turn,
    admit_turn,
    authorize,
    client_for,
    json_body,
    new_turn,
    turn_errors,
)
from serve.compiled import Snapshot
from serve.console.sessions import MAX_KEY_CHARS
from serve.errors import error_response
from serve.preview import PREVIEW, PreviewError, compiled, find_client, read_ref


def _event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + jsonwire.dumps(data) + b"\n\n"


@asynccontextmanager
async def _applied(deps: ChatDeps) -> AsyncIterator[Snapshot]:
    yield deps.state.snapshot


def _snapshot_for(
    request: web.Request, ref: str | None, may_preview: bool
) -> AbstractAsyncContextManager[Snapshot]:
    if ref is None:
        return _applied(request.app[CHAT])
    if not may_preview:
        raise ChatError(403, "admin_only", "chatting with an unmerged revision needs an admin")
    preview = request.app[PREVIEW]
    source = preview.source
    if source is None:
        raise ChatError(409, "preview_needs_git", "this server follows no git repository")

    @asynccontextmanager
    async def revision_snapshot() -> AsyncIterator[Snapshot]:
        try:
            revision = await asyncio.to_thread(read_ref, source, ref)
        except PreviewError as exc:
            raise ChatError(exc.status, exc.code, str(exc)) from exc
        async with compiled(revision, preview.http, preview.serving) as snapshot:
            yield snapshot

    return revision_snapshot()


def _fields(body: dict[str, Any]) -> tuple[str | None, str | None]:
    key, ref = body.get("key"), body.get("ref")
    if key is not None and (not isinstance(key, str) or len(key) > MAX_KEY_CHARS):
        raise ChatError(
            400, "invalid_key", f"'key' must be a string of at most {MAX_KEY_CHARS} characters"
        )
    if ref is not None and (not isinstance(ref, str) or not ref):
        raise ChatError(400, "invalid_ref", "'ref' must name a branch, tag or commit")
    return key or None, ref


async def chat(request: web.Request, *, may_preview: bool) -> web.StreamResponse:
    """The playground's turn (the caller checked the console session and its CSRF token)."""
    deps = request.app[CHAT]
    try:
        body = await json_body(request, deps.settings)
        key, ref = _fields(body)
        snapshots = _snapshot_for(request, ref, may_preview)
    except ChatError as error:  # before the stream: an ordinary error answer
        return error_response(error.status, error.code, str(error))
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    try:
        async with snapshots as snapshot:
            await _stream_turn(request, deps, snapshot, body, key, ref, response.write)
    except ChatError as error:
        await response.write(_event("error", _error(error)))
    await response.write_eof()
    return response


def _error(error: ChatError) -> dict[str, Any]:
    return {"status": error.status, "code": error.code, "message": str(error)}


async def _stream_turn(
    request: web.Request,
    deps: ChatDeps,
    snapshot: Snapshot,
    body: dict[str, Any],
    key: str | None,
    ref: str | None,
    write: Callable[[bytes], Any],
) -> None:
    if ref is None:
        client = client_for(snapshot, request.match_info["name"], request)
    else:
        try:
            client = find_client(snapshot, request.match_info["name"])
        except PreviewError as exc:
            raise ChatError(exc.status, exc.code, str(exc)) from exc
    key_name = authorize(client, presented_digests(key) if key else None, snapshot)
    turn = new_turn(deps, client, snapshot, body["messages"], caller=Caller("openai", key_name))
    if ref is None:
        await admit_turn(deps, turn, request)
    events: asyncio.Queue[bytes | None] = asyncio.Queue()
    turn.progress = lambda event: events.put_nowait(_event("progress", event))
    result = turn.new_result()
    running = asyncio.create_task(_pieces(deps, turn, result, events, counted=ref is None))
    try:
        while (event := await events.get()) is not None:
            await write(event)
        await running  # its ChatError, if any
    finally:
        running.cancel()  # the page went away: the turn stops
    where = {"revision": ref} if ref is not None else {"generation": snapshot.generation}
    await write(
        _event(
            "done",
            {
                **where,
                "model": result.model,
                "usage": result.usage.as_openai() if result.usage.known else None,
                "tool_calls": result.tool_calls_made(),
                "plugins": result.selected,
            },
        )
    )


async def _pieces(
    deps: ChatDeps,
    turn: Turn,
    result: TurnResult,
    events: asyncio.Queue[bytes | None],
    *,
    counted: bool,
) -> None:
    """Run the turn as a stream, putting each piece of the answer in ``events``."""
    started, ok = time.perf_counter(), False
    try:
        async with turn_errors(deps, turn):
            async for chunk in turn.stream(result):
                for choice in chunk.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        events.put_nowait(_event("delta", {"content": content}))
        ok = True
    finally:
        if counted:
            account_turn(deps, turn, result, ok=ok, seconds=time.perf_counter() - started)
        events.put_nowait(None)
