"""Chat routes: OpenAI-compatible ``/v1`` and Smarter-compatible prompt and config routes.

Serve stage. Each request takes the current snapshot once (one generation from start to end),
finds the client, checks its key, runs one turn (``serve/chat.py``) and answers:

- ``POST /v1/chat/completions`` (``model`` is the client's name; ``stream: true`` answers
  server-sent events ending with ``data: [DONE]``) and ``GET /v1/models`` (only the clients the
  presented key may use), with OpenAI's error shape;
- ``POST /api/v1/llm-clients/{name}/prompt/`` and ``POST /prompt/`` on
  ``{name}.{account}.api.{domain}`` hosts, with Smarter's envelope and sessions;
- ``GET /api/v1/llm-clients/{name}/config/``: UI fields and a new session key (CORS open).

Keys: ``Authorization: Token <key>`` or ``Bearer <key>``; a client with an active key requires
exactly that key (compared as digests, in constant time). Every answer carries
``x-samops-overhead-ms`` (time spent outside upstream calls), ``x-samops-generation`` and
``x-request-id``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from reconciler.api import digests_match, presented_digests
from serve import jsonwire, logctx
from serve.bodies import BodyTimeout, BodyTooLarge, read_body
from serve.chat import Turn, TurnResult, text_of
from serve.chat_metrics import ChatMetrics
from serve.errors import HttpError, error_response, openai_error_response, openai_stream_error
from serve.providers import Providers, UpstreamError
from serve.sessions import (
    SESSION_KEY,
    SessionNotYours,
    SessionStore,
    SessionsUnavailable,
    TurnRecord,
    new_session_key,
)
from serve.settings import ChatSettings
from serve.snapshot import CompiledClient, ServingState, Snapshot

log = logging.getLogger("samops.chat")
SMARTER_API = "smarter.sh/v1"


@dataclass(frozen=True, slots=True)
class ChatDeps:
    state: ServingState
    providers: Providers
    sessions: SessionStore
    settings: ChatSettings
    metrics: ChatMetrics | None = None


CHAT = web.AppKey("chat", ChatDeps)


ChatError = HttpError
"""What a chat handler raises; the route family renders it (``serve/errors.py``)."""


def _openai_error(error: HttpError) -> web.Response:
    return openai_error_response(error.status, error.code, str(error))


def _samops_error(error: HttpError) -> web.Response:
    return error_response(error.status, error.code, str(error))


def presented_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    return key.strip() or None if scheme.lower() in ("token", "bearer") else None


def authorize(client: CompiledClient, key: dict[str, str] | None, snapshot: Snapshot) -> str | None:
    """Raise a ChatError unless the presented key (its digests, see ``presented``) may use
    ``client``: 401 for a missing, unknown, deactivated or expired key, 403 for a valid key of
    another client. A key known to be inactive or expired is refused whatever the client, so
    deactivating a key cuts it off even where that leaves the client public (Smarter's rule
    for inactive keys). Returns the name of the presented key's SmarterAuthToken, if known
    (a session belongs to it)."""
    now = dt.datetime.now(dt.UTC)
    known = None
    if key is not None:
        known = snapshot.tokens.get(key["sha256"]) or snapshot.tokens.get(key["sha512"])
        if known is not None and not known.active:
            raise ChatError(401, "key_inactive", "this key has been deactivated")
        if known is not None and known.expires_at is not None and now >= known.expires_at:
            raise ChatError(401, "key_expired", "this key has expired")
    policy = client.key
    if not policy.required:
        return known.token if known is not None else None
    if key is None:
        raise ChatError(
            401,
            "missing_key",
            f"the client {client.name!r} requires an API key: send 'Authorization: Bearer <key>'",
        )
    if not digests_match(key, policy.digests):
        if known is not None:
            raise ChatError(403, "wrong_key", f"this key may not use the client {client.name!r}")
        raise ChatError(401, "invalid_key", "this API key is not valid")
    if policy.expired(now):
        raise ChatError(401, "key_expired", f"the key of the client {client.name!r} has expired")
    return known.token if known is not None else None


def bounded_history(
    messages: Sequence[dict[str, Any]], settings: ChatSettings
) -> list[dict[str, Any]]:
    """The newest earlier messages within the settings' count and size, starting at a user
    message (never at a tool result cut off from the call it answers)."""
    kept: list[dict[str, Any]] = []
    chars = 0
    for message in reversed(messages):
        chars += len(str(message.get("content") or "")) + len(str(message.get("tool_calls") or ""))
        if len(kept) >= settings.max_history_messages or chars > settings.max_history_chars:
            break
        kept.append(message)
    kept.reverse()
    while kept and kept[0].get("role") not in ("user", "system"):
        kept.pop(0)
    return kept


def presented(request: web.Request) -> dict[str, str] | None:
    """The digests of the request's key, computed once per request (None without a key)."""
    key = presented_key(request)
    return presented_digests(key) if key is not None else None


def _client(snapshot: Snapshot, name: str, request: web.Request) -> CompiledClient:
    """The applied client ``name`` (then named in the request's metrics), or a 404."""
    client = snapshot.clients.get(name)
    if client is None:
        raise ChatError(404, "unknown_client", f"there is no LLM client named {name!r}")
    request[CLIENT_KEY] = client.name
    return client


CLIENT_KEY = web.RequestKey("samops_client", str)
"""The applied client a chat request named, for its metrics."""
CHAT_ROUTES = {
    "/v1/chat/completions",
    "/v1/models",
    "/api/v1/llm-clients/{name}/prompt/",
    "/prompt/",
    "/api/v1/llm-clients/{name}/config/",
}


async def json_body(request: web.Request, settings: ChatSettings) -> dict[str, Any]:

    try:
        raw = await read_body(request, settings.max_body_bytes, settings.body_timeout_seconds)
    except BodyTooLarge as exc:
        raise ChatError(413, "body_too_large", str(exc)) from exc
    except BodyTimeout as exc:
        raise ChatError(408, "body_timeout", str(exc)) from exc
    try:
        body = jsonwire.loads(raw or b"{}")
    except jsonwire.JSONDecodeError as exc:
        raise ChatError(400, "invalid_json", "the request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise ChatError(400, "invalid_body", "the request body must be a JSON object")
    messages = body.get("messages")
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages)
    ):
        raise ChatError(
            400,
            "invalid_messages",
            "'messages' must be a non-empty list of {role, content} objects",
        )
    if len(messages) > settings.max_messages:
        raise ChatError(
            413, "too_many_messages", f"at most {settings.max_messages} messages per request"
        )
    return body


def answer_headers(
    started: float, result: TurnResult | None, snapshot: Snapshot, request: web.Request
) -> dict[str, str]:
    elapsed = time.perf_counter() - started
    upstream = result.upstream_seconds if result else 0.0
    return {
        "x-samops-overhead-ms": f"{max(0.0, elapsed - upstream) * 1000:.3f}",
        "x-samops-generation": str(snapshot.generation),
        "x-request-id": logctx.request_id.get() or "",
    }


@asynccontextmanager
async def turn_errors(deps: ChatDeps, turn: Turn) -> AsyncIterator[None]:
    """The turn's deadline, and upstream failures, as ChatErrors (502/504), counted."""
    try:
        async with asyncio.timeout(deps.settings.deadline_seconds):
            yield
    except TimeoutError as exc:
        raise ChatError(
            504,
            "deadline_exceeded",
            f"the turn took longer than {deps.settings.deadline_seconds:g} s",
        ) from exc
    except UpstreamError as exc:
        if deps.metrics is not None:
            deps.metrics.upstream_failed(exc, turn.client.provider)
        raise ChatError(exc.status, exc.code, str(exc)) from exc


# --- OpenAI-compatible ------------------------------------------------------------------------


async def chat_completions(request: web.Request) -> web.StreamResponse:
    deps = request.app[CHAT]
    started = time.perf_counter()
    snapshot = deps.state.snapshot
    try:
        body = await json_body(request, deps.settings)
        client = _client(snapshot, str(body.get("model", "")), request)
        authorize(client, presented(request), snapshot)
        tools = body.get("tools")
        caller_tools: list[dict[str, Any]] = tools if isinstance(tools, list) else []
        turn = Turn(
            client,
            snapshot,
            deps.providers,
            body["messages"],
            caller_tools,
            deps.settings.max_tool_rounds,
            deps.settings.max_tool_calls_per_round,
            deps.settings.max_concurrent_tool_calls,
        )
        if body.get("stream"):
            return await _stream(request, deps, turn, body, started)
        async with turn_errors(deps, turn):
            result = await turn.run()
        if deps.metrics is not None:
            deps.metrics.turn(result, turn.client.provider)
    except ChatError as error:
        response = _openai_error(error)
        response.headers.update(answer_headers(started, None, snapshot, request))
        return response
    completion = {**result.completion, "model": client.name}
    headers = answer_headers(started, result, snapshot, request)
    log.debug(
        "chat turn",
        extra={
            "client": client.name,
            "rounds": result.rounds,
            "generation": snapshot.generation,
            "overhead_ms": headers["x-samops-overhead-ms"],
        },
    )
    return jsonwire.response(completion, headers=headers)


async def _stream(
    request: web.Request, deps: ChatDeps, turn: Turn, body: Mapping[str, Any], started: float
) -> web.StreamResponse:
    """Server-sent events, passed through from the upstream as they come. Errors before the
    first chunk are ordinary error answers; later ones end the stream with an error event.
    ``x-samops-overhead-ms`` covers the time until the first chunk."""
    result = TurnResult({}, [p.name for p in turn.selected])
    chunks = turn.stream(result)
    options = body.get("stream_options")
    with_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    async with turn_errors(deps, turn):
        first = await anext(chunks)
    response = web.StreamResponse(
        headers={
            **answer_headers(started, result, turn.snapshot, request),
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
        }
    )
    await response.prepare(request)

    async def send(chunk: dict[str, Any]) -> None:
        if "usage" in chunk and not chunk.get("choices") and not with_usage:
            return
        event = jsonwire.dumps({**chunk, "model": turn.client.name})
        await response.write(b"data: " + event + b"\n\n")

    try:
        try:
            await send(first)
            async with asyncio.timeout(deps.settings.deadline_seconds):
                async for chunk in chunks:
                    await send(chunk)
        except (UpstreamError, TimeoutError) as exc:
            code = getattr(exc, "code", "deadline_exceeded")
            await response.write(openai_stream_error(code, str(exc) or "the turn took too long"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
    except ConnectionResetError:  # the caller left: normal, and the upstream call ends here
        log.debug("caller went away", extra={"path": request.path})
    finally:
        await chunks.aclose()
        if deps.metrics is not None:
            deps.metrics.turn(result, turn.client.provider)
    return response


async def list_models(request: web.Request) -> web.Response:
    deps = request.app[CHAT]
    snapshot = deps.state.snapshot
    key = presented(request)
    visible = []
    for client in snapshot.clients.values():
        try:
            authorize(client, key, snapshot)
        except ChatError:
            continue
        visible.append({"id": client.name, "object": "model", "created": 0, "owned_by": "samops"})
    return web.json_response({"object": "list", "data": sorted(visible, key=lambda m: m["id"])})


# --- Smarter-compatible -----------------------------------------------------------------------


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
        client = _client(snapshot, name, request)
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
        turn = Turn(
            client,
            snapshot,
            deps.providers,
            messages,
            max_tool_rounds=deps.settings.max_tool_rounds,
            max_calls_per_round=deps.settings.max_tool_calls_per_round,
            max_concurrent_calls=deps.settings.max_concurrent_tool_calls,
        )
        async with turn_errors(deps, turn):
            result = await turn.run()
        if deps.metrics is not None:
            deps.metrics.turn(result, turn.client.provider)
    except ChatError as error:
        response = _samops_error(error)
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
        "tool_calls_made": [
            {
                "name": c.name,
                "arguments": c.arguments,
                "result": c.result,
                "error": c.error,
                "duration_ms": c.duration_ms,
            }
            for c in result.tool_calls
        ],
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
        return _samops_error(
            ChatError(404, "unknown_host", f"POST /prompt/ is served on <client>{suffix} hosts")
        )
    return await _prompt(request, host.removesuffix(suffix))


async def client_config(request: web.Request) -> web.Response:
    deps = request.app[CHAT]
    snapshot = deps.state.snapshot
    try:
        client = _client(snapshot, request.match_info["name"], request)
        authorize(client, presented(request), snapshot)
    except ChatError as error:
        response = _samops_error(error)
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


@web.middleware
async def request_ids(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every request gets an id (the caller's ``X-Request-Id`` or a new one) for the logs; a
    chat request is counted, timed and held in flight (``chat_metrics.py``)."""
    identifier = (request.headers.get("X-Request-Id") or secrets.token_hex(16))[:100]
    token = logctx.request_id.set(identifier)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else ""
    metrics = request.app[CHAT].metrics if route in CHAT_ROUTES else None
    if metrics is None:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        finally:
            logctx.request_id.reset(token)
    started, status = time.perf_counter(), 500
    metrics.in_flight.inc()
    try:
        response: web.StreamResponse = await handler(request)
        status = response.status
        return response
    finally:
        metrics.in_flight.dec()
        metrics.seconds.labels(route=route).observe(time.perf_counter() - started)
        client = request.get(CLIENT_KEY) or ""
        metrics.requests.labels(client=client, route=route, status=str(status)).inc()
        logctx.request_id.reset(token)


def add_chat_routes(app: web.Application, deps: ChatDeps) -> None:
    app[CHAT] = deps
    app.middlewares.append(request_ids)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/api/v1/llm-clients/{name}/prompt/", prompt_by_path)
    app.router.add_post("/prompt/", prompt_by_host)
    app.router.add_get("/api/v1/llm-clients/{name}/config/", client_config)
    app.router.add_route("OPTIONS", "/api/v1/llm-clients/{name}/config/", cors_preflight)
