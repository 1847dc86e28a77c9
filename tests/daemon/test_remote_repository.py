"""``samops run --url`` follows a remote: pushes arrive by webhook or by polling, force-pushes
and an unreachable remote are handled, and webhook deliveries must be signed."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.conftest import GitRepo
from tests.daemon.conftest import DaemonProcess, set_role, wait_for

SECRET = "webhook-test-secret"
# Shaped like GitHub's and GitLab's push payloads (trimmed); their content is never trusted.
GITHUB_PUSH = json.dumps(
    {
        "ref": "refs/heads/main",
        "before": "0" * 40,
        "after": "1" * 40,
        "repository": {"full_name": "team/bots", "clone_url": "https://github.com/team/bots.git"},
        "pusher": {"name": "dev"},
        "commits": [{"id": "1" * 40, "message": "change"}],
    }
).encode()
GITLAB_PUSH = json.dumps(
    {
        "object_kind": "push",
        "ref": "refs/heads/main",
        "checkout_sha": "1" * 40,
        "project": {"path_with_namespace": "team/bots"},
        "total_commits_count": 1,
    }
).encode()


def github_headers(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),  # one per delivery, as GitHub sends them
        "X-Hub-Signature-256": f"sha256={digest}",
        "Content-Type": "application/json",
    }


def follow(
    start: Callable[..., DaemonProcess], bare: Path, *extra: str, poll: str = "3600"
) -> DaemonProcess:
    """``samops run`` following the bare remote's main branch."""
    return start(
        "--url", str(bare), "--ref", "main", "--path", "manifests", "--poll-interval", poll, *extra
    )


def test_push_then_webhook_applies_at_once(
    start_daemon: Callable[..., DaemonProcess], remote: tuple[GitRepo, Path]
) -> None:
    work, bare = remote
    daemon = follow(start_daemon, bare, "--webhook-secret", SECRET)
    daemon.applied(work.git("rev-parse", "HEAD"))
    pushed = set_role(work, "Pushed.")
    work.git("push", "--quiet", "origin", "main")

    code, body = daemon.request("POST", "/hooks/git", GITHUB_PUSH, github_headers(GITHUB_PUSH))

    assert (code, body) == (202, {"status": "accepted", "worker": 0})
    daemon.applied(pushed)


def test_push_is_found_by_polling_without_webhook(
    start_daemon: Callable[..., DaemonProcess], remote: tuple[GitRepo, Path]
) -> None:
    work, bare = remote
    daemon = follow(start_daemon, bare, poll="1")
    daemon.applied(work.git("rev-parse", "HEAD"))
    pushed = set_role(work, "Polled.")
    work.git("push", "--quiet", "origin", "main")
    daemon.applied(pushed)


def test_force_push_rewrites_what_is_served(
    start_daemon: Callable[..., DaemonProcess], remote: tuple[GitRepo, Path]
) -> None:
    work, bare = remote
    daemon = follow(start_daemon, bare, "--webhook-secret", SECRET)
    base = work.git("rev-parse", "HEAD")
    daemon.applied(base)  # else the first fetch may already see `ahead` (generation 1, not 2)
    ahead = set_role(work, "Will be rewritten.")
    work.git("push", "--quiet", "origin", "main")
    daemon.request("POST", "/hooks/git", GITHUB_PUSH, github_headers(GITHUB_PUSH))
    daemon.applied(ahead)

    work.git("reset", "--hard", "--quiet", base)
    rewritten = set_role(work, "History rewritten.")
    work.git("push", "--quiet", "--force", "origin", "main")
    daemon.request("POST", "/hooks/git", GITHUB_PUSH, github_headers(GITHUB_PUSH))

    status = daemon.applied(rewritten)
    assert status["generation"] == 3


def test_unreachable_remote_is_retried_while_serving(
    start_daemon: Callable[..., DaemonProcess], remote: tuple[GitRepo, Path]
) -> None:
    work, bare = remote
    daemon = follow(start_daemon, bare, "--webhook-secret", SECRET)
    first = work.git("rev-parse", "HEAD")
    daemon.applied(first)
    assert daemon.ready()["revision"] == first  # served, not only committed
    hidden = bare.with_name("moved.git")
    bare.rename(hidden)
    daemon.request("POST", "/hooks/git", GITHUB_PUSH, github_headers(GITHUB_PUSH))
    wait_for(
        lambda: (daemon.metric("samops_git_fetch_failures_total") or 0) >= 1, what="a failed fetch"
    )
    code, ready = daemon.request("GET", "/readyz")
    assert (code, ready.get("revision")) == (200, first), (ready, daemon.log.read_text()[-6000:])

    hidden.rename(bare)
    pushed = set_role(work, "Back online.")
    work.git("push", "--quiet", "origin", "main")
    # the retry with backoff finds it, no webhook needed; the backoff doubles while the
    # remote is away (0.5 s, 1 s, 2 s, ...), so on a busy machine the next try may be 10-20 s off
    daemon.applied(pushed, timeout=60)


def test_webhook_signatures(
    start_daemon: Callable[..., DaemonProcess], remote: tuple[GitRepo, Path]
) -> None:
    _, bare = remote
    daemon = follow(start_daemon, bare, "--webhook-secret", SECRET)
    post = daemon.request
    gitea = hmac.new(SECRET.encode(), GITHUB_PUSH, hashlib.sha256).hexdigest()
    cases = [
        (github_headers(GITHUB_PUSH), GITHUB_PUSH, 202),
        (github_headers(GITHUB_PUSH, "wrong-secret"), GITHUB_PUSH, 401),
        (github_headers(GITHUB_PUSH), GITHUB_PUSH + b" ", 401),  # body altered after signing
        ({"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET}, GITLAB_PUSH, 202),
        ({"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "guess"}, GITLAB_PUSH, 401),
        ({"X-Gitea-Signature": gitea}, GITHUB_PUSH, 202),
        ({"X-Samops-Signature": "sha256=" + gitea}, GITHUB_PUSH, 202),
        ({"Content-Type": "application/json"}, GITHUB_PUSH, 401),  # no signature at all
    ]
    for headers, body, expected in cases:
        code, answer = post("POST", "/hooks/git", body, headers)
        assert code == expected, (headers, answer)
        if code == 401:
            assert answer["error"]["code"] == "bad_signature"
    big = b"x" * (1024 * 1024 + 1)
    assert post("POST", "/hooks/git", big, github_headers(big))[0] == 413
    _, metrics = post("GET", "/metrics")
    assert 'samops_webhook_requests_total{provider="github",result="bad_signature"} 2.0' in metrics
    assert 'samops_webhook_requests_total{provider="unknown",result="bad_signature"} 1.0' in metrics
    assert 'samops_webhook_requests_total{provider="gitlab",result="accepted"} 1.0' in metrics


def test_webhook_is_off_without_a_secret(
    start_daemon: Callable[..., DaemonProcess], remote: tuple[GitRepo, Path]
) -> None:
    _, bare = remote
    daemon = start_daemon("--url", str(bare), "--ref", "main", "--poll-interval", "3600")
    code, answer = daemon.request("POST", "/hooks/git", GITHUB_PUSH, github_headers(GITHUB_PUSH))
    assert code == 404
    assert answer["error"]["code"] == "webhook_disabled"
