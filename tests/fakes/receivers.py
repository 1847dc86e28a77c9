"""The outside world samops tells things to: git hosts' commit-status APIs, a generic webhook
receiver and a Slack-compatible incoming webhook, on one aiohttp server on loopback.

Test seam. Each route checks what the real service checks, and answers as it does:

- ``/github/repos/{owner}/{repo}/statuses/{sha}``: ``Authorization: Bearer <token>``, a JSON body
  with ``state`` in pending/success/failure/error, ``description`` of at most 140 characters,
  ``context``; 201 with the status.
- ``/gitlab/api/v4/projects/{id}/statuses/{sha}``: ``PRIVATE-TOKEN``, ``state`` in
  pending/running/success/failed/canceled, and GitLab's rule that a status cannot move to the
  state it is in (400 "Cannot transition status via :run from :running").
- ``/gitea/api/v1/repos/{owner}/{repo}/statuses/{sha}``: ``Authorization: token <token>``,
  ``state`` in pending/success/error/failure/warning; 201.
- ``/hooks/generic``: the body's HMAC-SHA256 in ``X-Samops-Signature`` (401 when wrong).
- ``/hooks/slack``: a JSON object with ``text``; answers ``ok`` as text, as Slack does.

Everything accepted is kept in ``received`` (path, headers, JSON); ``fail_next[path_prefix]``
answers that many requests with 500 first; ``hang`` paths never answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "git-host-token-for-tests"
WEBHOOK_SECRET = "webhook-secret-for-tests"
STATES = {
    "github": {"pending", "success", "failure", "error"},
    "gitlab": {"pending", "running", "success", "failed", "canceled"},
    "gitea": {"pending", "success", "error", "failure", "warning"},
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receivers:
    base: str = ""
    received: list[Received] = field(default_factory=list)
    fail_next: dict[str, int] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)
    attempts: dict[str, int] = field(default_factory=dict)
    _gitlab_states: dict[tuple[str, str], str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, prefix: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path.startswith(prefix)]

    def _keep(self, request: web.Request, body: Any) -> None:
        with self._lock:
            self.received.append(Received(request.raw_path, dict(request.headers), body))

    def _injected(self, path: str) -> web.Response | None:
        with self._lock:
            for prefix, count in self.fail_next.items():
                if path.startswith(prefix):
                    self.attempts[prefix] = self.attempts.get(prefix, 0) + 1
                    if count > 0:
                        self.fail_next[prefix] = count - 1
                        return web.json_response({"message": "injected failure"}, status=500)
        return None

    async def status(self, request: web.Request) -> web.Response:
        if any(request.path.startswith(p) for p in self.hang):
            await asyncio.sleep(3600)
        injected = self._injected(request.path)
        if injected is not None:
            return injected
        host = request.path.split("/")[1]
        expected = {
            "github": ("Authorization", f"Bearer {TOKEN}"),
            "gitlab": ("PRIVATE-TOKEN", TOKEN),
            "gitea": ("Authorization", f"token {TOKEN}"),
        }[host]
        if request.headers.get(expected[0]) != expected[1]:
            return web.json_response({"message": "Bad credentials"}, status=401)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"message": "Problems parsing JSON"}, status=400)
        state = body.get("state")
        if state not in STATES[host]:
            return web.json_response({"message": f"state {state!r} is invalid"}, status=422)
        if host == "github" and len(body.get("description", "")) > 140:
            return web.json_response({"message": "description is too long"}, status=422)
        if host == "gitlab":
            key = (request.match_info["project"], request.match_info["sha"])
            if self._gitlab_states.get(key) == state:
                return web.json_response(
                    {"message": f"Cannot transition status via :run from :{state}"}, status=400
                )
            self._gitlab_states[key] = state
        self._keep(request, body)
        return web.json_response({"state": state, "id": len(self.received)}, status=201)

    async def generic(self, request: web.Request) -> web.Response:
        if any(request.path.startswith(p) for p in self.hang):
            await asyncio.sleep(3600)
        injected = self._injected(request.path)
        if injected is not None:
            return injected
        raw = await request.read()
        expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Samops-Signature", ""), expected):
            return web.json_response({"error": "bad signature"}, status=401)
        self._keep(request, json.loads(raw))
        return web.json_response({"ok": True})

    async def slack(self, request: web.Request) -> web.Response:
        injected = self._injected(request.path)
        if injected is not None:
            return injected
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return web.Response(text="invalid_payload", status=400)
        self._keep(request, body)
        return web.Response(text="ok")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/github/repos/{owner}/{repo}/statuses/{sha}", self.status)
        app.router.add_post("/gitlab/api/v4/projects/{project}/statuses/{sha}", self.status)
        app.router.add_post("/gitea/api/v1/repos/{owner}/{repo}/statuses/{sha}", self.status)
        app.router.add_post("/hooks/generic", self.generic)
        app.router.add_post("/hooks/slack", self.slack)
        return app


@contextmanager
def running_receivers() -> Iterator[Receivers]:
    """The receivers on a free loopback port, in a thread of their own, for one test."""
    receivers = Receivers()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    runner = web.AppRunner(receivers.app(), access_log=None, shutdown_timeout=1)

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        receivers.base = f"http://127.0.0.1:{port}"
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()))
    thread.daemon = True
    thread.start()
    started.wait(10)

    async def stop() -> None:
        await runner.cleanup()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:  # handlers told to hang
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    try:
        yield receivers
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
