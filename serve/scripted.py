"""A scripted OpenAI-compatible upstream: the model provider of tests, the demo and benchmarks.

Serve stage, test seam. samops calls model providers through the ``openai`` SDK; this aiohttp
application answers that SDK unchanged (sync and async clients, streaming, tool calling) with
replies computed from the request alone, so tests and the offline demo run real HTTP against a
real server without the network. ``samops`` never serves it to users.

A chat completion is answered by the first rule that applies:

1. directives in the last user message: ``#status=NNN`` answers that HTTP error,
   ``#delay=MS`` waits first, ``#flaky=N`` fails the first N identical requests with 500,
   ``#malformed`` answers 200 with a JSON body that is not a chat completion;
2. the last message is a tool result: ``tool results: <tool_call_id>=<content>; ...``;
3. tools are offered and the last user message says ``call:<tool>{<json object>}`` (or just
   ``call:<tool>`` for ``{}``): one tool call per directive that names an offered tool
   (none when ``tool_choice`` is ``"none"``);
4. the last user message says ``#system``: the text of the system message(s);
5. otherwise ``echo: <last user text>``.

With ``record=True`` (tests only: ``--record`` on the command line) every chat completion body
is kept in ``app[REQUESTS]`` and served at ``GET /_scripted/requests`` (``DELETE`` clears it),
for tests that run the upstream in another process. Without it, as the offline demo runs it,
nothing is kept and there is no such route: a conversation lives only for its request.
``python -m serve.scripted --port 8081`` prints the base URL to give the SDK.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import math
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from serve import eventloop

Json = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "scripted-echo")
MODELS_CREATED = 1_700_000_000  # fixed, so that the model listing is the same on every run
STATUS = re.compile(r"#status=(\d+)")
DELAY = re.compile(r"#delay=(\d+(?:\.\d+)?)")
FLAKY = re.compile(r"#flaky=(\d+)")
CALL = re.compile(r"call:([A-Za-z0-9_-]+)")


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


class ScriptError(Exception):
    """The request cannot be scripted; answered with 400 and this message."""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: list[Json]
    tools: frozenset[str]  # names of the offered function tools
    tool_choice: object
    stream: bool
    include_usage: bool


@dataclass(frozen=True, slots=True)
class Directives:
    status: int | None = None
    delay_ms: float = 0
    flaky: int = 0
    malformed: bool = False


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON object, as OpenAI sends it


@dataclass(frozen=True, slots=True)
class Reply:
    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"


# --- reading the request --------------------------------------------------------------------


def text_of(content: object) -> str:
    """A message's text: ``content`` is a string, a list of content parts, or null."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(str(p.get("text", "")) for p in parts)
    return ""


def last_user_text(messages: list[Json]) -> str:
    users = [m for m in messages if m.get("role") == "user"]
    return text_of(users[-1].get("content")) if users else ""


def offered_tools(tools: object) -> frozenset[str]:
    if tools is None:
        return frozenset()
    if not isinstance(tools, list):
        raise ScriptError(f"`tools` must be a list of tool objects, got {str(tools)[:60]!r}")
    names = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise ScriptError(
                f"tools[{index}] must be {{'type': 'function', 'function': {{'name': ...}}}}"
                f" (the scripted upstream offers function tools only), got {str(tool)[:80]!r}"
            )
        names.append(name)
    return frozenset(names)


def parse_request(body: object) -> ChatRequest:
    """The parts of an OpenAI chat completion body the script reads; the rest is ignored."""
    if not isinstance(body, dict):
        raise ScriptError("the request body must be a JSON object with `model` and `messages`")
    model, messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model:
        raise ScriptError(f"`model` must be a model id such as 'gpt-4o-mini', got {model!r}")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ScriptError("`messages` must be a list of message objects with `role` and `content`")
    if not messages:
        raise ScriptError("`messages` is empty: send at least one user message")
    options = body.get("stream_options")
    return ChatRequest(
        model=model,
        messages=messages,
        tools=offered_tools(body.get("tools")),
        tool_choice=body.get("tool_choice"),
        stream=body.get("stream") is True,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
    )


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


# --- the script: rules 2 to 5, pure ---------------------------------------------------------


def tool_results(messages: list[Json]) -> str:
    assistants = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    since = messages[assistants[-1] + 1 :] if assistants else messages
    results = [m for m in since if m.get("role") == "tool"]
    return "; ".join(f"{m.get('tool_call_id')}={text_of(m.get('content'))}" for m in results)


def call_directives(text: str, offered: frozenset[str], first_id: int) -> tuple[ToolCall, ...]:
    """``call:<tool>{json}`` directives naming offered tools, as tool calls numbered on."""
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    consumed = 0  # a directive inside an earlier one's JSON is an argument, not a call
    for match in CALL.finditer(text):
        name, end = match.group(1), match.end()
        if match.start() < consumed or name not in offered:
            continue
        arguments: object = {}
        if text.startswith("{", end):
            try:
                arguments, consumed = decoder.raw_decode(text, end)
            except json.JSONDecodeError as exc:
                raise ScriptError(
                    f"call:{name} at character {end}: its arguments are not valid JSON"
                    f' ({exc.msg}); write call:{name}{{"key": "value"}} or call:{name}'
                ) from exc
        call_id = f"call_{first_id + len(calls)}"
        calls.append(ToolCall(call_id, name, json.dumps(arguments, separators=(",", ":"))))
    return tuple(calls)


def script_reply(chat: ChatRequest) -> Reply:
    messages = chat.messages
    if messages[-1].get("role") == "tool":
        return Reply("tool results: " + tool_results(messages))
    text = last_user_text(messages)
    if chat.tool_choice != "none":
        earlier = sum(
            len(m.get("tool_calls") or []) for m in messages if m.get("role") == "assistant"
        )
        calls = call_directives(text, chat.tools, first_id=earlier + 1)
        if calls:
            return Reply(None, calls)
    if "#system" in text:
        systems = [text_of(m.get("content")) for m in messages if m.get("role") == "system"]
        return Reply("\n".join(systems))
    return Reply("echo: " + text)


# --- writing the answer ---------------------------------------------------------------------


def usage(chat: ChatRequest, reply: Reply) -> Json:
    """Token counts approximated by whitespace-separated words."""
    prompt = sum(len(text_of(m.get("content")).split()) for m in chat.messages)
    said = [reply.content or "", *(f"{c.name} {c.arguments}" for c in reply.tool_calls)]
    completion = sum(len(s.split()) for s in said)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion_body(chat: ChatRequest, reply: Reply, completion_id: str) -> Json:
    message: Json = {"role": "assistant", "content": reply.content, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in reply.tool_calls
        ]
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": reply.finish_reason,
    }
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": chat.model,
        "choices": [choice],
        "usage": usage(chat, reply),
    }


def word_pieces(text: str) -> list[str]:
    """One piece per word, with the whitespace before it (as OpenAI tokens come)."""
    return [piece for piece in re.split(r"(?<=\S)(?=\s)", text) if piece]


def argument_pieces(arguments: str) -> list[str]:
    """The arguments in about three pieces, at least two: clients must concatenate them."""
    size = max(1, math.ceil(len(arguments) / 3))
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


def stream_chunks(chat: ChatRequest, reply: Reply, completion_id: str) -> Iterator[Json]:
    """The ``chat.completion.chunk`` objects of a streamed reply, in OpenAI's delta shapes."""
    created = int(time.time())

    def chunk(delta: Json, finish_reason: str | None = None) -> Json:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        head = {"id": completion_id, "object": "chat.completion.chunk", "created": created}
        return {**head, "model": chat.model, "choices": [choice]}

    yield chunk({"role": "assistant"})
    for piece in word_pieces(reply.content or ""):
        yield chunk({"content": piece})
    for index, call in enumerate(reply.tool_calls):
        opening = {"index": index, "id": call.id, "type": "function"}
        yield chunk({"tool_calls": [{**opening, "function": {"name": call.name, "arguments": ""}}]})
        for piece in argument_pieces(call.arguments):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, reply.finish_reason)
    if chat.include_usage:
        yield {**chunk({}), "choices": [], "usage": usage(chat, reply)}


def openai_error(status: int, message: str) -> web.Response:
    """An error in OpenAI's shape; the SDK raises its exception for the status from it."""
    if status == 401:
        kind, code = "invalid_request_error", "invalid_api_key"
    elif status == 429:
        kind, code = "requests", "rate_limit_exceeded"
    elif status >= 500:
        kind, code = "server_error", None
    else:
        kind, code = "invalid_request_error", None
    error = {"message": message, "type": kind, "param": None, "code": code}
    headers = {"retry-after": "0"} if status == 429 else None
    return web.json_response({"error": error}, status=status, headers=headers)


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


# --- routes ---------------------------------------------------------------------------------


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
    completion_id = f"chatcmpl-scripted{state.completions:06d}"
    if not chat.stream:
        return web.json_response(completion_body(chat, reply, completion_id))
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    for chunk in stream_chunks(chat, reply, completion_id):
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def list_models(_request: web.Request) -> web.Response:
    data = [
        {"id": m, "object": "model", "created": MODELS_CREATED, "owned_by": "samops-scripted"}
        for m in MODELS
    ]
    return web.json_response({"object": "list", "data": data})


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


# --- running it -----------------------------------------------------------------------------


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
        prog="python -m serve.scripted",
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
