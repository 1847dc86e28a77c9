"""What the chat routes share: their dependencies, keys, bodies, headers and the turn's errors.

Serve stage, used by ``openai_routes.py`` and ``smarter_routes.py`` (added to the application
by ``chat_routes.py``). Each request takes the current snapshot once (one generation from
start to end), finds the client, checks its key, runs one turn (``serve/chat.py``) and answers:

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
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from reconciler.api import digests_match, presented_digests
from serve import jsonwire, logctx
from serve.admission import admit
from serve.bodies import BodyTimeout, BodyTooLarge, read_body
from serve.budgets import Budgets
from serve.chat import Caller, Turn, TurnResult
from serve.chat_metrics import ChatMetrics
from serve.compiled import CompiledClient, Snapshot
from serve.errors import HttpError, openai_error_response
from serve.limits import Limiter
from serve.prices import price_of
from serve.providers import Providers, UpstreamError
from serve.sessions import (
    SessionStore,
)
from serve.settings import ChatSettings
from serve.snapshot import ServingState
from serve.usage import UsageRecord, UsageRecorder

log = logging.getLogger("samops.chat")


@dataclass(frozen=True, slots=True)
class ChatDeps:
    state: ServingState
    providers: Providers
    sessions: SessionStore
    settings: ChatSettings
    metrics: ChatMetrics | None = None
    admin_key_digest: str | None = None
    """The admin key sees every client in Smarter's reads."""
    usage: UsageRecorder | None = None
    """Where each turn's usage goes (``usage.py``); None: not recorded."""
    limiter: Limiter | None = None
    """The shared limits (``limits.py``, ``rate_limits.py``); None: none enforced."""
    budgets: Budgets | None = None
    """The budgets' enforcement on that limiter (``budgets.py``)."""


CHAT = web.AppKey("chat", ChatDeps)


ChatError = HttpError
"""What a chat handler raises; the route family renders it (``serve/errors.py``)."""


def openai_error_of(error: HttpError) -> web.Response:
    response = openai_error_response(
        error.status, error.code, str(error), error.param, error.openai_type
    )
    response.headers.update(error.headers)
    return response


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


def client_for(snapshot: Snapshot, reference: str, request: web.Request) -> CompiledClient:
    """The applied client named by ``reference`` (its name, integer id or hashed id), then
    named in the request's metrics; or a 404."""
    client = snapshot.client(reference)
    if client is None:
        raise ChatError(
            404, "unknown_client", f"there is no LLM client named or numbered {reference!r}"
        )
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


async def json_object(request: web.Request, settings: ChatSettings) -> dict[str, Any]:
    """The request's body, a JSON object within the size and time bounds (empty: ``{}``)."""
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
    return body


async def json_body(request: web.Request, settings: ChatSettings) -> dict[str, Any]:
    """A chat request's body: a JSON object with a bounded list of messages."""
    body = await json_object(request, settings)
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


def new_turn(
    deps: ChatDeps,
    client: CompiledClient,
    snapshot: Snapshot,
    messages: list[dict[str, Any]],
    caller_tools: list[dict[str, Any]] | None = None,
    overrides: Mapping[str, Any] | None = None,
    caller: Caller | None = None,
) -> Turn:
    """A turn of ``client`` within the server's bounds on tool rounds and calls."""
    return Turn(
        client,
        snapshot,
        deps.providers,
        messages,
        caller_tools or [],
        max_tool_rounds=deps.settings.max_tool_rounds,
        max_calls_per_round=deps.settings.max_tool_calls_per_round,
        max_concurrent_calls=deps.settings.max_concurrent_tool_calls,
        overrides=overrides or {},
        caller=caller or Caller(),
    )


async def admit_turn(deps: ChatDeps, turn: Turn, request: web.Request) -> None:
    """Take the turn from its rate limits and budgets (``admission.py``), or raise their
    429."""
    turn.holds = await admit(
        deps.limiter,
        deps.budgets,
        turn.snapshot,
        turn.client,
        turn.caller.key_name,
        model=turn.model(),
        request_bytes=request.content_length or 0,
    )


async def run_turn(deps: ChatDeps, turn: Turn) -> TurnResult:
    """Run ``turn`` to its answer (errors as ``ChatError``s), counted in the metrics and in
    the usage, answered or not."""
    result, started, ok = turn.new_result(), time.perf_counter(), False
    try:
        async with turn_errors(deps, turn):
            await turn.run(result)
        ok = True
    finally:
        account_turn(deps, turn, result, ok=ok, seconds=time.perf_counter() - started)
    if deps.metrics is not None:
        deps.metrics.turn(result, turn.client.provider)
    return result


def account_turn(
    deps: ChatDeps, turn: Turn, result: TurnResult, *, ok: bool, seconds: float
) -> None:
    """A turn ended: settle what it took from its rate limits and budgets
    (``admission.py``) and hand what it cost to the usage recorder (``usage.py``); a turn
    that never reached the upstream cost nothing and leaves no usage row."""
    if deps.limiter is not None and turn.holds is not None:
        turn.holds.settle(deps.limiter, deps.budgets, result.usage)
    if deps.usage is None or not result.usage.calls:
        return
    target = turn.snapshot.providers.get(turn.client.provider)
    declared = target.prices if target is not None else {}
    caller = turn.caller
    deps.usage.record(
        UsageRecord.of(
            result.usage,
            price_of(result.model, declared),
            client=turn.client.name,
            route=caller.route,
            key_name=caller.key_name,
            session_key=caller.session_key,
            provider=turn.client.provider,
            model=result.model,
            ok=ok,
            seconds=seconds,
            generation=turn.snapshot.generation,
        )
    )
