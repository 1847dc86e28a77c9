"""Usage (issue 16, item 1): every chat turn leaves a row of what it cost, whichever route and
however it was answered. Real chat routes on 127.0.0.1 in front of the scripted upstream,
driven by the ``openai`` SDK and aiohttp; the rows read back from SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, select

from reconciler.apikeys import digest_of
from reconciler.apply import apply_revision
from reconciler.source import DirectorySource, validate_source
from reconciler.store import schema
from serve.chat import TokenUsage
from serve.prices import DEFAULT_PRICES, price_of
from serve.sessions import SessionStore
from serve.usage import UsageMetrics, UsageRecord, UsageRecorder
from tests.fakes.upstream import create_scripted_app
from tests.serve.harness import chat_routes, loopback
from tests.serve.outages import Outages

KEY = "samops_usage-test-key-not-a-secret"
TOOL_CALL = 'call:date_calculator{"dates": ["2026-01-01"], "operation": "weekday"}'
MANIFESTS = """\
apiVersion: smarter.sh/v1
kind: Provider
metadata:
  name: scripted
  description: The test's upstream, with its price.
  annotations:
    - samops.dev/price.scripted-echo: "2 / 4"
spec:
  provider: {{name: Scripted, base_url: "{url}"}}
---
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {{name: priced, description: A client whose model has a declared price.}}
spec:
  config:
    provider: scripted
    defaultModel: scripted-echo
    defaultSystemRole: You answer.
  functions: [datemath]
  apiKey: priced_key
---
apiVersion: smarter.sh/v1
kind: SmarterAuthToken
metadata: {{name: priced_key, description: The key of priced.}}
spec: {{config: {{isActive: true, digest: ["{digest}"]}}}}
---
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {{name: unpriced, description: A public client of a model nobody prices.}}
spec:
  config: {{provider: scripted, defaultModel: mystery-model, defaultSystemRole: You answer.}}
---
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {{name: support, description: A public client of a well-known model.}}
spec:
  config: {{provider: openai, defaultModel: gpt-4o-mini, defaultSystemRole: You help.}}
"""


@asynccontextmanager
async def served(engine: Engine, tmp_path: Path) -> AsyncIterator[tuple[str, UsageRecorder]]:
    """The manifests above applied on ``engine`` and served in front of the scripted upstream;
    yields the base URL and the usage recorder (closed, so everything written, on exit)."""
    async with loopback(create_scripted_app()) as upstream:
        folder = tmp_path / "manifests"
        folder.mkdir()
        (folder / "all.yaml").write_text(
            MANIFESTS.format(url=f"{upstream}/v1", digest=digest_of(KEY))
        )
        revision = validate_source(DirectorySource(folder))
        assert revision.valid, [d.message for d in revision.diagnostics]
        await asyncio.to_thread(apply_revision, engine, revision)
        sessions = SessionStore(engine)
        usage = UsageRecorder(engine, metrics=UsageMetrics(CollectorRegistry()))
        sessions.start()
        usage.records.start()
        try:
            async with (
                aiohttp.ClientSession() as http,
                chat_routes(
                    engine,
                    http,
                    sessions,
                    upstream_url=f"{upstream}/v1",
                    data_dir=tmp_path,
                    timeout=5,
                    usage=usage,
                ) as base,
            ):
                yield base, usage
        finally:
            await usage.records.close()
            await sessions.close()


def rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        found = connection.execute(select(schema.chat_usage).order_by(schema.chat_usage.c.id))
        return [dict(row) for row in found.mappings()]


def test_each_turn_leaves_a_row_of_its_tokens_and_cost(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> dict[str, Any]:
        async with served(engine, tmp_path) as (base, _usage):
            sdk = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)
            plain = await sdk.chat.completions.create(
                model="priced", messages=[{"role": "user", "content": "hello there friend"}]
            )
            tool = await sdk.chat.completions.create(
                model="priced",
                messages=[
                    {
                        "role": "user",
                        "content": TOOL_CALL,
                    }
                ],
            )
            chunks = [
                c
                async for c in await sdk.chat.completions.create(
                    model="unpriced",
                    messages=[{"role": "user", "content": "stream me"}],
                    stream=True,
                )
            ]
            async with aiohttp.ClientSession() as http:
                answer = await http.post(
                    f"{base}/api/v1/llm-clients/support/prompt/",
                    json={"messages": [{"role": "user", "content": "hi"}]},
                )
                smarter = await answer.json()
            await sdk.close()
            return {"plain": plain, "tool": tool, "chunks": chunks, "smarter": smarter}

    before = dt.datetime.now(dt.UTC)
    seen = asyncio.run(scenario())

    found = rows(engine)
    assert [(r["client"], r["route"], r["outcome"]) for r in found] == [
        ("priced", "openai", "ok"),
        ("priced", "openai", "ok"),
        ("unpriced", "openai", "ok"),
        ("support", "smarter", "ok"),
    ]
    plain, tool, streamed, smarter = found
    reported = seen["plain"].usage
    assert (plain["prompt_tokens"], plain["completion_tokens"], plain["total_tokens"]) == (
        reported.prompt_tokens,
        reported.completion_tokens,
        reported.total_tokens,
    )
    expected = (reported.prompt_tokens * 2 + reported.completion_tokens * 4) / Decimal(10**6)
    assert Decimal(plain["cost_usd"]) == expected  # the Provider's declared price
    assert (plain["key_name"], plain["model"], plain["upstream_calls"]) == (
        "priced_key",
        "scripted-echo",
        1,
    )
    assert tool["upstream_calls"] == 2  # the tool round and the answer, summed
    assert tool["total_tokens"] == seen["tool"].usage.total_tokens  # the caller sees the turn's
    assert not any(c.usage for c in seen["chunks"])  # the caller did not ask for usage
    assert streamed["total_tokens"] > 0 and streamed["cost_usd"] is None  # no known price
    assert streamed["key_name"] == "priced_key"  # the presented key, even to a public client
    session_key = seen["smarter"]["data"]["session_key"]
    assert smarter["session_key"] == session_key
    price = DEFAULT_PRICES["gpt-4o-mini"]
    assert Decimal(smarter["cost_usd"]) == price.cost(
        smarter["prompt_tokens"], smarter["completion_tokens"]
    )
    assert all(before <= _aware(r["at"]) <= dt.datetime.now(dt.UTC) for r in found)
    assert all(r["latency_ms"] >= 0 and r["generation"] == 1 for r in found)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("usage", "known"),
    [
        pytest.param({"prompt_tokens": 3, "completion_tokens": 4}, True, id="counts"),
        pytest.param(None, False, id="none-sent"),
        pytest.param({"prompt_tokens": -1, "completion_tokens": 4}, False, id="negative"),
        pytest.param({"prompt_tokens": "3", "completion_tokens": 4}, False, id="text"),
        pytest.param({"prompt_tokens": True, "completion_tokens": 4}, False, id="boolean"),
        pytest.param({"prompt_tokens": 10**13, "completion_tokens": 4}, False, id="absurd"),
    ],
)
def test_tokens_are_counts_or_unknown_never_guessed(usage: Any, known: bool) -> None:
    counted = TokenUsage()
    counted.add({"prompt_tokens": 1, "completion_tokens": 1})
    counted.add(usage)

    record = UsageRecord.of(
        counted,
        price_of("gpt-4o-mini", {}),
        client="c",
        route="openai",
        key_name=None,
        session_key=None,
        provider="openai",
        model="gpt-4o-mini",
        ok=True,
        seconds=0.01,
        generation=1,
    )

    assert (record.total_tokens is not None) is known
    assert (record.cost_usd is not None) is known
    if known:
        assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (4, 5, 9)


@pytest.mark.parametrize(
    ("model", "declared", "price"),
    [
        pytest.param("gpt-4o-mini", {}, "0.15 / 0.60", id="default"),
        pytest.param("gpt-4o-mini-2024-07-18", {}, "0.15 / 0.60", id="dated-snapshot"),
        pytest.param("gpt-4o-mini", {"gpt-4o-mini": "1 / 2"}, "1 / 2", id="declared-wins"),
        pytest.param("llama3.2", {}, None, id="unknown"),
    ],
)
def test_a_price_is_declared_or_default_or_unknown(
    model: str, declared: dict[str, str], price: str | None
) -> None:
    from serve.prices import Price

    found = price_of(model, {m: Price.of(t) for m, t in declared.items()})

    assert found == (Price.of(price) if price is not None else None)


def test_usage_waits_out_a_database_outage_and_loses_nothing(
    engine: Engine, tmp_path: Path, outages: Outages
) -> None:
    async def scenario() -> UsageRecorder:
        async with served(engine, tmp_path) as (base, usage):
            sdk = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)
            await sdk.chat.completions.create(
                model="priced", messages=[{"role": "user", "content": "before"}]
            )
            await until(lambda: usage.records.written == 1)
            with outages.unreachable():
                for n in range(5):  # answered while nothing can be written
                    answer = await sdk.chat.completions.create(
                        model="priced", messages=[{"role": "user", "content": f"during {n}"}]
                    )
                    assert answer.choices[0].message.content == f"echo: during {n}"
                await until(lambda: usage.records.failing)
                assert (usage.records.written, usage.records.pending) == (1, 5)
            await until(lambda: usage.records.pending == 0)
            await sdk.close()
            return usage

    usage = asyncio.run(scenario())

    assert (usage.records.written, usage.records.dropped, usage.records.lost) == (6, 0, 0)
    assert [r["client"] for r in rows(engine)] == ["priced"] * 6


async def until(condition: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_a_streamed_tool_turn_tells_the_caller_what_the_whole_turn_used(
    engine: Engine, tmp_path: Path
) -> None:
    async def scenario() -> Any:
        async with served(engine, tmp_path) as (base, _usage):
            sdk = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)
            chunks = [
                c
                async for c in await sdk.chat.completions.create(
                    model="priced",
                    messages=[{"role": "user", "content": TOOL_CALL}],
                    stream=True,
                    stream_options={"include_usage": True},
                )
            ]
            await sdk.close()
            return chunks[-1].usage

    told = asyncio.run(scenario())

    (row,) = rows(engine)
    assert row["upstream_calls"] == 2
    assert told is not None
    assert (told.prompt_tokens, told.completion_tokens, told.total_tokens) == (
        row["prompt_tokens"],
        row["completion_tokens"],
        row["total_tokens"],
    )
