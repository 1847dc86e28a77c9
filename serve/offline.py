"""The offline demo model: an OpenAI-compatible upstream for when no OpenAI key is set.

Serve stage, beside the providers. Without ``OPENAI_API_KEY``, ``samops run`` and ``samops
serve`` start this application on a free loopback port and point the built-in ``openai``
provider at it, so the example chats offline: the ``openai`` SDK talks to it unchanged
(streaming and tool calls included). It answers from the request alone and keeps nothing:

1. the last message is a tool result: ``tool results: <tool_call_id>=<content>; ...``;
2. tools are offered and the last user message says ``call:<tool>{<json object>}`` (or just
   ``call:<tool>`` for ``{}``): one tool call per directive that names an offered tool
   (none when ``tool_choice`` is ``"none"``);
3. the last user message says ``#system``: the text of the system message(s);
4. otherwise ``echo: <last user text>``.

A stream is sent as fast as it is written, unless the last user message says ``#pace=MS``:
then each piece waits that long (at most 200 ms) after the one before, as a real model's
tokens arrive (the console's tests watch an answer grow with it).

The tests' upstream (``tests/fakes/upstream.py``) builds on these pieces and adds failures on
request, latency and a record of what it was sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from serve.settings import UpstreamEnvironment

Json = dict[str, Any]
log = logging.getLogger("samops.offline")
MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "scripted-echo")
MODELS_CREATED = 1_700_000_000  # fixed, so that the model listing is the same on every run
CALL = re.compile(r"call:([A-Za-z0-9_-]+)")
PACE = re.compile(r"#pace=(\d{1,3})")
MAX_PACE_MS = 200


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
    choices: int = 1
    """``n``: how many (identical) choices a completion carries."""


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
        choices=_choices(body.get("n")),
    )


def _choices(n: object) -> int:
    if n is None:
        return 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 8:
        raise ScriptError(f"`n` must be a whole number from 1 to 8, got {n!r}")
    return n


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
        "choices": [{**choice, "index": i} for i in range(chat.choices)],
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


async def list_models(_request: web.Request) -> web.Response:
    data = [
        {"id": m, "object": "model", "created": MODELS_CREATED, "owned_by": "samops-scripted"}
        for m in MODELS
    ]
    return web.json_response({"object": "list", "data": data})


# --- the application ------------------------------------------------------------------------


async def answer(
    request: web.Request, chat: ChatRequest, reply: Reply, completion_id: str
) -> web.StreamResponse:
    """``reply`` as a chat completion, or as its stream of chunks when one was asked for."""
    if not chat.stream:
        return web.json_response(completion_body(chat, reply, completion_id))
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    paced = PACE.search(last_user_text(chat.messages))
    pace = min(int(paced.group(1)), MAX_PACE_MS) / 1000 if paced else 0.0
    for index, chunk in enumerate(stream_chunks(chat, reply, completion_id)):
        if pace and index:
            await asyncio.sleep(pace)
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


COMPLETIONS = web.AppKey("offline_completions", list[int])


async def offline_completion(request: web.Request) -> web.StreamResponse:
    try:
        chat = parse_request(await request.json())
    except ValueError:
        return openai_error(400, "the request body is not JSON: send the OpenAI chat request")
    except ScriptError as exc:
        return openai_error(400, str(exc))
    counter = request.app[COMPLETIONS]
    counter[0] += 1
    return await answer(request, chat, script_reply(chat), f"chatcmpl-offline{counter[0]:06d}")


def create_offline_app() -> web.Application:
    """The offline demo model: ``GET /v1/models`` and ``POST /v1/chat/completions``."""
    app = web.Application()
    app[COMPLETIONS] = [0]
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/chat/completions", offline_completion)
    return app


@asynccontextmanager
async def offline_upstream(
    upstream: UpstreamEnvironment, shared: str | None = None
) -> AsyncIterator[str | None]:
    """The URL of the built-in ``openai`` provider: ``OPENAI_BASE_URL`` when a key is set;
    else the offline demo model's, ``shared`` (the primary's, in a worker) or one started
    here for as long as the context lasts."""
    if not upstream.offline:
        yield upstream.base_url
        return
    if shared is not None:
        yield shared
        return
    runner = web.AppRunner(create_offline_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    log.info(
        "OPENAI_API_KEY is not set: the openai provider answers from the offline demo model",
        extra={"url": f"http://127.0.0.1:{port}/v1"},
    )
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()
