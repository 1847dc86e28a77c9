"""An upstream that answers 200 with something that is not a chat completion (issue 12, item
11): every such answer is a 502 ``upstream_bad_answer`` in the route's own error shape, and a
stream always ends with an error event and ``[DONE]``; never a 500 or a cut stream."""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.serve.harness import example_chat

CALL = {"type": "function", "function": {"name": "calculator", "arguments": '{"expression": "1"}'}}


def completion(message: Any) -> bytes:
    return json.dumps(
        {"id": "x", "object": "chat.completion", "choices": [{"message": message}]}
    ).encode()


ANSWERS = {
    "tool-call-without-id": completion({"role": "assistant", "tool_calls": [CALL]}),
    "tool-calls-not-a-list": completion({"role": "assistant", "tool_calls": "nope"}),
    "function-null": completion(
        {"role": "assistant", "tool_calls": [{"id": "c", "function": None}]}
    ),
    "arguments-not-a-string": completion(
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "function": {"name": "calculator", "arguments": 7}}],
        }
    ),
    "name-not-a-string": completion(
        {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": ["x"]}}]}
    ),
}

STREAMS = {
    "not-sse": b'{"choices": [{"message": {"content": "plain json"}}]}',
    "invalid-json-mid-stream": (
        b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"hel"}}]}\n\n'
        b"data: {not json\n\n"
    ),
    "invalid-json-first": b"data: {not json\n\n",
}


def hostile_upstream(body: bytes, content_type: str) -> web.Application:
    async def answer(_request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    return app


def served(
    tmp_path: Path, body: bytes, content_type: str, *, app: web.Application | None = None
) -> AbstractAsyncContextManager[str]:
    """The chat routes over the example, in front of an upstream answering ``body``."""
    return example_chat(tmp_path, app or hostile_upstream(body, content_type))


@pytest.mark.parametrize("smarter", [False, True], ids=["openai-route", "smarter-route"])
@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_a_malformed_answer_is_a_502(tmp_path: Path, case: str, smarter: bool) -> None:
    async def scenario() -> tuple[int, dict[str, Any]]:
        async with (
            served(tmp_path, ANSWERS[case], "application/json") as base,
            aiohttp.ClientSession() as http,
        ):
            messages = [{"role": "user", "content": "compute"}]
            url, body = (
                (f"{base}/api/v1/llm-clients/support/prompt/", {"messages": messages})
                if smarter
                else (f"{base}/v1/chat/completions", {"model": "support", "messages": messages})
            )
            async with http.post(url, json=body) as response:
                return response.status, await response.json()

    status, document = asyncio.run(scenario())
    assert (status, document["error"]["code"]) == (502, "upstream_bad_answer"), document
    assert set(document) == ({"error", "api", "metadata"} if smarter else {"error"})  # no answer


@pytest.mark.parametrize("case", sorted(STREAMS))
def test_a_broken_stream_ends_with_an_error_event_and_done(tmp_path: Path, case: str) -> None:
    async def scenario() -> tuple[int, str, str]:
        async with (
            served(tmp_path, STREAMS[case], "text/event-stream") as base,
            aiohttp.ClientSession() as http,
        ):
            body = {
                "model": "support",
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            }
            async with http.post(f"{base}/v1/chat/completions", json=body) as response:
                return response.status, response.headers["Content-Type"], await response.text()

    status, kind, text = asyncio.run(scenario())
    if status == 200:  # the stream had begun: it ends with an error event, then [DONE]
        assert kind.startswith("text/event-stream")
        events = [e.removeprefix("data: ") for e in text.strip().split("\n\n")]
        assert events[-1] == "[DONE]"
        assert json.loads(events[-2])["error"]["code"] == "upstream_bad_answer"
    else:  # nothing was sent yet: an ordinary error answer
        assert status == 502
        assert json.loads(text)["error"]["code"] == "upstream_bad_answer"


def slow_stream_upstream() -> web.Application:
    """A stream of 50 content chunks, 20 ms apart: long enough for a caller to leave."""

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for n in range(50):
                chunk = {
                    "id": "x",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "m",
                    "choices": [{"index": 0, "delta": {"content": f"part{n} "}}],
                }
                await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                await asyncio.sleep(0.02)
            await response.write(b"data: [DONE]\n\n")
        except ConnectionResetError:  # samops closed the stream: its caller left (12.12)
            pass  # a real upstream's server does not log into samops' process either
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    return app


def test_a_caller_leaving_mid_stream_is_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 12, item 12: client disconnects were logged as errors with a traceback.
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        async with served(tmp_path, b"", "text/plain", app=slow_stream_upstream()) as base:
            for _ in range(5):
                async with aiohttp.ClientSession() as http:
                    body = {
                        "model": "support",
                        "stream": True,
                        "messages": [{"role": "user", "content": "hi"}],
                    }
                    async with http.post(f"{base}/v1/chat/completions", json=body) as response:
                        await response.content.readuntil(b"\n\n")  # one event, then leave
            await asyncio.sleep(1.5)  # past the upstream's whole stream: nothing may remain
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert not [t for t in tasks if "handle" in repr(t.get_coro())], tasks

    asyncio.run(scenario())
    ours = [
        r for r in caplog.records if r.name in ("samops.serve", "samops.chat", "aiohttp.server")
    ]
    loud = [r for r in ours if r.levelno >= logging.WARNING]
    assert not loud, [(r.name, r.getMessage()) for r in loud]
    assert not any(r.exc_info for r in caplog.records)
    assert any(r.getMessage() == "caller went away" for r in caplog.records)
