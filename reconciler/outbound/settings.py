"""The operator's outbound configuration, from the environment: which targets, with which
secrets.

Entry-point support (``samops run`` and ``samops serve`` read it at start-up, and every worker
process reads the same environment). Tokens and webhook URLs are secrets: they come from an
environment variable or from a file named by its ``*_FILE`` twin, never from a command line.

    SAMOPS_COMMIT_STATUS          github | gitlab | gitea (default off)
    SAMOPS_COMMIT_STATUS_REPO     owner/name (GitLab: the project's path); default: the
                                  followed remote's path
    SAMOPS_COMMIT_STATUS_API      the API's base URL; default: api.github.com for github.com,
                                  https://<host>/api/v4 (GitLab), https://<host>/api/v1 (Gitea)
    SAMOPS_GIT_HOST_TOKEN[_FILE]  the token that may post statuses
    SAMOPS_NOTIFY_WEBHOOKS        generic webhook URLs, separated by commas
    SAMOPS_NOTIFY_WEBHOOK_SECRET[_FILE]  signs their bodies (X-Samops-Signature)
    SAMOPS_NOTIFY_SLACK_URL[_FILE]       a Slack-compatible incoming webhook
    SAMOPS_CONSOLE_URL            the console's address, for links (default: the address
                                  the server listens on)

A wrong setting is an ``OutboundSettingsError``: a sentence naming the variable and a hint.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

from reconciler.errors import PermanentError
from reconciler.outbound.targets import CommitStatus, Slack, Target, Webhook
from reconciler.settings import setting

HOSTS = ("github", "gitlab", "gitea")
MAX_SECRET_FILE_BYTES = 64 * 1024
SCP_LIKE = re.compile(r"^[\w.-]+@(?P<host>[\w.-]+):(?P<path>.+)$")


class OutboundSettingsError(PermanentError):
    """A commit-status or notification setting is wrong."""


def _secret(name: str) -> str | None:
    value = setting(name)
    path = setting(f"{name}_FILE")
    if value and path:
        raise OutboundSettingsError(f"{name} and {name}_FILE are both set: set one of them")
    if path:
        try:
            raw = Path(path).read_bytes()[:MAX_SECRET_FILE_BYTES]
        except OSError as exc:
            raise OutboundSettingsError(
                f"{name}_FILE names {path!r}, which cannot be read ({exc.strerror})"
            ) from None
        return raw.decode(errors="replace").strip() or None
    return value or None


def _http_url(name: str, url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = f"{parts.scheme}://{parts.hostname}" if parts.hostname else repr(url[:30])
        raise OutboundSettingsError(
            f"{name} must hold http(s) URLs, not {shown} (hint: https://hooks.example.com/...)"
        )
    return url


def _remote(url: str | None) -> tuple[str, str] | None:
    """(host, path without .git) of a followed remote, when it has them."""
    if not url:
        return None
    scp = SCP_LIKE.match(url)
    if scp:
        host, path = scp["host"], scp["path"]
    else:
        parts = urllib.parse.urlsplit(url)
        if not parts.hostname:
            return None
        host, path = parts.hostname, parts.path
    path = path.strip("/").removesuffix(".git")
    return (host, path) if path else None


def commit_status_target(remote_url: str | None, console_url: str | None) -> CommitStatus | None:
    host = (setting("SAMOPS_COMMIT_STATUS") or "off").strip().lower()
    if host in ("", "off"):
        return None
    if host not in HOSTS:
        raise OutboundSettingsError(
            f"SAMOPS_COMMIT_STATUS is {host!r}: expected github, gitlab, gitea or off"
        )
    remote = _remote(remote_url)
    repository = setting("SAMOPS_COMMIT_STATUS_REPO") or (remote[1] if remote else None)
    if not repository:
        raise OutboundSettingsError(
            "SAMOPS_COMMIT_STATUS needs the repository: set SAMOPS_COMMIT_STATUS_REPO "
            "(owner/name), or follow a remote with --url"
        )
    api = setting("SAMOPS_COMMIT_STATUS_API")
    if not api:
        if remote is None:
            raise OutboundSettingsError(
                "SAMOPS_COMMIT_STATUS needs the host's API: set SAMOPS_COMMIT_STATUS_API "
                "(e.g. https://api.github.com), or follow a remote with --url"
            )
        domain = remote[0]
        api = {
            "github": "https://api.github.com"
            if domain == "github.com"
            else f"https://{domain}/api/v3",
            "gitlab": f"https://{domain}/api/v4",
            "gitea": f"https://{domain}/api/v1",
        }[host]
    token = _secret("SAMOPS_GIT_HOST_TOKEN")
    if not token:
        raise OutboundSettingsError(
            "SAMOPS_COMMIT_STATUS needs a token that may post statuses: set "
            "SAMOPS_GIT_HOST_TOKEN or SAMOPS_GIT_HOST_TOKEN_FILE"
        )
    return CommitStatus(
        host, _http_url("SAMOPS_COMMIT_STATUS_API", api), repository, token, console_url
    )


def notification_targets(console_url: str | None) -> list[Target]:
    targets: list[Target] = []
    secret = _secret("SAMOPS_NOTIFY_WEBHOOK_SECRET")
    urls = [u.strip() for u in (setting("SAMOPS_NOTIFY_WEBHOOKS") or "").split(",") if u.strip()]
    for index, url in enumerate(urls):
        name = "webhook" if index == 0 else f"webhook{index + 1}"
        targets.append(Webhook(_http_url("SAMOPS_NOTIFY_WEBHOOKS", url), secret, name))
    slack = _secret("SAMOPS_NOTIFY_SLACK_URL")
    if slack:
        targets.append(Slack(_http_url("SAMOPS_NOTIFY_SLACK_URL", slack), console_url))
    return targets


def outbound_targets(
    remote_url: str | None, *, reconciles: bool, console_url: str | None = None
) -> list[Target]:
    """Every configured target; commit statuses only where revisions are applied
    (``reconciles``: ``samops run``). Links go to ``SAMOPS_CONSOLE_URL``, else to
    ``console_url`` (the address the server listens on)."""
    console_url = setting("SAMOPS_CONSOLE_URL") or console_url
    if console_url:
        _http_url("SAMOPS_CONSOLE_URL", console_url)
    targets = notification_targets(console_url)
    status = commit_status_target(remote_url, console_url) if reconciles else None
    return [status, *targets] if status is not None else targets
