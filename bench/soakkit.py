"""What the soak (``bench/soak.py``) and its fault drills (``bench/drills.py``) share.

Child processes on 127.0.0.1 whose output goes to a log file and which are always stopped in
``finally`` blocks (SIGTERM, then SIGKILL after a timeout); the real ``git``; one chat call
that never raises (a failure is an ``Answer`` with status 0); a throwaway PostgreSQL database.
Nothing here knows what the soak checks.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy.engine import make_url

from bench.common import fresh_database, postgres_version

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
SAMOPS = str(Path(PYTHON).parent / "samops")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "samops soak",
    "GIT_AUTHOR_EMAIL": "soak@samops.invalid",
    "GIT_COMMITTER_NAME": "samops soak",
    "GIT_COMMITTER_EMAIL": "soak@samops.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}
MARKER = re.compile(r"\[soak:([\w-]+)\]")
PLUGIN_MARKER = re.compile(r"\[soak-plugin:(\w+)\]")


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        env={**os.environ, **GIT_ENV, "HOME": str(repo)},
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


class Child:
    """A child process on loopback; its stdout and stderr go to ``log``."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as handle:
            return subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=handle,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def restart(self) -> None:
        """Start the same command again (after ``stop``)."""
        self.process = self._spawn()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def scripted_upstream(port: int, log: Path) -> Child:
    argv = [PYTHON, "-m", "tests.fakes.upstream", "--host", "127.0.0.1", "--port", str(port)]
    return Child("upstream", argv, env={}, log=log)


def samops_run(args: list[str], *, port: int, env: dict[str, str], log: Path) -> Child:
    argv = [SAMOPS, "run", *args, "--host", "127.0.0.1", "--port", str(port)]
    return Child("samops", [*argv, "--log-level", "warning"], env=env, log=log)


def wait_ok(url: str, child: Child, *, timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers 200; fail with the child's log if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited early:\n{child.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:g} s:\n{child.tail()}")


@dataclass(frozen=True, slots=True)
class Commit:
    """One commit of the followed repository, and what it configures."""

    index: int
    sha: str
    kind: str  # initial, prompt, key, plugin
    marker: str  # in the support client's system prompt: [soak:<marker>]
    plugin: str | None  # the soak plugin attached to support at this commit, if any
    key_id: int  # the one key stackademy_advisor accepts at this commit
    committed_at: float  # time.time() when `git commit` returned


@dataclass(frozen=True, slots=True)
class Answer:
    """One chat answer as the soak keeps it (times are ``time.time()``, seconds)."""

    sent: float
    done: float
    status: int  # 0: no HTTP answer (connection refused, client timeout)
    generation: int | None
    content: str  # the assistant's text on 2xx
    code: str  # the error code otherwise ("" when none)
    well_formed: bool  # 2xx with a completion, or an error with the JSON error shape
    session: str = ""  # the session_key of a Smarter-route answer


async def chat(
    session: aiohttp.ClientSession,
    base: str,
    model: str,
    text: str,
    *,
    key: str | None = None,
    smarter: bool = False,
    timeout: float = 20.0,
) -> Answer:
    """One chat turn on the OpenAI route (or Smarter's); never raises."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    messages = [{"role": "user", "content": text}]
    body: dict[str, Any]
    if smarter:
        url, body = f"{base}/api/v1/llm-clients/{model}/prompt/", {"messages": messages}
    else:
        url, body = f"{base}/v1/chat/completions", {"model": model, "messages": messages}
    sent = time.time()
    try:
        async with session.post(
            url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            document = await response.json(content_type=None)
            status = response.status
            generation = response.headers.get("x-samops-generation")
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return Answer(sent, time.time(), 0, None, "", type(exc).__name__, False)
    content, code, well_formed = _read(document, status, smarter)
    number = int(generation) if generation and generation.isdigit() else None
    data = document.get("data") if smarter and isinstance(document, dict) else None
    session_key = str(data.get("session_key") or "") if isinstance(data, dict) else ""
    return Answer(sent, time.time(), status, number, content, code, well_formed, session_key)


def _read(document: Any, status: int, smarter: bool) -> tuple[str, str, bool]:
    if not isinstance(document, dict):
        return "", "", False
    if 200 <= status < 300:
        completion = document.get("data") if smarter else document
        try:
            content = completion["choices"][0]["message"]["content"]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return "", "", False
        return str(content or ""), "", "error" not in document
    error = document.get("error")
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        return "", "", False
    return "", str(error["code"]), isinstance(error.get("message"), str)


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    """GET ``url``: (status, JSON document or text); (0, None) when nothing answers."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
            raw = await response.text()
            status = response.status
            kind = response.headers.get("Content-Type", "")
    except (aiohttp.ClientError, TimeoutError):
        return 0, None
    if "json" in kind:
        return status, json.loads(raw)
    return status, raw


def metric(text: str, name: str) -> float | None:
    """The value of an unlabelled sample in Prometheus text."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


async def run_blocking(argv: list[str], timeout: float = 60.0) -> tuple[int, str]:
    """Run a command (git, pg_ctlcluster) off the event loop: (exit code, output)."""

    def call() -> tuple[int, str]:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 127, str(exc)
        return done.returncode, (done.stdout + done.stderr).strip()

    return await asyncio.to_thread(call)


@contextmanager
def postgres_database(admin_url: str) -> Iterator[tuple[str | None, str]]:
    """A new, empty PostgreSQL database, dropped afterwards: (its URL, a note). The URL is
    None (and the note says why) when the server cannot be reached."""
    _, unreachable = postgres_version(admin_url)
    if unreachable:
        yield None, unreachable
        return
    with fresh_database(
        "postgresql",
        folder=Path("."),  # only SQLite databases live in a folder
        name="soak",
        postgres_url=admin_url,
        drop_attempts=30,  # the server may still be coming back from the restart drill
    ) as url:
        yield url, f"PostgreSQL, fresh database {make_url(url).database}"
