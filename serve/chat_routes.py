"""The chat routes, OpenAI's and Smarter's, added to the application in one place.

Serve stage. ``add_chat_routes`` installs the chat dependencies, the request-id middleware and
every chat route: ``openai_routes.py`` (``/v1``) and ``smarter_routes.py`` (the prompt and
configuration routes), which share ``chat_http.py`` (authorization, body reading, headers,
the turn's errors).
"""

from __future__ import annotations

import itertools
import secrets
import time
from typing import Any

from aiohttp import web

from serve import logctx
from serve.chat_http import CHAT, CHAT_ROUTES, CLIENT_KEY, ChatDeps
from serve.openai_routes import (
    chat_completions,
    list_models,
    retrieve_model,
    unknown_openai_route,
)
from serve.smarter_history import add_history_routes
from serve.smarter_reads import add_smarter_reads
from serve.smarter_routes import client_config, cors_preflight, prompt_by_host, prompt_by_path

_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count()


def new_request_id() -> str:
    """A request id unique in the fleet: this process' random prefix and a counter (ids
    correlate log lines; they are not secrets, so no system randomness per request)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


@web.middleware
async def request_ids(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every request gets an id (the caller's ``X-Request-Id`` or a new one) for the logs; a
    chat request is counted, timed and held in flight (``chat_metrics.py``)."""
    identifier = (request.headers.get("X-Request-Id") or new_request_id())[:100]
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
        metrics.seconds_by(route).observe(time.perf_counter() - started)
        metrics.requests_by(request.get(CLIENT_KEY) or "", route, str(status)).inc()
        logctx.request_id.reset(token)


def add_chat_routes(app: web.Application, deps: ChatDeps) -> None:
    app[CHAT] = deps
    app.middlewares.append(request_ids)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/api/v1/llm-clients/{name}/prompt/", prompt_by_path)
    app.router.add_post("/prompt/", prompt_by_host)
    app.router.add_get("/api/v1/llm-clients/{name}/config/", client_config)
    app.router.add_post("/api/v1/llm-clients/{name}/config/", client_config)
    app.router.add_route("OPTIONS", "/api/v1/llm-clients/{name}/config/", cors_preflight)
    app.router.add_route("OPTIONS", "/api/v1/llm-clients/{name}/prompt/", cors_preflight)
    add_smarter_reads(app)
    add_history_routes(app)
    app.router.add_get("/v1/models/{model}", retrieve_model)
    app.router.add_route("*", "/v1/{tail:.*}", unknown_openai_route)
