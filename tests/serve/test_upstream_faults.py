"""Upstream faults, as the soak's upstream drill provokes them, but fast: the chat routes in
process on 127.0.0.1 with short provider timeouts, in front of the scripted upstream.

A failing upstream is a 502 or 504 with samops' JSON error (OpenAI's shape on ``/v1``,
``{"error": {"code", "message"}}`` on Smarter's route), never a 200 with an error inside;
retries absorb short failures; a slow call holds up no other request; and when a stopped
upstream starts again, the next request is answered.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from reconciler.apply import apply_revision
from reconciler.source import DirectorySource, validate_source
from reconciler.store.db import open_database
from serve.sessions import SessionStore
from serve.settings import ChatSettings
from tests.conftest import MANIFESTS
from tests.fakes.upstream import create_scripted_app
from tests.serve.harness import chat_routes


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: dict[str, Any]
    seconds: float
    generation: str | None


class Upstream:
    """The scripted upstream on a fixed loopback port; it can be stopped and started again."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        self.runner = web.AppRunner(create_scripted_app(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


class Server:
    def __init__(self, base: str, http: aiohttp.ClientSession, upstream: Upstream) -> None:
        self.base, self.http, self.upstream = base, http, upstream

    async def ask(self, text: str, *, smarter: bool = False) -> Reply:
        messages = [{"role": "user", "content": text}]
        body: dict[str, Any]
        if smarter:
            url, body = f"{self.base}/api/v1/llm-clients/support/prompt/", {"messages": messages}
        else:
            url = f"{self.base}/v1/chat/completions"
            body = {"model": "support", "messages": messages}
        started = time.perf_counter()
        async with self.http.post(url, json=body) as response:
            document = await response.json()
            generation = response.headers.get("x-samops-generation")
            return Reply(response.status, document, time.perf_counter() - started, generation)


@asynccontextmanager
async def chat_server(
    tmp_path: Path, *, timeout: float = 5.0, retries: int = 0, deadline: float = 30.0
) -> AsyncIterator[Server]:
    """The server's chat routes over the applied example manifests (SQLite); the built-in
    ``openai`` provider points at a scripted upstream."""
    engine = open_database(f"sqlite:///{tmp_path / 'samops.sqlite3'}")
    folder = shutil.copytree(MANIFESTS, tmp_path / "manifests")
    apply_revision(engine, validate_source(DirectorySource(Path(folder))))
    upstream = Upstream()
    await upstream.start()
    sessions = SessionStore(engine)
    sessions.start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            chat_routes(
                engine,
                http,
                sessions,
                upstream_url=f"http://127.0.0.1:{upstream.port}/v1",
                data_dir=tmp_path,
                settings=ChatSettings(deadline_seconds=deadline),
                timeout=timeout,
                retries=retries,
            ) as base,
        ):
            yield Server(base, http, upstream)
    finally:
        await sessions.close()
        await upstream.stop()
        engine.dispose()


def assert_gateway_error(reply: Reply, status: int, code: str, *, smarter: bool) -> None:
    """A 502/504 in the route's error shape, nothing of a completion, and the generation."""
    assert (reply.status, reply.body["error"]["code"]) == (status, code), reply.body
    assert isinstance(reply.body["error"]["message"], str)
    # no `choices`, no `data`: the error, in Smarter's envelope on its routes
    assert set(reply.body) == ({"error", "api", "metadata"} if smarter else {"error"})
    if smarter:
        assert reply.body["error"]["status"] == status
    else:
        assert set(reply.body["error"]) == {"message", "type", "param", "code"}
    assert reply.generation == "1"


@pytest.mark.parametrize("smarter", [False, True], ids=["openai-route", "smarter-route"])
@pytest.mark.parametrize(
    ("text", "status", "code"),
    [
        pytest.param("#status=500", 502, "upstream_error", id="500"),
        pytest.param("#status=503", 502, "upstream_error", id="503"),
        pytest.param("#status=429", 502, "upstream_error", id="429"),
        pytest.param("#status=401", 502, "upstream_refused_credentials", id="401"),
        pytest.param("#delay=1000", 504, "upstream_timeout", id="slow"),
        pytest.param("#malformed", 502, "upstream_bad_answer", id="not-a-completion"),
    ],
)
def test_failing_upstream_is_a_gateway_error_never_a_200(
    tmp_path: Path, text: str, status: int, code: str, smarter: bool
) -> None:
    async def scenario() -> None:
        async with chat_server(tmp_path, timeout=0.3) as server:
            assert_gateway_error(
                await server.ask(text, smarter=smarter), status, code, smarter=smarter
            )
            assert (await server.ask("after", smarter=smarter)).status == 200

    asyncio.run(scenario())


def test_turn_deadline_is_a_504(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with chat_server(tmp_path, timeout=5, deadline=0.2) as server:
            reply = await server.ask("#delay=1000")
            assert_gateway_error(reply, 504, "deadline_exceeded", smarter=False)
            assert reply.seconds < 0.8

    asyncio.run(scenario())


def test_short_failures_are_absorbed_by_retries_and_longer_ones_recover(tmp_path: Path) -> None:
    """``#flaky=N`` fails the first N identical calls: one retry absorbs one failure; three
    failures outlast it (502), and the same request succeeds once the upstream does."""

    async def scenario() -> None:
        async with chat_server(tmp_path, retries=1) as server:
            absorbed = await server.ask("wobbly #flaky=1")
            assert absorbed.status == 200
            assert absorbed.body["choices"][0]["message"]["content"] == "echo: wobbly #flaky=1"
            failed = await server.ask("broken #flaky=3")
            assert_gateway_error(failed, 502, "upstream_error", smarter=False)
            recovered = await server.ask("broken #flaky=3")  # third failure, then an answer
            assert recovered.status == 200

    asyncio.run(scenario())


def test_slow_upstream_call_holds_up_no_other_request(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with chat_server(tmp_path) as server:
            slow = asyncio.create_task(server.ask("slowly #delay=800"))
            await asyncio.sleep(0.05)
            quick = [await server.ask(f"quick {n}") for n in range(5)]
            assert not slow.done()
            assert all(r.status == 200 and r.seconds < 0.4 for r in quick), quick
            assert (await slow).status == 200

    asyncio.run(scenario())


def test_stopped_upstream_fails_fast_and_the_next_request_after_its_return_answers(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with chat_server(tmp_path, timeout=5) as server:
            await server.upstream.stop()
            down = await server.ask("while down")
            assert down.status in (502, 504), down.body
            assert down.body["error"]["code"].startswith("upstream_")
            assert down.seconds < 2  # refused at once, not the provider timeout
            await server.upstream.start()  # same port
            back = await server.ask("back")
            assert back.status == 200
            assert back.body["choices"][0]["message"]["content"] == "echo: back"

    asyncio.run(scenario())


def test_refused_connection_is_reported_as_unreachable(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with chat_server(tmp_path, timeout=5) as server:
            await server.upstream.stop()
            down = await server.ask("while down")
            await server.upstream.start()
            assert_gateway_error(down, 502, "upstream_unreachable", smarter=False)

    asyncio.run(scenario())
