"""The Smarter-compatible chat routes: prompt (by path and by host), chat configuration.

Serve stage, added by ``chat_routes.add_chat_routes``. Answers carry Smarter's envelope
(``data``, ``api``, ``thing``, ``metadata``); a session continues from its stored history
(``serve/sessions.py``); errors have samops' shape (``serve/errors.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from serve import jsonwire
from serve.chat import text_of
from serve.chat_http import (
    CHAT,
    SMARTER_API,
    ChatError,
    answer_headers,
    authorize,
    bounded_history,
    client_for,
    json_body,
    new_turn,
    presented,
    run_turn,
    samops_error_of,
)
from serve.sessions import (
    SESSION_KEY,
    SessionNotYours,
    SessionsUnavailable,
    TurnRecord,
    new_session_key,
)

log = logging.getLogger("samops.chat")


def envelope(data: Mapping[str, Any], command: str) -> dict[str, Any]:
    return {
        "data": data,
        "api": SMARTER_API,
        "metadata": {"command": command, "thing": "LLMClient"},
    }


async def _prompt(request: web.Request, name: str) -> web.Response:
    deps = request.app[CHAT]
    started = time.perf_counter()
    snapshot = deps.state.snapshot
    try:
        body = await json_body(request, deps.settings)
        client = client_for(snapshot, name, request)
        opened_by = authorize(client, presented(request), snapshot)
        session_key = body.get("session_key") or new_session_key()
        if not isinstance(session_key, str) or not SESSION_KEY.match(session_key):
            raise ChatError(400, "invalid_session_key", "session_key must be 64 hex characters")
        users = [m for m in body["messages"] if m.get("role") == "user"]
        if not users:
            raise ChatError(400, "no_prompt", "the messages hold no user message")
        prompt = {"role": "user", "content": text_of(users[-1].get("content"))}
        history = None  # a new session has none
        if body.get("session_key"):
            try:
                history = await deps.sessions.history(session_key, client.name, opened_by)
            except SessionNotYours as exc:
                raise ChatError(
                    404,
                    "unknown_session",
                    "this session_key names no session of this client opened with this key "
                    "(hint: send the prompt without session_key to start a new session)",
                ) from exc
            except SessionsUnavailable as exc:
                raise ChatError(
                    503,
                    "database_unavailable",
                    f"this session's history cannot be read now: {exc}; retry in a few "
                    "seconds, or send the prompt without session_key to start a new session",
                ) from exc
        earlier = history if history is not None else body["messages"][:-1]
        messages = [*bounded_history(earlier, deps.settings), prompt]
        result = await run_turn(deps, new_turn(deps, client, snapshot, messages))
    except ChatError as error:
        response = samops_error_of(error)
        response.headers.update(answer_headers(started, None, snapshot, request))
        return response
    new_messages = [prompt, *result.added] if history is not None else [*messages, *result.added]
    deps.sessions.record(
        TurnRecord(
            session_key,
            client.name,
            snapshot.generation,
            new_messages,
            result.tool_calls,
            result.selected,
            opened_by,
        )
    )
    completion = {**result.completion, "model": client.name}
    data = {
        **completion,
        "session_key": session_key,
        "plugins_selected": result.selected,
        "tool_calls_made": result.tool_calls_made(),
    }
    return jsonwire.response(
        envelope(data, "prompt"), headers=answer_headers(started, result, snapshot, request)
    )


async def prompt_by_path(request: web.Request) -> web.Response:
    return await _prompt(request, request.match_info["name"])


async def prompt_by_host(request: web.Request) -> web.Response:
    deps = request.app[CHAT]
    host = (request.host or "").split(":")[0].lower()
    suffix = f".{deps.settings.account_number}.api.{deps.settings.api_domain}"
    if not host.endswith(suffix) or host == suffix.lstrip("."):
        return samops_error_of(
            ChatError(404, "unknown_host", f"POST /prompt/ is served on <client>{suffix} hosts")
        )
    return await _prompt(request, host.removesuffix(suffix))


async def client_config(request: web.Request) -> web.Response:
    deps = request.app[CHAT]
    snapshot = deps.state.snapshot
    try:
        client = client_for(snapshot, request.match_info["name"], request)
        authorize(client, presented(request), snapshot)
    except ChatError as error:
        response = samops_error_of(error)
    else:
        data = {
            "name": client.name,
            "session_key": new_session_key(),
            "requires_key": client.key.required,
            **client.ui,
        }
        response = web.json_response(envelope(data, "config"))
    response.headers.update(
        {
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
        }
    )
    return response


async def cors_preflight(_request: web.Request) -> web.Response:
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": "GET, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
        },
    )
