"""The API tool against a real HTTP server on loopback: arguments stay single path segments
under the connection's base URL, and answers are read whole up to the cap (issue 12, items 3
and 4)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from reconciler.sam.kinds import ApiConnectionConfig, ApiData, Parameter
from serve.tools.errors import ToolError
from serve.tools.plugins import API_RESPONSE_MAX_BYTES, ApiExecutor

Seen = list[str]


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


def api_data(endpoint: str, names: list[str]) -> ApiData:
    """Constructed without validation: these endpoints are ones a manifest could not carry,
    to show that the executor confines them at run time too."""
    return ApiData.model_construct(
        endpoint=endpoint,
        parameters=[Parameter(name=n, type="string", required=True) for n in names],
    )


async def call(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    endpoint: str,
    arguments: dict[str, Any],
) -> tuple[str | ToolError, Seen]:
    """Run the tool once against ``handler`` (every path), return its result and the raw
    paths the server saw (with the connection's token, always checked)."""
    seen: Seen = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append(request.raw_path)
        assert request.headers["Authorization"] == "Bearer token-1"
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner, port = await _serve(app)
    try:
        async with aiohttp.ClientSession() as http:
            tool = ApiExecutor(
                api_data(endpoint, list(arguments)),
                ApiConnectionConfig.model_construct(
                    base_url=f"http://127.0.0.1:{port}/api/base/", timeout=5, auth_method="token"
                ),
                "token-1",
                http,
            )
            try:
                return await tool(arguments), seen
            except ToolError as exc:
                return exc, seen
    finally:
        await runner.cleanup()


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"path": request.raw_path})


@pytest.mark.parametrize(
    ("endpoint", "arguments"),
    [
        pytest.param("/{seg}/", {"seg": ".."}, id="dot-dot"),
        pytest.param("/{seg}/", {"seg": "."}, id="dot"),
        pytest.param("/{a}/{b}/", {"a": "..", "b": ".."}, id="two-dot-dots"),
        pytest.param("/{seg}/", {"seg": "%2e%2e"}, id="encoded-dot-dot"),
        pytest.param("/{seg}/", {"seg": "%2E%2e"}, id="encoded-dot-dot-mixed-case"),
        pytest.param("/x/{seg}", {"seg": ".."}, id="last-segment"),
        pytest.param("/{seg}/", {"seg": ""}, id="empty"),
    ],
)
def test_a_path_argument_cannot_be_a_dot_segment(endpoint: str, arguments: dict[str, str]) -> None:
    result, seen = asyncio.run(call(ok, endpoint, arguments))
    assert isinstance(result, ToolError), result
    assert "one path segment" in str(result)
    assert seen == []  # refused before any request: the token went nowhere


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("CS101", "/api/base/courses/CS101/"),
        ("../../admin", "/api/base/courses/..%2F..%2Fadmin/"),
        ("a b?c#d", "/api/base/courses/a%20b%3Fc%23d/"),
        ("..x", "/api/base/courses/..x/"),
        ("%2e%2e/x", "/api/base/courses/%252e%252e%2Fx/"),
    ],
)
def test_each_argument_is_exactly_one_encoded_segment(value: str, sent: str) -> None:
    result, seen = asyncio.run(call(ok, "/courses/{code}/", {"code": value}))
    assert not isinstance(result, ToolError), result
    assert seen == [sent]


async def in_parts(request: web.Request) -> web.StreamResponse:
    """A JSON answer of about 200 KB, written in four parts with pauses between them."""
    body = json.dumps({"rows": ["x" * 100] * 2000}).encode()
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    quarter = len(body) // 4 + 1
    for start in range(0, len(body), quarter):
        await response.write(body[start : start + quarter])
        await asyncio.sleep(0.05)
    await response.write_eof()
    return response


async def oversized(request: web.Request) -> web.StreamResponse:
    """3 MiB, streamed: over the 1 MiB cap."""
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    for _ in range(48):
        await response.write(b"y" * 65536)
    await response.write_eof()
    return response


def test_an_answer_written_in_parts_is_read_whole() -> None:
    result, _ = asyncio.run(call(in_parts, "/rows/", {}))
    assert isinstance(result, str), result
    assert len(json.loads(result)["body"]["rows"]) == 2000


def test_an_answer_over_the_cap_is_a_tool_error_that_says_so() -> None:
    result, _ = asyncio.run(call(oversized, "/big/", {}))
    assert isinstance(result, ToolError)
    assert str(result) == f"the API's answer is over {API_RESPONSE_MAX_BYTES:,} bytes"


async def echo_headers(request: web.Request) -> web.Response:
    """An API that echoes what it was sent, its Authorization header included."""
    return web.json_response({"headers": dict(request.headers), "note": "token-1 again"})


def test_the_connections_secret_never_comes_back_in_a_result() -> None:
    # Issue 12, item 17: an API echoing its Authorization header handed the connection's
    # token to the model, the caller and the database.
    result, _ = asyncio.run(call(echo_headers, "/echo/", {}))
    assert isinstance(result, str), result
    assert "token-1" not in result
    assert json.loads(result)["body"]["headers"]["Authorization"] == "Bearer [redacted]"
