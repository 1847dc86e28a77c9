"""The scripted OpenAI-compatible upstream, driven by the real ``openai`` SDK over real HTTP."""

from __future__ import annotations

import asyncio
import json
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from openai.types.chat import (
    ChatCompletionMessage,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)

from tests.conftest import PROJECT_ROOT
from tests.fakes.upstream import REQUESTS, create_scripted_app, serve_in_thread

MODEL = "gpt-4o-mini"
TOOLS: list[ChatCompletionToolParam] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
]
Upstream = tuple[web.Application, str]  # the app, and the base URL to give the SDK


def user(text: str) -> ChatCompletionMessageParam:
    return {"role": "user", "content": text}


def system(text: str) -> ChatCompletionMessageParam:
    return {"role": "system", "content": text}


def function_calls(message: ChatCompletionMessage) -> list[ChatCompletionMessageFunctionToolCall]:
    calls = message.tool_calls or []
    assert all(isinstance(c, ChatCompletionMessageFunctionToolCall) for c in calls)
    return [c for c in calls if isinstance(c, ChatCompletionMessageFunctionToolCall)]


@contextmanager
def upstream(**settings: Any) -> Iterator[Upstream]:
    app = create_scripted_app(**{"record": True, **settings})
    with serve_in_thread(app) as base_url:
        yield app, base_url


def sync_client(base_url: str, api_key: str = "x") -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)


def async_client(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)


@pytest.fixture
def scripted() -> Iterator[Upstream]:
    with upstream() as running:
        yield running


@pytest.fixture
def client(scripted: Upstream) -> Iterator[openai.OpenAI]:
    with sync_client(scripted[1]) as client:
        yield client


def http(method: str, url: str, body: object = None) -> tuple[int, str, bytes]:
    """Status, content type and raw body of one plain HTTP request."""

    async def send() -> tuple[int, str, bytes]:
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, url, json=body) as response,
        ):
            return response.status, response.content_type, await response.read()

    return asyncio.run(send())


@pytest.mark.parametrize(
    ("messages", "answer"),
    [
        pytest.param([user("hello there")], "echo: hello there", id="echo"),
        pytest.param(
            [{"role": "user", "content": [{"type": "text", "text": "in parts"}]}],
            "echo: in parts",
            id="echo-content-parts",
        ),
        pytest.param(
            [user("first"), {"role": "assistant", "content": "echo: first"}, user("second")],
            "echo: second",
            id="echo-last-user-message",
        ),
        pytest.param(
            [system("Be brief."), system("Cite sources."), user("which prompt? #system")],
            "Be brief.\nCite sources.",
            id="system-prompt",
        ),
        pytest.param([user("call:get_time")], "echo: call:get_time", id="call-without-tools"),
    ],
)
def test_reply_follows_the_last_user_message(
    client: openai.OpenAI, messages: list[ChatCompletionMessageParam], answer: str
) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=messages)
    assert completion.choices[0].message.content == answer
    assert completion.choices[0].finish_reason == "stop"


def test_completion_has_openai_shape_and_word_usage(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4.1-mini", messages=[user("a b c")])
    assert completion.id.startswith("chatcmpl-")
    assert (completion.object, completion.model) == ("chat.completion", "gpt-4.1-mini")
    assert completion.choices[0].message.role == "assistant"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 4)
    assert completion.usage.total_tokens == 7


@pytest.mark.parametrize(
    ("text", "calls"),
    [
        pytest.param('call:get_weather{"city": "Paris"}', [("get_weather", {"city": "Paris"})]),
        pytest.param(
            'call:get_weather{"at": {"city": "Oslo", "tags": {}}} please',
            [("get_weather", {"at": {"city": "Oslo", "tags": {}}})],
            id="nested-braces",
        ),
        pytest.param("call:get_time", [("get_time", {})], id="no-json-means-empty"),
        pytest.param(
            'call:get_time and call:get_weather{"city": "Rome"}',
            [("get_time", {}), ("get_weather", {"city": "Rome"})],
            id="two-calls",
        ),
        pytest.param(
            "call:drop_tables{} call:get_time", [("get_time", {})], id="tool-not-offered-ignored"
        ),
    ],
)
def test_call_directive_answers_tool_calls(
    client: openai.OpenAI, text: str, calls: list[tuple[str, object]]
) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=[user(text)], tools=TOOLS)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    made = function_calls(choice.message)
    assert [(c.function.name, json.loads(c.function.arguments)) for c in made] == calls
    assert [c.id for c in made] == [f"call_{n}" for n in range(1, len(calls) + 1)]


def test_tool_results_are_answered_as_text(client: openai.OpenAI) -> None:
    question = user('call:get_weather{"city": "Paris"} call:get_time')
    first = client.chat.completions.create(model=MODEL, messages=[question], tools=TOOLS)
    calls = function_calls(first.choices[0].message)
    messages: list[ChatCompletionMessageParam] = [
        question,
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": c.function.arguments},
                }
                for c in calls
            ],
        },
        {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "noon"},
    ]
    second = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    assert second.choices[0].message.content == "tool results: call_1=sunny; call_2=noon"
    assert second.choices[0].finish_reason == "stop"


def test_streamed_text_comes_word_by_word_then_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[user("one two three")],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert pieces == ["echo:", " one", " two", " three"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


def test_raw_stream_is_server_sent_events_ending_with_done(scripted: Upstream) -> None:
    body = {"model": MODEL, "messages": [user("hi")], "stream": True}
    status, content_type, raw = http("POST", f"{scripted[1]}/chat/completions", body)
    assert (status, content_type) == (200, "text/event-stream")
    events = raw.decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}


@dataclass
class Assembled:
    id: str = ""
    name: str = ""
    pieces: list[str] = field(default_factory=list)


def test_streamed_tool_calls_reassemble_by_index(scripted: Upstream) -> None:
    text = 'call:get_weather{"at": {"city": "Oslo"}} call:get_time'

    async def collect() -> tuple[dict[int, Assembled], list[str | None]]:
        calls: dict[int, Assembled] = {}
        finishes: list[str | None] = []
        async with async_client(scripted[1]) as client:
            stream = await client.chat.completions.create(
                model=MODEL, messages=[user(text)], tools=TOOLS, stream=True
            )
            async for chunk in stream:
                finishes += [choice.finish_reason for choice in chunk.choices]
                for delta in chunk.choices[0].delta.tool_calls or []:
                    call = calls.setdefault(delta.index, Assembled())
                    call.id += delta.id or ""
                    call.name += (delta.function and delta.function.name) or ""
                    call.pieces += [(delta.function and delta.function.arguments) or ""]
        return calls, finishes

    calls, finishes = asyncio.run(collect())
    assert [(c.id, c.name, json.loads("".join(c.pieces))) for c in calls.values()] == [
        ("call_1", "get_weather", {"at": {"city": "Oslo"}}),
        ("call_2", "get_time", {}),
    ]
    assert all(len([p for p in c.pieces if p]) >= 2 for c in calls.values())
    assert finishes[-1] == "tool_calls"


def test_sdk_stream_helper_parses_streamed_tool_arguments(client: openai.OpenAI) -> None:
    strict: ChatCompletionToolParam = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object"}, "strict": True},
    }
    with client.chat.completions.stream(
        model=MODEL, messages=[user('call:get_weather{"city": "Paris"}')], tools=[strict]
    ) as stream:
        final = stream.get_final_completion()
    call = (final.choices[0].message.tool_calls or [])[0]
    assert (call.function.name, call.function.parsed_arguments) == (
        "get_weather",
        {"city": "Paris"},
    )


@pytest.mark.parametrize(
    ("status", "error", "retry_after"),
    [
        pytest.param(400, openai.BadRequestError, None, id="400"),
        pytest.param(404, openai.NotFoundError, None, id="404"),
        pytest.param(429, openai.RateLimitError, "0", id="429"),
        pytest.param(500, openai.InternalServerError, None, id="500"),
        pytest.param(503, openai.InternalServerError, None, id="503"),
    ],
)
def test_status_directive_raises_the_sdk_error(
    client: openai.OpenAI, status: int, error: type[openai.APIStatusError], retry_after: str | None
) -> None:
    with pytest.raises(error) as caught:
        client.chat.completions.create(model=MODEL, messages=[user(f"fail #status={status}")])
    assert caught.value.status_code == status
    assert caught.value.response.headers.get("retry-after") == retry_after
    assert isinstance(caught.value.body, dict)
    assert sorted(caught.value.body) == ["code", "message", "param", "type"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("#status=200", "use an error status from 400 to 599", id="status-not-error"),
        pytest.param('call:get_time{"open": ', "its arguments are not valid JSON", id="bad-json"),
    ],
)
def test_unscriptable_request_is_refused_with_a_sentence(
    client: openai.OpenAI, text: str, message: str
) -> None:
    with pytest.raises(openai.BadRequestError, match=message):
        client.chat.completions.create(model=MODEL, messages=[user(text)], tools=TOOLS)


def test_flaky_fails_the_first_identical_requests_then_answers(client: openai.OpenAI) -> None:
    messages = [user("unsteady #flaky=2")]
    for _ in range(2):
        with pytest.raises(openai.InternalServerError, match="scripted failure"):
            client.chat.completions.create(model=MODEL, messages=messages)
    answer = client.chat.completions.create(model=MODEL, messages=messages)
    assert answer.choices[0].message.content == "echo: unsteady #flaky=2"


@pytest.mark.parametrize(
    ("latency_ms", "text", "seconds"),
    [
        pytest.param(0, "slow #delay=200", 0.2, id="delay-directive"),
        pytest.param(200, "plain", 0.2, id="latency"),
        pytest.param(100, "both #delay=150", 0.25, id="latency-plus-delay"),
    ],
)
def test_delay_and_latency_hold_the_answer_back(
    latency_ms: float, text: str, seconds: float
) -> None:
    async def timed(base_url: str) -> float:
        async with async_client(base_url) as client:
            started = time.monotonic()
            await client.chat.completions.create(model=MODEL, messages=[user(text)])
            return time.monotonic() - started

    with upstream(latency_ms=latency_ms) as (_app, base_url):
        assert asyncio.run(timed(base_url)) >= seconds


def test_api_key_is_required_when_set() -> None:
    with upstream(api_key="sk-right") as (_app, base_url):
        with (
            sync_client(base_url, "sk-wrong") as wrong,
            pytest.raises(openai.AuthenticationError) as caught,
        ):
            wrong.chat.completions.create(model=MODEL, messages=[user("hi")])
        assert "sk-right" not in str(caught.value.body)
        with sync_client(base_url, "sk-right") as right:
            answer = right.chat.completions.create(model=MODEL, messages=[user("hi")])
    assert answer.choices[0].message.content == "echo: hi"


def test_requests_are_recorded_and_cleared(scripted: Upstream, client: openai.OpenAI) -> None:
    app, base_url = scripted
    client.chat.completions.create(
        model=MODEL, messages=[user("remember me")], temperature=0.5, max_tokens=7
    )
    assert app[REQUESTS] == [
        {"model": MODEL, "messages": [user("remember me")], "temperature": 0.5, "max_tokens": 7}
    ]
    recorded = f"{base_url.removesuffix('/v1')}/_scripted/requests"
    status, _type, body = http("GET", recorded)
    assert (status, json.loads(body)) == (200, app[REQUESTS])
    assert http("DELETE", recorded)[0] == 204
    assert app[REQUESTS] == []


def test_models_are_listed(client: openai.OpenAI) -> None:
    models = list(client.models.list())
    assert "gpt-4o-mini" in [m.id for m in models]
    assert {(m.object, m.owned_by) for m in models} == {("model", "samops-scripted")}


def test_cli_prints_the_base_url_and_serves_other_processes() -> None:
    command = [
        *(sys.executable, "-m", "tests.fakes.upstream"),
        *("--port", "0", "--api-key", "k", "--record"),
    ]
    with subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            assert select.select([process.stdout], [], [], 10)[0], "no URL printed within 10 s"
            base_url = process.stdout.readline().strip()
            assert base_url.startswith("http://127.0.0.1:")
            with sync_client(base_url, "k") as client:
                client.chat.completions.create(model=MODEL, messages=[user("across processes")])
            recorded = f"{base_url.removesuffix('/v1')}/_scripted/requests"
            _status, _type, body = http("GET", recorded)
            assert [r["messages"] for r in json.loads(body)] == [[user("across processes")]]
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_the_demo_upstream_keeps_nothing_and_shows_nothing() -> None:
    # Issue 12, item 18: the offline demo's upstream kept every request body (RSS grew) and
    # served them all, unauthenticated, at /_scripted/requests.
    app = create_scripted_app()
    with serve_in_thread(app) as base_url, sync_client(base_url, "any") as client:
        client.chat.completions.create(model=MODEL, messages=[user("private words")])
        status, _type, _body = http("GET", f"{base_url.removesuffix('/v1')}/_scripted/requests")
    assert status == 404
    assert app[REQUESTS] == []
