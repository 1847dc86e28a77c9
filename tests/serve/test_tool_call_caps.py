"""Tool calls of one round are capped in number and in concurrency (issue 12, item 16: one
prompt made the model request 150 tool calls, run as 150 concurrent requests to the API)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from serve.settings import DEFAULT_MAX_CONCURRENT_TOOL_CALLS, DEFAULT_MAX_TOOL_CALLS_PER_ROUND
from tests.conftest import MANIFESTS
from tests.serve.harness import example_chat, loopback

CALLS = 150


def greedy_upstream() -> web.Application:
    """Asks for 150 calls of the enrolment tool, then answers plainly once it has results."""

    async def answer(request: web.Request) -> web.Response:
        body = await request.json()
        if body["messages"][-1]["role"] == "tool":
            message: dict[str, Any] = {"role": "assistant", "content": "done"}
        else:
            message = {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": f"c{n}",
                        "type": "function",
                        "function": {
                            "name": "stackademy_enrolment",
                            "arguments": json.dumps({"course_code": f"CS{n}"}),
                        },
                    }
                    for n in range(CALLS)
                ],
            }
        return web.json_response(
            {"id": "x", "object": "chat.completion", "choices": [{"message": message}]}
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    return app


def counting_api(seen: dict[str, int]) -> web.Application:
    async def seats(_request: web.Request) -> web.Response:
        seen["now"] += 1
        seen["peak"] = max(seen["peak"], seen["now"])
        seen["total"] += 1
        await asyncio.sleep(0.02)
        seen["now"] -= 1
        return web.json_response({"seats_left": 3})

    app = web.Application()
    app.router.add_get("/demo/stackademy/courses/{code}/seats/", seats)
    return app


def test_a_round_runs_at_most_the_cap_and_few_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACKADEMY_API_TOKEN", "t")
    monkeypatch.setenv("SAMOPS_SECRETS_ENV", "STACKADEMY_API_TOKEN")
    seen = {"now": 0, "peak": 0, "total": 0}

    async def scenario() -> dict[str, Any]:
        async with loopback(counting_api(seen)) as api:
            folder = Path(shutil.copytree(MANIFESTS, tmp_path / "manifests"))
            connection = folder / "connections/stackademy-api.yaml"
            connection.write_text(connection.read_text().replace("http://127.0.0.1:8080", api))
            async with (
                example_chat(tmp_path, greedy_upstream(), folder=folder) as base,
                aiohttp.ClientSession() as http,
            ):
                body = {"messages": [{"role": "user", "content": "how many seats?"}]}
                headers = {"Authorization": "Bearer " + _demo_key()}
                url = f"{base}/api/v1/llm-clients/stackademy_advisor/prompt/"
                async with http.post(url, json=body, headers=headers) as response:
                    assert response.status == 200, await response.text()
                    return dict(await response.json())

    answer = asyncio.run(scenario())
    calls = answer["data"]["tool_calls_made"]
    assert len(calls) == CALLS  # every call is answered, so the model knows what happened
    assert sum(c["error"] is None for c in calls) == DEFAULT_MAX_TOOL_CALLS_PER_ROUND
    assert seen["total"] == DEFAULT_MAX_TOOL_CALLS_PER_ROUND
    assert seen["peak"] <= DEFAULT_MAX_CONCURRENT_TOOL_CALLS
    assert calls[-1]["error"].startswith("not run: at most 16 tool calls run in one round")


def _demo_key() -> str:
    import re

    found = re.search(r"`(samops_[^`]+)`", (MANIFESTS / "README.md").read_text())
    assert found is not None
    return found[1]
