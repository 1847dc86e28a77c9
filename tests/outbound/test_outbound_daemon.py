"""Commit statuses and notifications from a real ``samops run`` following a real repository,
received by local servers that check what GitHub, GitLab, Gitea, a webhook receiver and Slack
check (``tests/fakes/receivers.py``)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import GitRepo
from tests.daemon.conftest import SAMOPS, DaemonProcess, set_role, wait_for
from tests.fakes.receivers import TOKEN, WEBHOOK_SECRET, Receivers, running_receivers

STATUS_API = {
    "github": "/github",
    "gitlab": "/gitlab/api/v4",
    "gitea": "/gitea/api/v1",
}
SUCCESS = {"github": "success", "gitlab": "success", "gitea": "success"}
FAILURE = {"github": "failure", "gitlab": "failed", "gitea": "failure"}
PENDING = {"github": "pending", "gitlab": "running", "gitea": "pending"}


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    with running_receivers() as running:
        yield running


def break_support(repo: GitRepo, key: str = "bogus") -> str:
    """Commit the support client with an unknown key; returns the commit."""
    client = repo.root / "manifests/clients/support.yaml"
    client.write_text(client.read_text().replace("  config:\n", f"  config:\n    {key}: 1\n", 1))
    return repo.commit("an unknown key")


def states(receivers: Receivers, host: str, revision: str) -> list[str]:
    return [r.body["state"] for r in receivers.of(f"/{host}") if r.path.endswith(revision)]


@pytest.mark.parametrize("host", ["github", "gitlab", "gitea"])
def test_each_sync_posts_a_commit_status(
    host: str,
    receivers: Receivers,
    start_daemon: Callable[..., DaemonProcess],
    repo: GitRepo,
) -> None:
    daemon = start_daemon(
        "--repo",
        str(repo.root),
        "--path",
        "manifests",
        env={
            "SAMOPS_COMMIT_STATUS": host,
            "SAMOPS_COMMIT_STATUS_API": receivers.base + STATUS_API[host],
            "SAMOPS_COMMIT_STATUS_REPO": "team/bots",
            "SAMOPS_GIT_HOST_TOKEN": TOKEN,
            "SAMOPS_CONSOLE_URL": "https://samops.example.com/",
        },
    )
    first = repo.git("rev-parse", "HEAD")
    daemon.applied(first)
    wait_for(lambda: SUCCESS[host] in states(receivers, host, first), what="a success status")
    assert states(receivers, host, first) == [PENDING[host], SUCCESS[host]]
    success = receivers.of(f"/{host}")[-1]
    assert success.path.startswith(
        {
            "github": "/github/repos/team/bots/statuses/",
            "gitlab": "/gitlab/api/v4/projects/team%2Fbots/statuses/",
            "gitea": "/gitea/api/v1/repos/team/bots/statuses/",
        }[host]
    )
    assert success.body["target_url"] == "https://samops.example.com/#history"
    assert "applied, generation 1" in success.body["description"]
    assert success.body.get("context", success.body.get("name")) == "samops"

    broken = break_support(repo)
    daemon.attempted(broken)
    wait_for(lambda: FAILURE[host] in states(receivers, host, broken), what="a failure status")
    failure = receivers.of(f"/{host}")[-1]
    assert "manifests/clients/support.yaml:" in failure.body["description"]
    assert "bogus" in failure.body["description"]
    assert len(failure.body["description"]) <= 140
    assert daemon.metric(f'samops_outbound_deliveries_total{{result="sent",target="{host}"}}')


def notifying(receivers: Receivers, **extra: str) -> dict[str, str]:
    return {
        "SAMOPS_NOTIFY_WEBHOOKS": receivers.base + "/hooks/generic",
        "SAMOPS_NOTIFY_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SAMOPS_NOTIFY_SLACK_URL": receivers.base + "/hooks/slack",
        **extra,
    }


def kinds(receivers: Receivers) -> list[str]:
    return [r.body["kind"] for r in receivers.of("/hooks/generic")]


def test_notifications_are_signed_deduplicated_and_say_when_it_recovers(
    receivers: Receivers,
    start_daemon: Callable[..., DaemonProcess],
    repo: GitRepo,
    tmp_path: Path,
) -> None:
    daemon = start_daemon("--repo", str(repo.root), "--path", "manifests", env=notifying(receivers))
    daemon.applied(repo.git("rev-parse", "HEAD"))
    broken = break_support(repo, key="<script>alert(1)</script>")
    daemon.attempted(broken)
    wait_for(lambda: "sync_failed" in kinds(receivers), what="a failed-sync notification")
    event = receivers.of("/hooks/generic")[0]
    assert event.headers["X-Samops-Event"] == "sync_failed"
    assert event.body["revision"] == broken
    assert event.body["details"]["errors"][0].startswith("manifests/clients/support.yaml:")
    wait_for(lambda: receivers.of("/hooks/slack"), what="the Slack message")
    slack = receivers.of("/hooks/slack")[0].body
    assert "&lt;script&gt;" in slack["text"] + str(slack["blocks"])
    assert "<script>" not in slack["text"] + str(slack["blocks"])

    # the same commit again (a retry, a reconcile asked for): nobody is told twice
    env = {"SAMOPS_DATABASE_URL": daemon.env["SAMOPS_DATABASE_URL"]}
    before = daemon.metric("samops_outbound_deduplicated_total") or 0
    subprocess.run([SAMOPS, "reconcile"], env=env | base_env(), check=True, capture_output=True)
    wait_for(
        lambda: (daemon.metric("samops_outbound_deduplicated_total") or 0) > before,
        what="the repeated pass deduplicated",
    )
    assert kinds(receivers) == ["sync_failed"]

    fixed = set_role(repo, "Fixed.")
    daemon.applied(fixed)
    wait_for(lambda: "sync_recovered" in kinds(receivers), what="a recovery notification")
    subprocess.run([SAMOPS, "suspend", "--reason", "incident 42"], env=env | base_env(), check=True)
    wait_for(lambda: "suspended" in kinds(receivers), what="a suspension notification")
    subprocess.run([SAMOPS, "resume"], env=env | base_env(), check=True, capture_output=True)
    wait_for(lambda: "resumed" in kinds(receivers), what="a resumption notification")
    assert kinds(receivers) == ["sync_failed", "sync_recovered", "suspended", "resumed"]
    suspended = receivers.of("/hooks/generic")[2].body
    assert "incident 42" in suspended["summary"]
    assert len(receivers.of("/hooks/slack")) == 4


def test_failed_deliveries_are_retried_and_a_refusal_is_not(
    receivers: Receivers,
    start_daemon: Callable[..., DaemonProcess],
    repo: GitRepo,
) -> None:
    receivers.fail_next["/hooks/generic"] = 2
    daemon = start_daemon(
        "--repo",
        str(repo.root),
        "--path",
        "manifests",
        env=notifying(
            receivers,
            SAMOPS_COMMIT_STATUS="github",
            SAMOPS_COMMIT_STATUS_API=receivers.base + "/github",
            SAMOPS_COMMIT_STATUS_REPO="team/bots",
            SAMOPS_GIT_HOST_TOKEN="not-the-token",
        ),
    )
    daemon.applied(repo.git("rev-parse", "HEAD"))
    daemon.attempted(break_support(repo))
    wait_for(lambda: kinds(receivers) == ["sync_failed"], timeout=30, what="the third attempt")
    assert receivers.attempts["/hooks/generic"] == 3
    assert daemon.metric('samops_outbound_deliveries_total{result="retried",target="webhook"}') == 2
    wait_for(
        lambda: daemon.metric('samops_outbound_deliveries_total{result="failed",target="github"}'),
        what="the refused statuses counted",
    )
    assert receivers.of("/github") == []  # 401: refused, not retried
    assert not daemon.metric('samops_outbound_deliveries_total{result="retried",target="github"}')


def test_a_target_that_never_answers_does_not_slow_the_reconcile(
    receivers: Receivers,
    start_daemon: Callable[..., DaemonProcess],
    repo: GitRepo,
) -> None:
    receivers.hang.add("/hooks/generic")
    daemon = start_daemon("--repo", str(repo.root), "--path", "manifests", env=notifying(receivers))
    daemon.applied(repo.git("rev-parse", "HEAD"))
    daemon.attempted(break_support(repo))
    # a delivery waits 10 s before it times out, and is tried 6 times: a reconcile that waited
    # for it would miss these waits of 15 s
    for role in ("One.", "Two.", "Three."):
        daemon.applied(set_role(repo, role))
    assert receivers.of("/hooks/generic") == []
    wait_for(lambda: len(receivers.of("/hooks/slack")) == 2, what="Slack told, beside it")


def base_env() -> dict[str, str]:
    """This process's environment without samops' settings (the command gets its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SAMOPS_")}


def test_a_budget_crossed_by_chat_is_told_once_each_way(
    receivers: Receivers,
    start_daemon: Callable[..., DaemonProcess],
    repo: GitRepo,
) -> None:
    budget = repo.root / "manifests/budgets/support.yaml"
    text = budget.read_text().replace("unit: cost", "unit: tokens")
    text = text.replace("periodicLimit: 5", "periodicLimit: 60").replace(
        "warningThreshold: 80", "warningThreshold: 50"
    )
    text = text.replace("absoluteLimit: 100", "absoluteLimit: 100000")  # far away
    budget.write_text(text)
    daemon = start_daemon("--repo", str(repo.root), "--path", "manifests", env=notifying(receivers))
    daemon.applied(repo.commit("a small token budget"))
    daemon.ready()
    body = json.dumps(
        {"model": "support", "messages": [{"role": "user", "content": "hello " * 5}]}
    ).encode()
    codes = []
    for _ in range(12):
        code, _ = daemon.request(
            "POST", "/v1/chat/completions", body, {"Content-Type": "application/json"}
        )
        codes.append(code)
    assert 429 in codes
    wait_for(lambda: "budget_blocked" in kinds(receivers), what="the budget's block told")
    assert kinds(receivers) == ["budget_warning", "budget_blocked"]
    blocked = receivers.of("/hooks/generic")[1].body
    assert blocked["details"]["budget"] == "support_daily"
    assert blocked["details"]["resource"] == "LLMClient/support"
    assert "turns are refused" in blocked["summary"]
