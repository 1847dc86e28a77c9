"""The tests' upstream: the offline demo model (``serve/offline.py``) with failures on request.

Test seam, also used by the benchmarks. samops calls model providers through the ``openai``
SDK; this aiohttp application answers that SDK unchanged (sync and async clients, streaming,
tool calling) with replies computed from the request alone, so tests run real HTTP against a
real server without the network. ``samops`` never serves it.

A chat completion is answered by the first rule that applies:

1. directives in the last user message: ``#status=NNN`` answers that HTTP error,
   ``#delay=MS`` waits first, ``#flaky=N`` fails the first N identical requests with 500,
   ``#malformed`` answers 200 with a JSON body that is not a chat completion;
2. otherwise as the offline demo model answers (``serve/offline.py``): tool results,
   ``call:<tool>{json}``, ``#system``, ``echo: <text>``.

With ``record=True`` (``--record`` on the command line) every chat completion body is kept in
``app[REQUESTS]`` and served at ``GET /_scripted/requests`` (``DELETE`` clears it), for tests
that run the upstream in another process. ``api_key`` requires ``Authorization: Bearer KEY``.
``python -m tests.fakes.upstream --port 8081`` prints the base URL to give the SDK.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import os
import queue
import re
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from serve import eventloop
from serve.offline import (
    MODELS,
    ChatRequest,
    Json,
    Reply,
    ScriptError,
    answer,
    last_user_text,
    list_models,
    openai_error,
    parse_request,
    script_reply,
    text_of,
)

__all__ = ["MODELS", "Reply", "text_of"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATUS = re.compile(r"#status=(\d+)")
DELAY = re.compile(r"#delay=(\d+(?:\.\d+)?)")
FLAKY = re.compile(r"#flaky=(\d+)")


@dataclass(slots=True)
class ScriptedState:
    """The settings of one scripted upstream and what it remembers between requests."""

    latency_ms: float
    api_key: str | None
    record: bool = False
    failures: dict[str, int] = field(default_factory=dict)  # #flaky: 500s so far, per messages
    completions: int = 0  # numbers the completion ids


REQUESTS = web.AppKey("scripted_requests", list[Json])
STATE = web.AppKey("scripted_state", ScriptedState)


@dataclass(frozen=True, slots=True)
class Directives:
    status: int | None = None
    delay_ms: float = 0
    flaky: int = 0
    malformed: bool = False


def parse_directives(text: str) -> Directives:
    status = STATUS.search(text)
    delay = DELAY.search(text)
    flaky = FLAKY.search(text)
    if status and not 400 <= int(status.group(1)) <= 599:
        raise ScriptError(
            f"#status={status.group(1)} cannot be scripted: use an error status from 400 to 599"
        )
    return Directives(
        status=int(status.group(1)) if status else None,
        delay_ms=float(delay.group(1)) if delay else 0,
        flaky=int(flaky.group(1)) if flaky else 0,
        malformed="#malformed" in text,
    )


def scripted_failure(
    state: ScriptedState, chat: ChatRequest, orders: Directives
) -> web.Response | None:
    if orders.malformed:
        return web.json_response({"scripted": "not a chat completion (#malformed)"})
    if orders.status is not None:
        return openai_error(
            orders.status,
            f"scripted failure: the last user message asks for #status={orders.status}",
        )
    if not orders.flaky:
        return None
    key = hashlib.sha256(json.dumps(chat.messages, sort_keys=True).encode()).hexdigest()
    failed = state.failures.get(key, 0)
    if failed >= orders.flaky:
        return None
    state.failures[key] = failed + 1
    return openai_error(
        500,
        f"scripted failure {failed + 1} of {orders.flaky} for these messages"
        f" (#flaky={orders.flaky}); the same request succeeds after that",
    )


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        body = await request.json()
    except ValueError:
        return openai_error(400, "the request body is not JSON: send the OpenAI chat request")
    if request.app[STATE].record:
        request.app[REQUESTS].append(body)
    try:
        chat = parse_request(body)
        orders = parse_directives(last_user_text(chat.messages))
        reply = script_reply(chat)
    except ScriptError as exc:
        return openai_error(400, str(exc))
    await asyncio.sleep((state.latency_ms + orders.delay_ms) / 1000)
    failure = scripted_failure(state, chat, orders)
    if failure is not None:
        return failure
    state.completions += 1
    return await answer(request, chat, reply, f"chatcmpl-scripted{state.completions:06d}")


async def recorded_requests(request: web.Request) -> web.Response:
    return web.json_response(request.app[REQUESTS])


async def clear_requests(request: web.Request) -> web.Response:
    request.app[REQUESTS].clear()
    return web.Response(status=204)


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The API key check, and HTTP errors in OpenAI's shape (the SDK reads ``error.message``)."""
    expected = request.app[STATE].api_key
    if expected is not None and request.path.startswith("/v1/"):
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {expected}".encode()):
            return openai_error(
                401,
                "Incorrect API key provided: send the key the scripted upstream was started with",
            )
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return openai_error(
            exc.status,
            f"{request.method} {request.path}: {exc.reason}; the scripted upstream serves"
            " GET /v1/models and POST /v1/chat/completions",
        )


def create_scripted_app(
    *, latency_ms: float = 0, api_key: str | None = None, record: bool = False
) -> web.Application:
    """The upstream; ``latency_ms`` is added to every chat completion, ``api_key`` is required,
    ``record`` keeps and serves the requests (tests only)."""
    app = web.Application(middlewares=[openai_errors])
    app[REQUESTS] = []
    app[STATE] = ScriptedState(latency_ms=latency_ms, api_key=api_key, record=record)
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/chat/completions", chat_completions)
    if record:
        app.router.add_get("/_scripted/requests", recorded_requests)
        app.router.add_delete("/_scripted/requests", clear_requests)
    return app


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    started: Callable[[str], object],
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``app`` until ``stop`` is set (forever without one); ``started`` gets the base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        started(f"http://{host}:{runner.addresses[0][1]}/v1")
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def serve_in_thread(
    app: web.Application, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 10
) -> Iterator[str]:
    """Serve ``app`` from a thread with its own event loop, for blocking callers; yields the
    base URL (``http://127.0.0.1:<port>/v1``). Port 0 picks a free port."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    outcome: queue.Queue[str | BaseException] = queue.Queue()

    def run() -> None:
        try:
            loop.run_until_complete(
                serve(app, host=host, port=port, started=outcome.put, stop=stop)
            )
        except BaseException as exc:
            outcome.put(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="scripted-upstream", daemon=True)
    thread.start()
    base_url = outcome.get(timeout=timeout)
    if isinstance(base_url, BaseException):
        thread.join(timeout)
        raise RuntimeError(f"the scripted upstream cannot listen on {host}:{port}") from base_url
    try:
        yield base_url
    finally:
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.upstream",
        description="Serve the scripted OpenAI-compatible upstream (tests, offline demo, bench).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0, help="added to every completion")
    parser.add_argument("--api-key", help="require `Authorization: Bearer KEY` on /v1/")
    parser.add_argument(
        "--record", action="store_true", help="keep requests, served at /_scripted/requests"
    )
    args = parser.parse_args(argv)
    app = create_scripted_app(latency_ms=args.latency_ms, api_key=args.api_key, record=args.record)
    announce = functools.partial(print, flush=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            eventloop.run(serve(app, host=args.host, port=args.port, started=announce))
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        sys.exit(f"cannot listen on {args.host}:{args.port} ({reason}); pick another --port")


if __name__ == "__main__":
    main()
