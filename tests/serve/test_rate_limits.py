"""Rate limits per client and per key (issue 16, item 5): requests and tokens a minute, shared
by every replica, answered 429 with Retry-After in each route family's shape. Two replicas'
chat routes on one database (SQLite and PostgreSQL), driven by the ``openai`` SDK and aiohttp."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from sqlalchemy import Engine

from reconciler.apikeys import digest_of
from reconciler.apply import apply_revision
from reconciler.source import DirectorySource, validate_source
from serve.limits import Limiter
from serve.sessions import SessionStore
from tests.conftest import rendered, validate_text
from tests.fakes.upstream import create_scripted_app
from tests.serve.harness import chat_routes, loopback

KEY = "samops_rate-test-key-not-a-secret"
NOW = dt.datetime(2026, 11, 27, 13, 45, 20, tzinfo=dt.UTC)  # 40 s before the next minute
MANIFESTS = f"""\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata:
  name: limited
  description: Three requests a minute, over every replica.
  annotations:
    - samops.dev/requests-per-minute: "3"
spec:
  config: {{provider: openai, defaultModel: gpt-4o-mini, defaultSystemRole: You answer.}}
---
apiVersion: smarter.sh/v1
kind: LLMClient
metadata:
  name: wordy
  description: Ten tokens a minute.
  annotations:
    - samops.dev/tokens-per-minute: "10"
spec:
  config: {{provider: openai, defaultModel: gpt-4o-mini, defaultSystemRole: You answer.}}
---
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {{name: first, description: One of two clients of a limited key.}}
spec:
  config: {{provider: openai, defaultModel: gpt-4o-mini, defaultSystemRole: You answer.}}
  apiKey: shared_key
---
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {{name: second, description: The other client of the limited key.}}
spec:
  config: {{provider: openai, defaultModel: gpt-4o-mini, defaultSystemRole: You answer.}}
  apiKey: shared_key
---
apiVersion: smarter.sh/v1
kind: SmarterAuthToken
metadata:
  name: shared_key
  description: Two requests a minute, whichever client it asks.
  annotations:
    - samops.dev/requests-per-minute: "2"
spec: {{config: {{isActive: true, digest: ["{digest_of(KEY)}"]}}}}
"""


@asynccontextmanager
async def replicas(engine: Engine, tmp_path: Path, count: int = 2) -> AsyncIterator[list[str]]:
    """``count`` replicas' chat routes on ``engine``, each with its own limiter (as separate
    processes have), in front of the scripted upstream; yields their base URLs."""
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "all.yaml").write_text(MANIFESTS)
    revision = validate_source(DirectorySource(folder))
    assert revision.valid, rendered(revision.diagnostics)
    await asyncio.to_thread(apply_revision, engine, revision)
    async with AsyncExitStack() as stack:
        upstream = await stack.enter_async_context(loopback(create_scripted_app()))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        bases = []
        for n in range(count):
            sessions, limiter = SessionStore(engine), Limiter(engine, clock=lambda: NOW)
            sessions.start()
            limiter.settlements.start()
            stack.push_async_callback(sessions.close)
            stack.push_async_callback(limiter.close)
            bases.append(
                await stack.enter_async_context(
                    chat_routes(
                        engine,
                        http,
                        sessions,
                        upstream_url=f"{upstream}/v1",
                        data_dir=tmp_path / f"replica-{n}",
                        timeout=5,
                        limiter=limiter,
                    )
                )
            )
        yield bases


async def ask(base: str, client: str, key: str | None = None) -> tuple[int, Any, str | None]:
    """Status, body and Retry-After of one OpenAI-route request."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": client, "messages": [{"role": "user", "content": "hello there friend"}]}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/v1/chat/completions", json=body, headers=headers) as answer,
    ):
        return answer.status, await answer.json(), answer.headers.get("Retry-After")


def test_a_clients_requests_a_minute_hold_over_every_replica(
    engine: Engine, tmp_path: Path
) -> None:
    async def scenario() -> list[tuple[int, Any, str | None]]:
        async with replicas(engine, tmp_path) as bases:
            return [await ask(bases[n % 2], "limited") for n in range(6)]

    answers = asyncio.run(scenario())

    assert [status for status, _, _ in answers] == [200, 200, 200, 429, 429, 429]
    _, body, retry = answers[3]
    assert retry == "40"  # the seconds to the next minute
    assert (body["error"]["code"], body["error"]["type"]) == ("rate_limit_exceeded", "requests")
    assert body["error"]["message"] == (
        "the client 'limited' is limited to 3 requests a minute; try again in 40 s"
    )


def test_a_keys_limit_counts_every_client_it_asks(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> list[int]:
        async with replicas(engine, tmp_path) as bases:
            order = [(bases[0], "first"), (bases[1], "second"), (bases[1], "first")]
            return [(await ask(base, client, KEY))[0] for base, client in order]

    assert asyncio.run(scenario()) == [200, 200, 429]


def test_tokens_a_minute_admit_until_the_minute_is_spent(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> list[int]:
        async with replicas(engine, tmp_path, count=1) as (base,):
            return [(await ask(base, "wordy"))[0] for _ in range(3)]

    # each turn spends 9 tokens (5 of prompt, 4 of answer): the second starts with 1 left
    assert asyncio.run(scenario()) == [200, 200, 429]


def test_the_sdks_and_smarters_routes_see_their_own_429(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> tuple[Exception, int, Any, str | None]:
        async with replicas(engine, tmp_path, count=1) as (base,):
            sdk = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)
            message: Any = [{"role": "user", "content": "hi"}]
            for _ in range(3):
                await sdk.chat.completions.create(model="limited", messages=message)
            with pytest.raises(openai.RateLimitError) as refused:
                await sdk.chat.completions.create(model="limited", messages=message)
            await sdk.close()
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{base}/api/v1/llm-clients/limited/prompt/", json={"messages": message}
                ) as answer,
            ):
                return (
                    refused.value,
                    answer.status,
                    await answer.json(),
                    answer.headers.get("Retry-After"),
                )

    error, status, body, retry = asyncio.run(scenario())

    assert "limited to 3 requests a minute" in str(error)
    assert (status, retry) == (429, "40")
    assert body["error"]["errorClass"] == "RateLimitExceeded"
    assert "limited to 3 requests a minute" in body["error"]["description"]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        pytest.param('"0"', "must be a whole number from 1 to 1,000,000,000, not '0'", id="zero"),
        pytest.param('"ten"', "must be a whole number from 1 to 1,000,000,000", id="words"),
    ],
)
def test_a_rate_that_is_not_one_is_an_error_at_its_line(value: str, says: str) -> None:
    revision = validate_text(f"""\
        apiVersion: smarter.sh/v1
        kind: LLMClient
        metadata:
          name: support
          description: A client.
          annotations:
            - samops.dev/requests-per-minute: {value}
        spec:
          config: {{provider: openai, defaultModel: gpt-4o-mini, defaultSystemRole: Help.}}
        """)

    assert not revision.valid
    assert any(
        e.startswith("m.yaml:7:7: metadata.annotations[0]: error:") and says in e
        for e in rendered(revision.diagnostics)
    ), rendered(revision.diagnostics)
