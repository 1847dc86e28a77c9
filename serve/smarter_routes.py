"""The Smarter-compatible chat routes: prompt (by path and by host), chat configuration.

Serve stage, added by ``chat_routes.add_chat_routes``. These speak Smarter's chat contract as
its official SDK (``smarter-api``) reads it: a client is named by its integer id, its hashed
id or its name; answers carry Smarter's envelope (``data``, ``api``, ``metadata``); a prompt's
``data`` has ``status``, ``messages`` (what the turn added, the reply last), the OpenAI
``completion``, ``plugins`` and ``tools``, beside the keys samops answered before; with
``Accept: text/event-stream`` the prompt streams ``progress`` events, then one ``result``
event carrying exactly the answer it would have sent. A session continues from its stored
history (``serve/sessions.py``). Errors have Smarter's shape (``serve/errors.py``).

The thread a caller sends is read as Smarter Chat sends it: its ``system`` messages (the
configuration's system role, echoed back) and Smarter's own ``smarter`` messages are left out,
as the system prompt is the client's, composed here from its manifest and selected plugins.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from serve import jsonwire
from serve.chat import Caller, TurnResult, text_of
from serve.chat_http import (
    CHAT,
    ChatDeps,
    ChatError,
    admit_turn,
    answer_headers,
    authorize,
    bounded_history,
    client_for,
    json_body,
    json_object,
    new_turn,
    presented,
    run_turn,
)
from serve.compiled import CompiledClient, Snapshot
from serve.errors import SMARTER_API, smarter_error_document, smarter_error_response
from serve.sessions import (
    SESSION_KEY,
    SessionNotYours,
    SessionsUnavailable,
    TurnRecord,
    new_session_key,
)
from serve.smarter_objects import CHAT_CONTRACT, chat_config

log = logging.getLogger("samops.chat")
CONVERSATION_ROLES = ("user", "assistant", "tool")
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Smarter-Capabilities",
}


def envelope(data: Mapping[str, Any], command: str) -> dict[str, Any]:
    return {
        "data": data,
        "api": SMARTER_API,
        "metadata": {"command": command, "thing": "LLMClient"},
    }


def smarter_error_of(error: ChatError, command: str) -> web.Response:
    response = smarter_error_response(error.status, error.code, str(error), command=command)
    response.headers.update(error.headers)
    return response


def base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def _session_history(
    deps: ChatDeps, session_key: str, client: CompiledClient, opened_by: str | None
) -> list[dict[str, Any]] | None:
    """A session's stored messages; None for a key that names no session yet (a new one,
    e.g. from the configuration route)."""
    try:
        return await deps.sessions.history(session_key, client.name, opened_by)
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


def _session_key(body: Mapping[str, Any]) -> str:
    session_key = body.get("session_key") or new_session_key()
    if not isinstance(session_key, str) or not SESSION_KEY.match(session_key):
        raise ChatError(400, "invalid_session_key", "session_key must be 64 hex characters")
    return session_key


class _Prompt:
    """One prompt: its request read and checked, its turn run, its answer and session."""

    def __init__(self, request: web.Request, deps: ChatDeps, snapshot: Snapshot) -> None:
        self.request, self.deps, self.snapshot = request, deps, snapshot
        self.started = time.perf_counter()

    async def prepare(self, reference: str) -> None:
        """Read the body, find the client, check the key, read the session: ChatErrors."""
        deps = self.deps
        body = await json_body(self.request, deps.settings)
        self.client = client_for(self.snapshot, reference, self.request)
        self.opened_by = authorize(self.client, presented(self.request), self.snapshot)
        self.session_key = _session_key(body)
        thread = [m for m in body["messages"] if m.get("role") in CONVERSATION_ROLES]
        users = [m for m in thread if m.get("role") == "user"]
        if not users:
            raise ChatError(400, "no_prompt", "the messages hold no user message")
        self.prompt = {"role": "user", "content": text_of(users[-1].get("content"))}
        self.history = None
        if body.get("session_key"):
            self.history = await _session_history(
                deps, self.session_key, self.client, self.opened_by
            )
        if self.history is not None:
            earlier = self.history
        else:  # a new session starts from the thread the caller sent, up to its last prompt
            earlier = thread[: max(i for i, m in enumerate(thread) if m.get("role") == "user")]
        self.messages = [*bounded_history(earlier, deps.settings), self.prompt]
        caller = Caller("smarter", self.opened_by, self.session_key)
        self.turn = new_turn(deps, self.client, self.snapshot, self.messages, caller=caller)
        await admit_turn(deps, self.turn, self.request)

    def answer(self, result: TurnResult) -> dict[str, Any]:
        """The prompt's answer document, and its turn recorded in the session."""
        added = [self.prompt] if self.history is not None else self.messages
        self.deps.sessions.record(
            TurnRecord(
                self.session_key,
                self.client.name,
                self.snapshot.generation,
                [*added, *result.added],
                result.tool_calls,
                result.selected,
                self.opened_by,
            )
        )
        completion = {**result.completion, "model": self.client.name}
        data = {
            "contract": CHAT_CONTRACT,
            "status": 200,
            "messages": result.added,
            "completion": completion,
            "plugins": result.selected,
            "tools": [tool.name for tool in self.client.functions]
            + [p.tool.name for p in self.client.plugins if p.name in result.selected],
            # samops' answer before the SDK's contract, kept for the clients written to it
            **completion,
            "session_key": self.session_key,
            "plugins_selected": result.selected,
            "tool_calls_made": result.tool_calls_made(),
        }
        return envelope(data, "prompt")


async def _prompt(request: web.Request, reference: str) -> web.StreamResponse:
    deps = request.app[CHAT]
    prompt = _Prompt(request, deps, deps.state.snapshot)
    try:
        await prompt.prepare(reference)
        if "text/event-stream" in request.headers.get("Accept", ""):
            return await _streamed(prompt)
        result = await run_turn(deps, prompt.turn)
    except ChatError as error:
        response = smarter_error_of(error, "prompt")
        response.headers.update(answer_headers(prompt.started, None, prompt.snapshot, request))
        return response
    headers = answer_headers(prompt.started, result, prompt.snapshot, request)
    return jsonwire.response(prompt.answer(result), headers=headers)


async def _streamed(prompt: _Prompt) -> web.StreamResponse:
    """The prompt as server-sent events: ``progress`` while the turn runs, then ``result``
    with the status and the document the prompt answers without a stream."""
    deps, request = prompt.deps, prompt.request
    events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    turn = prompt.turn
    turn.progress = events.put_nowait
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            **answer_headers(prompt.started, None, prompt.snapshot, request),
        }
    )
    await response.prepare(request)

    async def run() -> TurnResult:
        try:
            return await run_turn(deps, turn)
        finally:
            events.put_nowait(None)

    running = asyncio.create_task(run())
    try:
        while (event := await events.get()) is not None:
            await response.write(b"event: progress\ndata: " + jsonwire.dumps(event) + b"\n\n")
        try:
            document, status = prompt.answer(await running), 200
        except ChatError as error:
            status = error.status
            document = smarter_error_document(status, error.code, str(error), command="prompt")
        result = {"status": status, "response": document}
        await response.write(b"event: result\ndata: " + jsonwire.dumps(result) + b"\n\n")
        await response.write_eof()
    finally:
        running.cancel()  # the caller went away: the turn stops (a no-op once it ended)
    return response


async def prompt_by_path(request: web.Request) -> web.StreamResponse:
    return await _prompt(request, request.match_info["name"])


async def prompt_by_host(request: web.Request) -> web.StreamResponse:
    deps = request.app[CHAT]
    host = (request.host or "").split(":")[0].lower()
    suffix = f".{deps.settings.account_number}.api.{deps.settings.api_domain}"
    if not host.endswith(suffix) or host == suffix.lstrip("."):
        return smarter_error_of(
            ChatError(404, "unknown_host", f"POST /prompt/ is served on <client>{suffix} hosts"),
            "prompt",
        )
    return await _prompt(request, host.removesuffix(suffix).replace("-", "_"))


async def client_config(request: web.Request) -> web.Response:
    """``POST`` (Smarter's and the SDK's way, body ``{"session_key"}``) or ``GET``: the chat
    configuration, and a session: the one named (with its messages) or a new one."""
    deps = request.app[CHAT]
    snapshot = deps.state.snapshot
    try:
        client = client_for(snapshot, request.match_info["name"], request)
        opened_by = authorize(client, presented(request), snapshot)
        body = await json_object(request, deps.settings) if request.method == "POST" else {}
        session_key = _session_key(body)
        history = None
        if body.get("session_key"):
            history = await _session_history(deps, session_key, client, opened_by)
        verbose = request.query.get("verbose", "").lower() in ("true", "1", "yes")
        data = chat_config(
            client, session_key, history or [], base=base_url(request), verbose=verbose
        )
        response = web.json_response(envelope(data, "config"))
    except ChatError as error:
        response = smarter_error_of(error, "config")
    named = deps.state.snapshot.client(request.match_info["name"])
    response.headers.update(cors_headers(named, request))
    return response


def cors_headers(client: CompiledClient | None, request: web.Request) -> dict[str, str]:
    """CORS for a client's browser routes: any origin, unless its manifest lists
    ``allowedOrigins`` (then only those, echoed back)."""
    allowed = client.document.spec.config.allowed_origins if client is not None else []
    if not allowed:
        return CORS
    origin = request.headers.get("Origin", "")
    headers = {k: v for k, v in CORS.items() if k != "Access-Control-Allow-Origin"}
    headers["Vary"] = "Origin"
    if origin in allowed:
        headers["Access-Control-Allow-Origin"] = origin
    return headers


async def cors_preflight(request: web.Request) -> web.Response:
    client = request.app[CHAT].state.snapshot.client(request.match_info["name"])
    return web.Response(status=204, headers=cors_headers(client, request))
