"""Chat goes on through the faults of the soak's drills, on a real ``samops run``: the database
away (PostgreSQL refusing connections, the server is never restarted from a test) and the git
remote away. Answers come from the last good state, and the first change after the fault is
applied and served by the same process."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from tests.conftest import GitRepo
from tests.daemon.conftest import DaemonProcess, remote, set_role, start_daemon, wait_for
from tests.fakes.upstream import create_scripted_app, serve_in_thread

__all__ = ["remote", "start_daemon"]  # fixtures of the daemon tests, used here

DEFAULT_ROLE = "You are a friendly support agent for the Willy Wonka Chocolate Factory."


@contextmanager
def database_outage(admin: Engine, url: str) -> Iterator[None]:
    """The test database refuses connections and its open ones are dropped (the server
    itself keeps running: other tests share it)."""
    name = make_url(url).database
    with admin.connect() as connection:
        connection.exec_driver_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
    try:
        yield
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')


@pytest.fixture
def upstream_env() -> Iterator[dict[str, str]]:
    with serve_in_thread(create_scripted_app()) as base_url:
        yield {"OPENAI_API_KEY": "upstream-key", "OPENAI_BASE_URL": base_url}


def system_prompt(daemon: DaemonProcess) -> tuple[int, str, str | None]:
    """Ask support for ``#system``: (status, the system prompt it was given, generation)."""
    body = json.dumps({"model": "support", "messages": [{"role": "user", "content": "#system"}]})
    request = urllib.request.Request(  # noqa: S310 - always http://127.0.0.1
        f"{daemon.base}/v1/chat/completions",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            answer = json.loads(response.read())
            generation = response.headers.get("x-samops-generation")
            return response.status, answer["choices"][0]["message"]["content"], generation
    except urllib.error.HTTPError as error:
        return error.code, "", error.headers.get("x-samops-generation")


def serves(daemon: DaemonProcess, role: str) -> bool:
    status, text, _ = system_prompt(daemon)
    return status == 200 and text.startswith(role)


def test_chat_answers_from_the_last_good_state_through_a_database_outage(
    repo: GitRepo,
    postgres_url: str,
    postgres_admin: Engine,
    tmp_path: Path,
    upstream_env: dict[str, str],
) -> None:
    daemon = DaemonProcess(
        ["--repo", str(repo.root), "--path", "manifests"],
        env={
            "SAMOPS_DATA_DIR": str(tmp_path / "data"),
            "SAMOPS_DATABASE_URL": postgres_url,
            **upstream_env,
        },
        log=tmp_path / "daemon.log",
    )
    try:
        daemon.applied(repo.git("rev-parse", "HEAD"))
        wait_for(lambda: serves(daemon, DEFAULT_ROLE), what="the first generation served")
        with database_outage(postgres_admin, postgres_url):
            commit = set_role(repo, "Written during the outage.")
            wait_for(lambda: daemon.request("GET", "/readyz")[0] == 503, what="readyz to see it")
            assert daemon.request("GET", "/readyz")[1]["error"]["code"] == "database_unavailable"
            answers = [system_prompt(daemon) for _ in range(5)]
            assert {(s, t.startswith(DEFAULT_ROLE), g) for s, t, g in answers} == {(200, True, "1")}

        daemon.applied(commit, timeout=20)
        wait_for(lambda: serves(daemon, "Written during the outage."), what="the new prompt")
        assert system_prompt(daemon)[2] == "2"
        assert daemon.process.poll() is None  # the same process, never restarted
    finally:
        daemon.stop()


def test_chat_answers_while_the_git_remote_is_unreachable(
    start_daemon: Callable[..., DaemonProcess],
    remote: tuple[GitRepo, Path],
    upstream_env: dict[str, str],
) -> None:
    work, bare = remote
    daemon = start_daemon(
        *("--url", str(bare), "--ref", "main", "--path", "manifests", "--poll-interval", "1"),
        env=upstream_env,
    )
    daemon.applied(work.git("rev-parse", "HEAD"))
    hidden = bare.with_name("moved.git")
    bare.rename(hidden)
    wait_for(
        lambda: (daemon.metric("samops_git_fetch_failures_total") or 0) >= 2,
        what="failed fetches",
    )
    status, text, generation = system_prompt(daemon)
    assert (status, text.startswith(DEFAULT_ROLE), generation) == (200, True, "1")

    hidden.rename(bare)
    set_role(work, "Back online.")
    work.git("push", "--quiet", "origin", "main")
    wait_for(lambda: serves(daemon, "Back online."), timeout=20, what="the push served")
