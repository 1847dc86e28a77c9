"""What the operator's settings make, the requests each target sends, and the errors a wrong
setting gives (a sentence naming the variable, never a secret, never a traceback)."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
from pathlib import Path

import pytest

from reconciler.outbound.events import Event, sync_event
from reconciler.outbound.settings import OutboundSettingsError, outbound_targets
from reconciler.outbound.targets import CommitStatus, Slack, Webhook
from tests.conftest import GitRepo
from tests.daemon.conftest import SAMOPS

FAILED = sync_event(
    "invalid",
    "a" * 40,
    generation=3,
    errors=[{"file": "m.yaml", "line": 4, "column": 7, "message": "<b>unknown</b> key & more"}],
    message="",
    failing_before=False,
)


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "SAMOPS_COMMIT_STATUS",
        "SAMOPS_COMMIT_STATUS_API",
        "SAMOPS_COMMIT_STATUS_REPO",
        "SAMOPS_GIT_HOST_TOKEN",
        "SAMOPS_GIT_HOST_TOKEN_FILE",
        "SAMOPS_NOTIFY_WEBHOOKS",
        "SAMOPS_NOTIFY_WEBHOOK_SECRET",
        "SAMOPS_NOTIFY_SLACK_URL",
        "SAMOPS_CONSOLE_URL",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("host", "remote", "api", "repository"),
    [
        pytest.param(
            "github", "https://github.com/team/bots.git", "https://api.github.com", "team/bots",
            id="github.com",
        ),
        pytest.param(
            "github", "https://ghe.corp/team/bots", "https://ghe.corp/api/v3", "team/bots",
            id="github-enterprise",
        ),
        pytest.param(
            "gitlab", "git@gitlab.example:group/sub/bots.git", "https://gitlab.example/api/v4",
            "group/sub/bots", id="gitlab-scp-like",
        ),
        pytest.param(
            "gitea", "https://user:secret@gitea.example/team/bots.git",
            "https://gitea.example/api/v1", "team/bots", id="gitea-with-credentials",
        ),
    ],
)  # fmt: skip
def test_the_status_target_comes_from_the_followed_remote(
    monkeypatch: pytest.MonkeyPatch, host: str, remote: str, api: str, repository: str
) -> None:
    monkeypatch.setenv("SAMOPS_COMMIT_STATUS", host)
    monkeypatch.setenv("SAMOPS_GIT_HOST_TOKEN", "t0ken")
    (target,) = outbound_targets(remote, reconciles=True)
    assert isinstance(target, CommitStatus)
    assert (target.host, target.api, target.repository) == (host, api, repository)
    assert "t0ken" not in repr(target)
    assert outbound_targets(remote, reconciles=False) == []  # replicas post no statuses


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"SAMOPS_COMMIT_STATUS": "bitbucket"}, "expected github, gitlab, gitea or off"),
        ({"SAMOPS_COMMIT_STATUS": "github"}, "set SAMOPS_COMMIT_STATUS_REPO"),
        (
            {"SAMOPS_COMMIT_STATUS": "github", "SAMOPS_COMMIT_STATUS_REPO": "a/b"},
            "set SAMOPS_COMMIT_STATUS_API",
        ),
        (
            {
                "SAMOPS_COMMIT_STATUS": "github",
                "SAMOPS_COMMIT_STATUS_REPO": "a/b",
                "SAMOPS_COMMIT_STATUS_API": "https://api.github.com",
            },
            "set SAMOPS_GIT_HOST_TOKEN or SAMOPS_GIT_HOST_TOKEN_FILE",
        ),
        (
            {"SAMOPS_NOTIFY_WEBHOOKS": "ftp://hooks.example/secret-path"},
            "SAMOPS_NOTIFY_WEBHOOKS must hold http(s) URLs, not ftp://hooks.example",
        ),
        (
            {"SAMOPS_NOTIFY_SLACK_URL": "hooks.slack.com/services/T0/B0/XXXX"},
            "SAMOPS_NOTIFY_SLACK_URL must hold http(s) URLs",
        ),
    ],
)
def test_a_wrong_setting_is_a_sentence(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], says: str
) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(OutboundSettingsError) as raised:
        outbound_targets(None, reconciles=True)
    assert says in str(raised.value)
    assert "secret-path" not in str(raised.value)
    assert "XXXX" not in str(raised.value)


def test_secrets_come_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-a-file\n")
    (tmp_path / "slack").write_text("https://hooks.slack.example/services/T/B/X\n")
    monkeypatch.setenv("SAMOPS_COMMIT_STATUS", "gitea")
    monkeypatch.setenv("SAMOPS_COMMIT_STATUS_REPO", "team/bots")
    monkeypatch.setenv("SAMOPS_COMMIT_STATUS_API", "https://gitea.example/api/v1")
    monkeypatch.setenv("SAMOPS_GIT_HOST_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("SAMOPS_NOTIFY_SLACK_URL_FILE", str(tmp_path / "slack"))
    status, slack = outbound_targets(None, reconciles=True, console_url="http://127.0.0.1:8080/")
    assert isinstance(status, CommitStatus)
    assert status.token == "from-a-file"
    assert isinstance(slack, Slack)
    assert slack.url == "https://hooks.slack.example/services/T/B/X"
    assert repr(slack) == "Slack(<incoming webhook>)"
    monkeypatch.setenv("SAMOPS_GIT_HOST_TOKEN", "also-set")
    with pytest.raises(OutboundSettingsError, match="both set"):
        outbound_targets(None, reconciles=True)


def test_a_commit_status_is_what_each_host_documents() -> None:
    github = CommitStatus("github", "https://api.github.com", "team/bots", "tok", "https://c/")
    request = github.request(FAILED)
    assert request is not None
    assert request.url == f"https://api.github.com/repos/team/bots/statuses/{'a' * 40}"
    assert request.headers["Authorization"] == "Bearer tok"
    body = json.loads(request.body)
    assert body["state"] == "failure"
    assert body["context"] == "samops"
    assert body["target_url"] == "https://c/#history"
    assert body["description"].startswith(
        "could not apply aaaaaaaaaaaa (invalid): 1 error: m.yaml:4:7:"
    )
    gitlab = CommitStatus("gitlab", "https://gl/api/v4", "group/sub/bots", "tok")
    request = gitlab.request(Event("sync_started", "info", "", "b" * 40))
    assert request is not None
    assert request.url == f"https://gl/api/v4/projects/group%2Fsub%2Fbots/statuses/{'b' * 40}"
    assert request.headers["PRIVATE-TOKEN"] == "tok"
    assert json.loads(request.body)["state"] == "running"
    assert gitlab.request(Event("budget_warning", "warning", "x")) is None


def test_webhooks_are_signed_and_slack_text_cannot_become_markup() -> None:
    request = Webhook("https://hooks.example/x", "s3cret").request(FAILED)
    assert request is not None
    expected = hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Samops-Signature"] == f"sha256={expected}"
    assert json.loads(request.body)["kind"] == "sync_failed"
    slack = Slack("https://hooks.slack.example/T/B/X").request(FAILED)
    assert slack is not None
    text = slack.body.decode()
    assert "&lt;b&gt;unknown&lt;/b&gt; key &amp; more" in text
    assert "<b>" not in text
    assert Webhook("https://h/x").request(Event("sync_started", "info", "", "c" * 40)) is None


def test_samops_run_refuses_a_wrong_setting_before_it_starts(
    git_repo: GitRepo, tmp_path: Path
) -> None:
    git_repo.commit("empty")
    done = subprocess.run(
        [SAMOPS, "run", "--repo", str(git_repo.root)],
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "SAMOPS_DATA_DIR": str(tmp_path / "data"),
            "SAMOPS_COMMIT_STATUS": "bitbucket",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "SAMOPS_COMMIT_STATUS is 'bitbucket'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was created
