"""``samops run --workers 2``: two real processes on one port (SO_REUSEPORT), on SQLite and
PostgreSQL. Every request here opens a new connection, so the kernel spreads them over both
processes; which process answered is read from ``/readyz`` and webhook answers (``worker``)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

from serve.settings import ChatSettings, FollowerSpec, ServerOptions
from serve.workers import WorkerConfig
from tests.conftest import GitRepo
from tests.daemon.conftest import DaemonProcess, set_role, wait_for
from tests.fakes.webhooks import sign

SECRET = "workers-test-secret"
ASK_SYSTEM = json.dumps(
    {"model": "support", "messages": [{"role": "user", "content": "#system"}]}
).encode()


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(n) for n in path.read_text().split()] if path.exists() else []


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"  # exited, waiting for a parent to collect it


def readiness(daemon: DaemonProcess) -> dict[str, int]:
    code, body = daemon.request("GET", "/readyz")
    assert code == 200, body
    return dict(body)


def answered_by_each(daemon: DaemonProcess, ask: Callable[[], dict[str, int]]) -> set[int]:
    """Ask on fresh connections until both processes have answered (bounded)."""
    seen: set[int] = set()
    for _ in range(200):
        seen.add(ask()["worker"])
        if seen == {0, 1}:
            break
    return seen


def start_workers(start_daemon: Callable[..., DaemonProcess], repo: GitRepo) -> DaemonProcess:
    daemon = start_daemon(
        "--repo",
        str(repo.root),
        "--path",
        "manifests",
        "--workers",
        "2",
        "--webhook-secret",
        SECRET,
        "--log-format",
        "json",
    )
    daemon.applied(repo.git("rev-parse", "HEAD"))
    wait_for(lambda: daemon.request("GET", "/readyz")[0] == 200, what="every process ready")
    return daemon


def test_two_processes_answer_on_one_port_and_both_follow_every_commit(
    start_daemon: Callable[..., DaemonProcess], repo: GitRepo
) -> None:
    daemon = start_workers(start_daemon, repo)
    (worker_pid,) = children(daemon.process.pid)
    assert answered_by_each(daemon, lambda: readiness(daemon)) == {0, 1}

    commit = set_role(repo, "You are the assistant of every worker.")
    daemon.applied(commit)

    def serving() -> set[int]:
        answers = [readiness(daemon) for _ in range(40)]
        return {a["worker"] for a in answers if a["served_generation"] == 2}

    wait_for(lambda: serving() == {0, 1}, what="both processes serving generation 2")
    for _ in range(20):  # fresh connections: both processes answer, all with the new prompt
        code, body = daemon.request(
            "POST", "/v1/chat/completions", ASK_SYSTEM, {"Content-Type": "application/json"}
        )
        assert code == 200, body
        assert "assistant of every worker" in body["choices"][0]["message"]["content"]

    families = daemon.metrics()  # the whole group, whichever process answers the scrape
    assert [s.value for s in families["samops_served_generation"].samples] == [2.0]
    assert [(s.labels, s.value) for s in families["samops_generation"].samples] == [({}, 2.0)]
    applied = [
        s.value
        for s in families["samops_reconciles"].samples
        if s.name == "samops_reconciles_total" and s.labels == {"outcome": "applied"}
    ]
    assert applied == [2.0]
    assert children(daemon.process.pid) == [worker_pid]


def test_a_webhook_that_lands_on_a_worker_wakes_the_reconciler(
    start_daemon: Callable[..., DaemonProcess], repo: GitRepo
) -> None:
    daemon = start_workers(start_daemon, repo)
    body = b'{"ref": "refs/heads/main"}'
    headers = {"X-Samops-Signature": sign(body, SECRET), "Content-Type": "application/json"}

    def deliver() -> dict[str, int]:
        code, answer = daemon.request("POST", "/hooks/git", body, headers)
        assert code == 202, answer
        return dict(answer)

    assert answered_by_each(daemon, deliver) == {0, 1}
    wait_for(
        lambda: any(
            line.get("message") == "wake-up"
            and line.get("reason") == "webhook received by a worker"
            for line in daemon.log_lines()
        ),
        what="the primary woken by the worker",
    )
    webhooks = daemon.metrics()["samops_webhook_requests"].samples
    accepted = [s.value for s in webhooks if s.labels.get("result") == "accepted"]
    assert sum(accepted) >= 2  # counted in both processes, summed in one series per label set


def test_a_dead_worker_is_started_again_and_workers_stop_with_the_primary(
    start_daemon: Callable[..., DaemonProcess], repo: GitRepo
) -> None:
    daemon = start_workers(start_daemon, repo)
    (first,) = children(daemon.process.pid)
    metrics_folder = dict(
        item.split("=", 1)
        for item in Path(f"/proc/{first}/environ").read_text().split("\0")
        if "=" in item
    )["PROMETHEUS_MULTIPROC_DIR"]
    assert Path(metrics_folder).is_dir()

    os.kill(first, signal.SIGKILL)
    second = wait_for(
        lambda: [p for p in children(daemon.process.pid) if p != first and not gone(p)],
        what="a new worker",
    )[0]
    wait_for(
        lambda: answered_by_each(daemon, lambda: readiness(daemon)) == {0, 1},
        what="the new worker answering",
    )
    assert any(
        line.get("message") == "worker exited; starting it again" for line in daemon.log_lines()
    )

    assert daemon.stop() == 0
    assert gone(second)
    assert not Path(metrics_folder).exists()


def test_a_worker_exits_by_itself_when_the_primary_is_killed(
    start_daemon: Callable[..., DaemonProcess], repo: GitRepo
) -> None:
    daemon = start_workers(start_daemon, repo)
    (worker,) = children(daemon.process.pid)

    daemon.kill()

    wait_for(lambda: gone(worker), what="the orphaned worker to exit")


def test_worker_settings_survive_the_trip_through_the_environment() -> None:
    options = ServerOptions(
        host="127.0.0.1",
        port=8080,
        webhook_secret="s3cret",
        chat=ChatSettings(max_tool_rounds=2, api_domain="example.com", deadline_seconds=9.5),
        log_format="json",
        log_level="debug",
        admin_key_digest="sha256:" + "a" * 64,
        follower=FollowerSpec(repo="/srv/bots", ref="main", subpath="manifests"),
        workers=2,
    )
    config = WorkerConfig(index=1, primary_pid=42, options=options, ready_fd=7)

    assert "s3cret" not in config.to_json()
    assert WorkerConfig.from_json(config.to_json(), webhook_secret="s3cret") == config
