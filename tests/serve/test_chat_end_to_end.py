"""Chat through a real ``samops run``: the real ``openai`` SDK and Smarter-shaped requests
against the server, a scripted OpenAI-compatible upstream on loopback, real tools (static,
SQLite, a local HTTP API), keys, sessions, and a commit that lands while requests run."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web
from openai.types.chat import ChatCompletionToolParam

from tests.conftest import MANIFESTS, GitRepo
from tests.daemon.conftest import DaemonProcess, wait_for
from tests.fakes.upstream import REQUESTS, create_scripted_app
from tests.ports import free_port

DEMO_KEY = re.search(r"`(samops_[^`]+)`", (MANIFESTS / "README.md").read_text())[1]  # type: ignore[index]


class LoopbackServer:
    """An aiohttp application on 127.0.0.1 in a thread of its own (upstream, demo API)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = free_port()
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "the loopback server did not start"

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        runner = web.AppRunner(self.app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        self.loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def seats_api() -> tuple[web.Application, list[dict[str, Any]]]:
    """The Stackademy enrolment API the example ApiPlugin calls."""
    seen: list[dict[str, Any]] = []

    async def seats(request: web.Request) -> web.Response:
        seen.append({"path": request.raw_path, "auth": request.headers.get("Authorization")})
        return web.json_response({"course": request.match_info["code"], "seats_left": 4})

    async def anything(request: web.Request) -> web.Response:
        seen.append({"path": request.raw_path, "auth": request.headers.get("Authorization")})
        return web.json_response({"error": "not here"}, status=404)

    app = web.Application()
    app.router.add_get("/demo/stackademy/courses/{code}/seats/", seats)
    app.router.add_route("*", "/{tail:.*}", anything)
    return app, seen


@pytest.fixture
def upstream() -> Iterator[LoopbackServer]:
    server = LoopbackServer(create_scripted_app(record=True))
    yield server
    server.stop()


@pytest.fixture
def api() -> Iterator[tuple[LoopbackServer, list[dict[str, Any]]]]:
    app, seen = seats_api()
    server = LoopbackServer(app)
    yield server, seen
    server.stop()


@pytest.fixture
def chat_repo(git_repo: GitRepo, api: tuple[LoopbackServer, list[dict[str, Any]]]) -> GitRepo:
    server, _ = api
    shutil.copytree(MANIFESTS, git_repo.root / "manifests")
    connection = git_repo.root / "manifests/connections/stackademy-api.yaml"
    connection.write_text(
        connection.read_text().replace("127.0.0.1:8080", f"127.0.0.1:{server.port}")
    )
    git_repo.commit("example manifests, API on a test port")
    return git_repo


@pytest.fixture
def samops(
    chat_repo: GitRepo, upstream: LoopbackServer, tmp_path: Path, database_url: str
) -> Iterator[DaemonProcess]:
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "stackademy.sqlite3") as db:
        db.executescript((MANIFESTS / "data/stackademy.sql").read_text())
    process = DaemonProcess(
        [
            "--repo",
            str(chat_repo.root),
            "--path",
            "manifests",
            "--account-number",
            "1234-5678-9012",
            "--api-domain",
            "example.test",
        ],
        env={
            "SAMOPS_DATA_DIR": str(data),
            "SAMOPS_DATABASE_URL": database_url,
            "OPENAI_API_KEY": "upstream-key",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream.port}/v1",
            "STACKADEMY_API_TOKEN": "api-token-123",
            "SAMOPS_SECRETS_ENV": "STACKADEMY_*",
        },
        log=tmp_path / "samops.log",
    )
    process.applied(chat_repo.git("rev-parse", "HEAD"))
    wait_for(lambda: process.metric("samops_served_generation") == 1, what="generation served")
    yield process
    assert process.stop() == 0


def sdk(samops: DaemonProcess, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{samops.base}/v1", api_key=key or "none", max_retries=0)


def upstream_requests(upstream: LoopbackServer) -> list[dict[str, Any]]:
    recorded: list[dict[str, Any]] = upstream.app[REQUESTS]
    return list(recorded)


def test_overhead_header_excludes_the_upstreams_time(samops: DaemonProcess) -> None:
    """The upstream waits 300 ms; samops' overhead is what remains of the total, so the
    header cannot contain that wait."""
    started = time.perf_counter()
    raw = sdk(samops).chat.completions.with_raw_response.create(
        model="support", messages=[{"role": "user", "content": "slowly #delay=300"}]
    )
    elapsed_ms = (time.perf_counter() - started) * 1000
    overhead_ms = float(raw.headers["x-samops-overhead-ms"])
    assert elapsed_ms >= 300
    assert 0 < overhead_ms < elapsed_ms - 300


def test_openai_sdk_chats_with_a_public_client(
    samops: DaemonProcess, upstream: LoopbackServer
) -> None:
    raw = sdk(samops).chat.completions.with_raw_response.create(
        model="support", messages=[{"role": "user", "content": "hello there"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.model == "support"
    assert float(raw.headers["x-samops-overhead-ms"]) >= 0
    assert raw.headers["x-samops-generation"] == "1"
    sent = upstream_requests(upstream)[-1]
    assert sent["model"] == "gpt-4o-mini"
    assert sent["temperature"] == 0.3
    assert sent["messages"][0]["role"] == "system"
    assert "friendly support agent" in sent["messages"][0]["content"]


def test_search_terms_select_a_plugin_and_its_tool_runs(
    samops: DaemonProcess, upstream: LoopbackServer
) -> None:
    completion = sdk(samops).chat.completions.create(
        model="support",
        messages=[
            {
                "role": "user",
                "content": "any coupon? "
                'call:everlasting_gobstopper{"inquiry_type": "coupon_codes"}',
            }
        ],
    )
    answer = completion.choices[0].message.content or ""
    assert answer.startswith("tool results: call_")
    assert "10OFF" in answer
    first, second = upstream_requests(upstream)[-2:]
    assert "marketing agent" in first["messages"][0]["content"]
    assert {t["function"]["name"] for t in first["tools"]} == {
        "everlasting_gobstopper",
        "calculator",
        "date_calculator",
    }
    assert second["messages"][-1]["role"] == "tool"


def test_sql_plugin_runs_with_bound_parameters(samops: DaemonProcess) -> None:
    completion = sdk(samops, DEMO_KEY).chat.completions.create(
        model="stackademy_advisor",
        messages=[
            {
                "role": "user",
                "content": 'call:stackademy_catalogue{"description": "AI", "max_cost": 1000}',
            }
        ],
    )
    answer = completion.choices[0].message.content or ""
    assert "CS310" in answer
    assert "CS301" in answer


def test_api_plugin_stays_under_its_base_url_with_its_auth(
    samops: DaemonProcess, api: tuple[LoopbackServer, list[dict[str, Any]]]
) -> None:
    _, seen = api
    client = sdk(samops, DEMO_KEY)
    for code in ("CS101", "../../admin", "x?y=1#z"):
        arguments = json.dumps({"course_code": code})
        client.chat.completions.create(
            model="stackademy_advisor",
            messages=[{"role": "user", "content": f"seats? call:stackademy_enrolment{arguments}"}],
        )
    assert [s["path"] for s in seen] == [
        "/demo/stackademy/courses/CS101/seats/",
        "/demo/stackademy/courses/..%2F..%2Fadmin/seats/",
        "/demo/stackademy/courses/x%3Fy=1%23z/seats/",  # "=" is plain in a path
    ]
    assert {s["auth"] for s in seen} == {"Bearer api-token-123"}


def test_private_client_requires_exactly_its_key(samops: DaemonProcess) -> None:
    messages: list[Any] = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.AuthenticationError):
        sdk(samops).chat.completions.create(model="stackademy_advisor", messages=messages)
    with pytest.raises(openai.AuthenticationError):
        sdk(samops, "samops_not-the-key").chat.completions.create(
            model="stackademy_advisor", messages=messages
        )
    completion = sdk(samops, DEMO_KEY).chat.completions.create(
        model="stackademy_advisor", messages=messages
    )
    assert completion.choices[0].message.content == "echo: hi"
    code, _ = samops.request(
        "POST",
        "/v1/chat/completions",
        json.dumps({"model": "stackademy_advisor", "messages": messages}).encode(),
        {"Authorization": f"Token {DEMO_KEY}", "Content-Type": "application/json"},
    )
    assert code == 200


def test_models_lists_what_the_key_may_use(samops: DaemonProcess) -> None:
    public = [m.id for m in sdk(samops).models.list()]
    everything = [m.id for m in sdk(samops, DEMO_KEY).models.list()]
    assert public == ["lab_assistant", "support"]
    assert everything == ["lab_assistant", "stackademy_advisor", "support"]


def test_streaming_with_the_sdk(samops: DaemonProcess) -> None:
    stream = sdk(samops).chat.completions.create(
        model="support", messages=[{"role": "user", "content": "stream me please"}], stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert "".join(pieces) == "echo: stream me please"


def test_async_sdk_and_unknown_client(samops: DaemonProcess) -> None:
    async def talk() -> str:
        client = openai.AsyncOpenAI(base_url=f"{samops.base}/v1", api_key="x", max_retries=0)
        completion = await client.chat.completions.create(
            model="support", messages=[{"role": "user", "content": "async"}]
        )
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(
                model="nobody", messages=[{"role": "user", "content": "x"}]
            )
        await client.close()
        return completion.choices[0].message.content or ""

    assert asyncio.run(talk()) == "echo: async"


def test_smarter_prompt_route_keeps_a_session(
    samops: DaemonProcess, upstream: LoopbackServer
) -> None:
    path = "/api/v1/llm-clients/support/prompt/"
    body = json.dumps({"messages": [{"role": "user", "content": "first question"}]}).encode()
    code, answer = samops.request("POST", path, body, {"Content-Type": "application/json"})
    assert code == 200
    assert answer["api"] == "smarter.sh/v1"
    assert answer["metadata"] == {"command": "prompt", "thing": "LLMClient"}
    session = answer["data"]["session_key"]
    assert re.fullmatch(r"[0-9a-f]{64}", session)
    assert answer["data"]["choices"][0]["message"]["content"] == "echo: first question"

    def second_turn_sees_history() -> bool:
        again = json.dumps(
            {"session_key": session, "messages": [{"role": "user", "content": "second"}]}
        ).encode()
        samops.request("POST", path, again, {"Content-Type": "application/json"})
        sent = upstream_requests(upstream)[-1]["messages"]
        return any(m.get("content") == "first question" for m in sent)

    assert wait_for(second_turn_sees_history, timeout=10, what="the stored history")


def test_host_based_prompt_and_config_route(samops: DaemonProcess) -> None:
    body = json.dumps({"messages": [{"role": "user", "content": "by host"}]}).encode()
    code, answer = samops.request(
        "POST",
        "/prompt/",
        body,
        {"Host": "support.1234-5678-9012.api.example.test", "Content-Type": "application/json"},
    )
    assert code == 200
    assert answer["data"]["choices"][0]["message"]["content"] == "echo: by host"
    code, config = samops.request("GET", "/api/v1/llm-clients/support/config/")
    assert code == 200
    assert config["data"]["appName"] == "Wonka Support"
    assert re.fullmatch(r"[0-9a-f]{64}", config["data"]["session_key"])


def test_upstream_failures_are_clear_gateway_errors(samops: DaemonProcess) -> None:
    with pytest.raises(openai.APIStatusError) as failed:
        sdk(samops).chat.completions.create(
            model="support", messages=[{"role": "user", "content": "#status=500"}]
        )
    assert failed.value.status_code == 502
    assert "answered HTTP 500" in str(failed.value)


def test_limits_refuse_oversized_requests(samops: DaemonProcess) -> None:
    many = {"model": "support", "messages": [{"role": "user", "content": "x"}] * 201}
    code, answer = samops.request(
        "POST",
        "/v1/chat/completions",
        json.dumps(many).encode(),
        {"Content-Type": "application/json"},
    )
    assert (code, answer["error"]["code"]) == (413, "too_many_messages")
    big = (
        b'{"model": "support", "messages": [{"role": "user", "content": "'
        + b"x" * (1024 * 1024)
        + b'"}]}'
    )
    assert (
        samops.request("POST", "/v1/chat/completions", big, {"Content-Type": "application/json"})[0]
        == 413
    )


def test_commit_under_load_answers_from_one_generation_and_cuts_the_key_off(
    samops: DaemonProcess, chat_repo: GitRepo
) -> None:
    """A commit changes the client's system prompt, its plugin's role, and deactivates its
    key while requests run: each answer matches exactly one generation, and the key is
    refused from then on."""
    old_role, new_role = "helpful student advisor", "strict registrar"
    old_plugin, new_plugin = "Use the stackademy_catalogue tool", "Always cite course codes"
    body = json.dumps(
        {"model": "stackademy_advisor", "messages": [{"role": "user", "content": "#system"}]}
    ).encode()
    answers: list[tuple[float, str, int, str, str]] = []
    done = threading.Event()

    def load(key: str | None) -> None:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        while not done.is_set():
            code, answer = samops.request("POST", "/v1/chat/completions", body, headers)
            text = answer["choices"][0]["message"]["content"] if code == 200 else ""
            error = answer["error"]["code"] if code != 200 else ""
            answers.append((time.monotonic(), key or "", code, text, error))

    threads = [threading.Thread(target=load, args=(k,)) for k in (DEMO_KEY, None)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(answers) > 20, what="requests under way")
    client_file = chat_repo.root / "manifests/clients/stackademy.yaml"
    client_file.write_text(client_file.read_text().replace(old_role, new_role))
    plugin_file = chat_repo.root / "manifests/plugins/stackademy-sql.yaml"
    plugin_file.write_text(plugin_file.read_text().replace(old_plugin, new_plugin))
    key_file = chat_repo.root / "manifests/keys/stackademy-advisor-key.yaml"
    key_file.write_text(key_file.read_text().replace("isActive: true", "isActive: false"))
    chat_repo.commit("new prompts; deactivate the key")
    committed = time.monotonic()
    samops.applied(chat_repo.git("rev-parse", "HEAD"))
    refused = wait_for(  # then a few more answers with the key, all refused
        lambda: [a[0] for a in answers if a[1] and a[2] == 401][3:], what="the key refused"
    )
    wait_for(lambda: any(a[0] > refused[0] for a in answers if not a[1]), what="more requests")
    done.set()
    for thread in threads:
        thread.join(timeout=10)

    for _, key, code, text, error in answers:
        if code == 200:  # one generation: both old texts, or both new ones
            old = old_role in text and old_plugin in text
            new = new_role in text and new_plugin in text
            assert old != new, text
            assert new == (key == ""), (key, text)  # old texts only with the key, before
        else:
            assert (code, error) in {(401, "missing_key"), (401, "key_inactive")}, error
    with_key = [a for a in answers if a[1]]
    first_refusal = next(t for t, _, code, _, _ in with_key if code == 401)
    # how soon is a figure of `make bench` (curve: "key revoked by a commit -> refused"), not
    # asserted here: under a loaded CI the daemon may take longer to see the commit
    print(f"key refused {first_refusal - committed:.3f} s after the commit")
    assert all(code == 401 for t, _, code, _, _ in with_key if t > first_refusal)


def test_request_id_reaches_the_logs(samops: DaemonProcess) -> None:
    body = json.dumps(
        {
            "model": "support",
            "messages": [{"role": "user", "content": 'call:calculator{"expression": "1/0"}'}],
        }
    ).encode()
    code, _ = samops.request(
        "POST",
        "/v1/chat/completions",
        body,
        {"Content-Type": "application/json", "X-Request-Id": "req-42"},
    )
    assert code == 200
    assert wait_for(lambda: "request_id=req-42" in samops.log.read_text(), what="a log line")


def test_streaming_after_a_tool_round(samops: DaemonProcess) -> None:
    stream = sdk(samops).chat.completions.create(
        model="support",
        stream=True,
        messages=[{"role": "user", "content": 'call:calculator{"expression": "6*7"}'}],
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.startswith("tool results: call_")
    assert '"result": 42' in text


def test_streaming_returns_the_callers_own_tool_calls(samops: DaemonProcess) -> None:
    lookup: ChatCompletionToolParam = {
        "type": "function",
        "function": {
            "name": "crm_lookup",
            "description": "Find a customer.",
            "parameters": {"type": "object", "properties": {"email": {"type": "string"}}},
        },
    }
    stream = sdk(samops).chat.completions.create(
        model="support",
        stream=True,
        tools=[lookup],
        messages=[{"role": "user", "content": 'call:crm_lookup{"email": "a@b.c"}'}],
    )
    names, arguments, finish = "", "", None
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                names += (call.function.name or "") if call.function else ""
                arguments += (call.function.arguments or "") if call.function else ""
            finish = choice.finish_reason or finish
    assert (names, json.loads(arguments), finish) == (
        "crm_lookup",
        {"email": "a@b.c"},
        "tool_calls",
    )


def test_raw_stream_ends_with_done_and_errors_come_first(samops: DaemonProcess) -> None:
    body = {"model": "support", "stream": True, "messages": [{"role": "user", "content": "raw"}]}
    code, text = samops.request(
        "POST",
        "/v1/chat/completions",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    events = [line for line in str(text).split("\n\n") if line]
    assert code == 200
    assert events[-1] == "data: [DONE]"
    assert all(json.loads(e.removeprefix("data: "))["model"] == "support" for e in events[:-1])
    failing = {**body, "messages": [{"role": "user", "content": "#status=503"}]}
    code, answer = samops.request(
        "POST",
        "/v1/chat/completions",
        json.dumps(failing).encode(),
        {"Content-Type": "application/json"},
    )
    assert (code, answer["error"]["code"]) == (502, "upstream_error")


def test_a_committed_secret_cannot_read_what_the_operator_did_not_allow(
    samops: DaemonProcess,
    chat_repo: GitRepo,
    api: tuple[LoopbackServer, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    # Issue 12, item 2: a Secret pointed at the host's OPENAI_API_KEY (or any file) and used
    # by the ApiConnection delivered that value to the API host in one chat turn.
    _, seen = api
    good = chat_repo.git("rev-parse", "HEAD")
    secret = chat_repo.root / "manifests/secrets/stackademy-api-token.yaml"
    outside = tmp_path / "outside.txt"
    outside.write_text("file-secret\n")
    for source in ("env: OPENAI_API_KEY", f"file: {outside}", "env: SAMOPS_DATABASE_URL"):
        secret.write_text(
            secret.read_text().split("valueFrom:")[0] + f"valueFrom:\n      {source}\n"
        )
        attempted = samops.attempted(chat_repo.commit(f"exfiltrate {source}"))
        assert attempted["last_applied_revision"] == good
        assert [e["code"] for e in attempted["last_sync"]["errors"]] == ["secret-not-allowed"]
        sdk(samops, DEMO_KEY).chat.completions.create(
            model="stackademy_advisor",
            messages=[{"role": "user", "content": 'call:stackademy_enrolment{"course_code": "X"}'}],
        )
    assert {s["auth"] for s in seen} == {"Bearer api-token-123"}


def _smarter_prompt(
    samops: DaemonProcess, client: str, content: str, session: str | None, key: str | None
) -> tuple[int, Any]:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": content}]}
    if session is not None:
        body["session_key"] = session
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return samops.request(
        "POST", f"/api/v1/llm-clients/{client}/prompt/", json.dumps(body).encode(), headers
    )


def test_a_session_belongs_to_its_client_and_key(
    samops: DaemonProcess, upstream: LoopbackServer
) -> None:
    # Issue 12, item 9: the public client's route, given a private client's session_key and
    # no key, appended to that private session; its next turn sent the injection upstream.
    code, answer = _smarter_prompt(samops, "stackademy_advisor", "private first", None, DEMO_KEY)
    assert code == 200
    private = answer["data"]["session_key"]

    code, refused = _smarter_prompt(samops, "support", "INJECTED", private, None)
    assert code == 404
    assert refused["error"]["code"] == "unknown_session"
    code, refused = _smarter_prompt(samops, "stackademy_advisor", "INJECTED", private, None)
    assert code == 401  # the private client still wants its key

    def next_private_turn_sees_only_its_own() -> bool:
        code, _ = _smarter_prompt(samops, "stackademy_advisor", "private second", private, DEMO_KEY)
        sent = upstream_requests(upstream)[-1]["messages"]
        assert not any("INJECTED" in str(m.get("content")) for m in sent)
        return code == 200 and any(m.get("content") == "private first" for m in sent)

    assert wait_for(next_private_turn_sees_only_its_own, timeout=10, what="the private history")


def test_metrics_say_what_chat_does(samops: DaemonProcess) -> None:
    # Issue 12, item 10: /metrics said nothing about chat.
    client = sdk(samops, DEMO_KEY)
    client.chat.completions.create(
        model="stackademy_advisor",
        messages=[{"role": "user", "content": 'call:stackademy_enrolment{"course_code": "CS101"}'}],
    )
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="no-such-client-xyz", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.APIStatusError):
        sdk(samops).chat.completions.create(
            model="support", messages=[{"role": "user", "content": "#status=500"}]
        )
    route = "/v1/chat/completions"
    assert (
        samops.metric(
            f'samops_chat_requests_total{{client="stackademy_advisor",route="{route}",status="200"}}'
        )
        == 1
    )
    assert (
        samops.metric(f'samops_chat_requests_total{{client="",route="{route}",status="404"}}') == 1
    )
    assert "no-such-client-xyz" not in str(samops.request("GET", "/metrics")[1])
    assert (
        samops.metric('samops_chat_tool_calls_total{outcome="ok",tool="stackademy_enrolment"}') == 1
    )
    assert (
        samops.metric('samops_chat_upstream_errors_total{code="upstream_error",provider="openai"}')
        == 1
    )
    assert samops.metric('samops_chat_upstream_seconds_count{provider="openai"}') == 1
    assert samops.metric(f'samops_chat_request_seconds_count{{route="{route}"}}') == 3
    assert samops.metric("samops_chat_in_flight") == 0
