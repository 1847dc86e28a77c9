"""Smarter's prompt history: the caller's chat sessions, their tool calls and plugin uses.

Serve stage, added by ``chat_routes.add_chat_routes`` under ``/api/v1/prompts/history/``, in
the shapes the official SDK reads (``history.sessions()``, ``session(id)``, ``tool_calls()``,
``plugin_usage()``), each entry by its integer id or its hashed id. A session belongs to the
key that opened it: a key's holder sees the sessions it opened, the admin key sees all, and
without a key there are none to see (a session key is what continues a conversation, so it
is shown only to its owner). The newest
``HISTORY_LIMIT`` of each are listed; rows are read from the database, off the event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from sqlalchemy import Engine, Select, Table, select

from reconciler.sam.ids import hashed_id, resource_id
from reconciler.store import schema
from reconciler.store.db import reading
from reconciler.store.status import iso_time
from serve import jsonwire
from serve.chat_http import CHAT, ChatError
from serve.compiled import Snapshot
from serve.smarter_objects import plugin_object
from serve.smarter_reads import Caller
from serve.smarter_routes import smarter_error_of

HISTORY_LIMIT = 100
SESSIONS = schema.chat_sessions


def _owner(caller: Caller, snapshot: Snapshot) -> str | None:
    """The SmarterAuthToken whose sessions the caller may read ('' for none; None: all)."""
    if caller.admin:
        return None
    if caller.digests is None or not caller.usable:
        return ""
    known = snapshot.tokens.get(caller.digests["sha256"]) or snapshot.tokens.get(
        caller.digests["sha512"]
    )
    return known.token if known is not None else ""


def _mine(query: Select[Any], owner: str | None) -> Select[Any]:
    return query if owner is None else query.where(SESSIONS.c.opened_by == owner)


def _session(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "hashed_id": hashed_id("ChatSession", str(row["id"])),
        "session_key": row["session_key"],
        "name": row["client_name"],
        "llmclient": resource_id("LLMClient", row["client_name"]),
        "created_at": iso_time(row["created_at"]),
        "updated_at": iso_time(row["updated_at"]),
    }


def _rows(engine: Engine, query: Select[Any]) -> list[Mapping[str, Any]]:
    with reading(engine) as connection:
        rows = connection.execute(query.limit(HISTORY_LIMIT)).mappings().all()
        connection.rollback()
    return [dict(row) for row in rows]


def sessions(engine: Engine, owner: str | None, snapshot: Snapshot, one: int | None) -> Any:
    query = _mine(select(SESSIONS), owner).order_by(SESSIONS.c.id.desc())
    if one is not None:
        query = query.where(SESSIONS.c.id == one)
    return [_session(row) for row in _rows(engine, query)]


def _session_rows(
    engine: Engine, table: Table, owner: str | None, one: int | None
) -> list[Mapping[str, Any]]:
    """Rows of a table of session records, newest first, of the owner's sessions."""
    query = _mine(select(table).join(SESSIONS, SESSIONS.c.id == table.c.session_id), owner)
    query = query.order_by(table.c.id.desc())
    if one is not None:
        query = query.where(table.c.id == one)
    return _rows(engine, query)


def tool_calls(engine: Engine, owner: str | None, snapshot: Snapshot, one: int | None) -> Any:
    found = []
    for row in _session_rows(engine, schema.chat_tool_calls, owner, one):
        plugin = snapshot.plugins.get(row["tool"])
        found.append(
            {
                "id": row["id"],
                "hashed_id": hashed_id("ChatToolCall", str(row["id"])),
                "prompt": row["session_id"],
                "plugin": resource_id("Plugin", plugin.name) if plugin is not None else None,
                "function_name": row["tool"],
                "function_args": json.dumps(row["arguments"]),
                "response": row["result"] if row["error"] is None else {"error": row["error"]},
                "duration_ms": row["duration_ms"],
                "created_at": iso_time(row["created_at"]),
            }
        )
    return found


def plugin_usage(engine: Engine, owner: str | None, snapshot: Snapshot, one: int | None) -> Any:
    found = []
    for row in _session_rows(engine, schema.chat_plugin_uses, owner, one):
        plugin = snapshot.plugins.get(row["plugin"])
        shown = (
            plugin_object(plugin)
            if plugin is not None
            else {"id": resource_id("Plugin", row["plugin"]), "name": row["plugin"]}
        )
        found.append(
            {
                "id": row["id"],
                "hashed_id": hashed_id("ChatPluginUse", str(row["id"])),
                "prompt": row["session_id"],
                "plugin": shown,
                "created_at": iso_time(row["created_at"]),
            }
        )
    return found


History = Callable[[Engine, str | None, Snapshot, int | None], Any]


def _route(read: History, *, one: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        deps = request.app[CHAT]
        snapshot = deps.state.snapshot
        owner = _owner(Caller(request, deps, snapshot), snapshot)
        engine = deps.state.engine
        try:
            raw = request.match_info.get("id", "")
            number = int(raw) if one and raw.isdigit() else None  # else: a hashed id, or none
            found: list[dict[str, Any]] = []
            if owner != "" and engine is not None:
                found = await asyncio.to_thread(read, engine, owner, snapshot, number)
            if not one:
                return jsonwire.response(found)
            found = [f for f in found if number is not None or f["hashed_id"] == raw]
            if not found:
                raise ChatError(404, "not_found", f"there is no history entry {raw!r} of yours")
            return jsonwire.response(found[0])
        except ChatError as error:
            return smarter_error_of(error, "history")

    return handler


def add_history_routes(app: web.Application) -> None:
    for path, read in (
        ("prompt", sessions),
        ("tool-calls", tool_calls),
        ("plugin-usage", plugin_usage),
    ):
        app.router.add_get(f"/api/v1/prompts/history/{path}/", _route(read, one=False))
        app.router.add_get(f"/api/v1/prompts/history/{path}/{{id}}/", _route(read, one=True))
