"""The OpenAI-compatible chat routes: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Serve stage, added by ``chat_routes.add_chat_routes``. Every OpenAI parameter is passed on;
``model`` names the LLM client. Answers, streams and errors have OpenAI's shapes, so the
``openai`` SDK and the tools built on it work unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from serve import jsonwire
from serve.chat import Caller, Turn
from serve.chat_http import (
    CHAT,
    ChatDeps,
    ChatError,
    account_turn,
    admit_turn,
    answer_headers,
    authorize,
    client_for,
    json_body,
    new_turn,
    openai_error_of,
    presented,
    run_turn,
    turn_errors,
)
from serve.errors import openai_error_response, openai_stream_error
from serve.openai_params import checked_parameters
from serve.providers import UpstreamError

log = logging.getLogger("samops.chat")


async def chat_completions(request: web.Request) -> web.StreamResponse:
    deps = request.app[CHAT]
    started = time.perf_counter()
    snapshot = deps.state.snapshot
    try:
        body = await json_body(request, deps.settings)
        client = client_for(snapshot, str(body.get("model", "")), request)
        key_name = authorize(client, presented(request), snapshot)
        has_tools = bool(client.functions or client.plugins)
        overrides = checked_parameters(body, client.max_tokens, has_tools)
        tools = body.get("tools")
        caller_tools: list[dict[str, Any]] = tools if isinstance(tools, list) else []
        turn = new_turn(
            deps,
            client,
            snapshot,
            body["messages"],
            caller_tools,
            overrides,
            Caller("openai", key_name),
        )
        await admit_turn(deps, turn, request)
        if body.get("stream"):
            return await _stream(request, deps, turn, body, started)
        result = await run_turn(deps, turn)
    except ChatError as error:
        response = openai_error_of(error)
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
    result = turn.new_result()
    chunks = turn.stream(result)
    options = body.get("stream_options")
    with_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    try:
        async with turn_errors(deps, turn):
            first = await anext(chunks)
    except BaseException:  # a tool round may have run before the failed first chunk
        account_turn(deps, turn, result, ok=False, seconds=time.perf_counter() - started)
        raise
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

    ok = False
    try:
        try:
            await send(first)
            async with asyncio.timeout(deps.settings.deadline_seconds):
                async for chunk in chunks:
                    await send(chunk)
            ok = True
        except (UpstreamError, TimeoutError) as exc:
            code = getattr(exc, "code", "deadline_exceeded")
            await response.write(openai_stream_error(code, str(exc) or "the turn took too long"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
    except ConnectionResetError:  # the caller left: normal, and the upstream call ends here
        log.debug("caller went away", extra={"path": request.path})
    finally:
        await chunks.aclose()
        account_turn(deps, turn, result, ok=ok, seconds=time.perf_counter() - started)
        if deps.metrics is not None:
            deps.metrics.turn(result, turn.client.provider)
    return response


async def retrieve_model(request: web.Request) -> web.Response:
    """``GET /v1/models/{model}``: a client the presented key may use, as OpenAI's model."""
    deps = request.app[CHAT]
    snapshot = deps.state.snapshot
    name = request.match_info["model"]
    client = snapshot.clients.get(name)
    try:
        if client is None:
            raise ChatError(404, "model_not_found", f"The model '{name}' does not exist")
        authorize(client, presented(request), snapshot)
    except ChatError as error:
        if error.status in (401, 403):  # not this key's to see, as OpenAI answers
            error = ChatError(404, "model_not_found", f"The model '{name}' does not exist")
        return openai_error_of(error)
    return jsonwire.response(_model(client.name))


async def unknown_openai_route(request: web.Request) -> web.Response:
    """Any other ``/v1`` path: 404 in OpenAI's shape, as OpenAI answers it."""
    return openai_error_response(
        404, "unknown_url", f"Invalid URL ({request.method} {request.path})"
    )


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "samops"}


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
        visible.append(_model(client.name))
    return web.json_response({"object": "list", "data": sorted(visible, key=lambda m: m["id"])})
