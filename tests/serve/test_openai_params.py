"""Every Chat Completions parameter, sent with the ``openai`` SDK to ``/v1``: passed to the
upstream (the client's settings are defaults the request overrides), or refused with 400 in
OpenAI's shape, ``param`` naming it (``serve/openai_params.py``)."""

from __future__ import annotations

import asyncio
import inspect
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from openai.resources.chat.completions import AsyncCompletions

from serve.openai_params import PARAMETERS
from tests.conftest import MANIFESTS
from tests.fakes.upstream import REQUESTS, create_scripted_app
from tests.serve.harness import example_chat

PLAIN = """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: plain, description: No tools at all.}
spec:
  config: {defaultSystemRole: You answer., defaultTemperature: 0.3, defaultMaxTokens: 400}
"""
HELLO = [{"role": "user", "content": "hello"}]

Scenario = Callable[[openai.AsyncOpenAI, list[dict[str, Any]], str], Awaitable[Any]]


def _served(tmp_path: Path, scenario: Scenario) -> Any:
    folder = Path(shutil.copytree(MANIFESTS, tmp_path / "manifests"))
    (folder / "clients/plain.yaml").write_text(PLAIN)
    upstream = create_scripted_app(record=True)

    async def run() -> Any:
        async with example_chat(tmp_path, upstream, folder=folder) as base:
            client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="any", max_retries=0)
            try:
                return await scenario(client, upstream[REQUESTS], base)
            finally:
                await client.close()

    return asyncio.run(run())


def test_parameters_reach_the_upstream_over_the_clients_settings(tmp_path: Path) -> None:
    async def scenario(client: Any, sent: list[dict[str, Any]], _: str) -> Any:
        answer = await client.chat.completions.create(
            model="plain",
            messages=HELLO,
            temperature=1.5,
            top_p=0.9,
            max_completion_tokens=100,
            stop=["\n\n"],
            seed=7,
            frequency_penalty=0.5,
            presence_penalty=-0.5,
            logit_bias={"50256": -100},
            response_format={"type": "json_object"},
            user="user-42",
            metadata={"team": "support"},
            service_tier="auto",
            n=2,
        )
        return answer, sent[-1]

    answer, body = _served(tmp_path, scenario)
    assert len(answer.choices) == 2 and answer.model == "plain"
    assert body["temperature"] == 1.5 and "max_tokens" not in body
    assert {k: body[k] for k in ("top_p", "max_completion_tokens", "stop", "seed", "n")} == {
        "top_p": 0.9,
        "max_completion_tokens": 100,
        "stop": ["\n\n"],
        "seed": 7,
        "n": 2,
    }
    assert body["response_format"] == {"type": "json_object"}
    assert body["logit_bias"] == {"50256": -100} and body["user"] == "user-42"
    assert body["metadata"] == {"team": "support"} and body["service_tier"] == "auto"
    assert body["frequency_penalty"] == 0.5 and body["presence_penalty"] == -0.5


def test_tool_choice_goes_with_tools_only(tmp_path: Path) -> None:
    async def scenario(client: Any, sent: list[dict[str, Any]], _: str) -> Any:
        await client.chat.completions.create(
            model="support",
            messages=[{"role": "user", "content": 'call:calculator{"expression": "2+2"}'}],
            tool_choice="auto",
            parallel_tool_calls=False,
        )
        await client.chat.completions.create(
            model="plain",
            messages=HELLO,
            tool_choice="none",
            parallel_tool_calls=False,
        )
        return sent[-3:]

    first_round, second_round, plain = _served(tmp_path, scenario)
    for body in (first_round, second_round):  # the support client offers its tools
        assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is False
        assert "tools" in body
    # A client with no tools offers none, and OpenAI refuses tool_choice without tools.
    assert {"tools", "tool_choice", "parallel_tool_calls"} & set(plain) == set()


@pytest.mark.parametrize(
    ("extra", "param", "message"),
    [
        ({"temperature": "hot"}, "temperature", "Invalid value for 'temperature'"),
        ({"top_p": 3}, "top_p", "Invalid value for 'top_p'"),
        ({"n": 9}, "n", "Invalid value for 'n'"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "Invalid value for 'stop'"),
        ({"response_format": {"type": "yaml"}}, "response_format.type", "Invalid value"),
        ({"tool_choice": "sometimes"}, "tool_choice", "Invalid value for 'tool_choice'"),
        ({"bogus": 1}, "bogus", "Unrecognized request argument supplied: bogus"),
        ({"functions": []}, "functions", "'functions' is deprecated by OpenAI"),
        ({"max_tokens": 401}, "max_tokens", "above this client's limit of 400"),
    ],
)
def test_a_refused_parameter_is_a_400_naming_it(
    tmp_path: Path, extra: dict[str, Any], param: str, message: str
) -> None:
    async def scenario(client: Any, sent: list[dict[str, Any]], _: str) -> Any:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model="plain",
                messages=HELLO,
                extra_body=extra,
            )
        return refused.value, len(sent)

    error, calls = _served(tmp_path, scenario)
    assert error.status_code == 400 and calls == 0
    assert isinstance(error.body, dict)
    assert error.body["param"] == param and message in error.body["message"]


def test_n_is_refused_for_a_client_with_tools(tmp_path: Path) -> None:
    async def scenario(client: Any, _sent: Any, _: str) -> Any:
        with pytest.raises(openai.BadRequestError, match="one conversation") as refused:
            await client.chat.completions.create(model="support", messages=HELLO, n=2)
        return refused.value

    assert _served(tmp_path, scenario).body["param"] == "n"


def test_a_stream_carries_usage_only_when_asked(tmp_path: Path) -> None:
    async def scenario(client: Any, _sent: Any, _: str) -> Any:
        runs = []
        for options in ({"include_usage": True}, None):
            stream = await client.chat.completions.create(
                model="plain",
                messages=HELLO,
                stream=True,
                **({"stream_options": options} if options else {}),
            )
            runs.append([chunk async for chunk in stream])
        return runs

    with_usage, without = _served(tmp_path, scenario)
    assert with_usage[-1].choices == [] and with_usage[-1].usage is not None
    assert with_usage[-1].usage.total_tokens > 0
    assert all(chunk.usage is None for chunk in without)
    text = "".join(c.choices[0].delta.content or "" for c in with_usage if c.choices)
    assert text == "echo: hello"


def test_models_are_retrieved_and_other_v1_paths_answer_openais_404(tmp_path: Path) -> None:
    async def scenario(client: Any, _sent: Any, base: str) -> Any:
        model = await client.models.retrieve("plain")
        with pytest.raises(openai.NotFoundError, match="does not exist"):
            await client.models.retrieve("nosuch")
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("stackademy_advisor")  # needs its key
        async with aiohttp.ClientSession() as http, http.post(f"{base}/v1/embeddings") as r:
            return model, r.status, await r.json()

    model, status, body = _served(tmp_path, scenario)
    assert (model.id, model.object, model.owned_by) == ("plain", "model", "samops")
    assert status == 404
    assert body == {
        "error": {
            "message": "Invalid URL (POST /v1/embeddings)",
            "type": "not_found_error",
            "param": None,
            "code": "unknown_url",
        }
    }


def test_every_parameter_of_the_sdk_is_known_here() -> None:
    """New SDK versions' parameters are known at once: the list is the SDK's own."""
    signature = inspect.signature(AsyncCompletions.create)
    sdk = set(signature.parameters) - {"self", "extra_headers", "extra_query", "extra_body"}
    assert sdk - {"timeout", "stream"} == set(PARAMETERS)
