"""Where events go, and in which words: commit statuses, generic webhooks, Slack.

Publish stage, after the fact. Each target turns an ``Event`` into one HTTP request (or none,
for an event it does not take); the dispatcher (``dispatch.py``) sends it, retries it and
counts it. The requests are those the hosts document:

- GitHub: ``POST {api}/repos/{owner}/{repo}/statuses/{sha}``, ``Authorization: Bearer``;
  states pending, success, failure, error.
- GitLab: ``POST {api}/projects/{url-encoded path}/statuses/{sha}``, ``PRIVATE-TOKEN``; states
  pending, running, success, failed, canceled.
- Gitea (and Forgejo): ``POST {api}/repos/{owner}/{repo}/statuses/{sha}``,
  ``Authorization: token``; states pending, success, error, failure, warning.
- A generic webhook: the event's JSON (``Event.to_json``), signed with HMAC-SHA256 of the body
  in ``X-Samops-Signature: sha256=<hex>``, with ``X-Samops-Event`` and ``X-Samops-Delivery``.
- A Slack-compatible incoming webhook: ``{"text", "blocks"}``, the text escaped as Slack's
  ``mrkdwn`` requires (``&``, ``<``, ``>``), so a manifest's text cannot become a link or a
  mention.

A commit status names the ``samops`` context and links to the console's history.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Protocol

from reconciler.outbound.events import NOTIFIED, Event

DESCRIPTION_CHARS = 140
"""GitHub refuses longer status descriptions."""
CONTEXT = "samops"


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    headers: dict[str, str]
    body: bytes


class Target(Protocol):
    @property
    def name(self) -> str:
        """The ``target`` label of the delivery metrics."""
        ...

    def request(self, event: Event) -> Request | None:
        """The request that tells this target of ``event``, or None (not for it)."""
        ...


def _json(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _short(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class CommitStatus:
    """A commit status on GitHub, GitLab or Gitea (``host``)."""

    host: str
    api: str
    """The API's base URL: https://api.github.com, https://gitlab.example/api/v4, ..."""
    repository: str
    """``owner/name`` (GitLab: the project's full path, or its numeric id)."""
    token: str
    console_url: str | None = None

    STATES = {
        "github": {"pending": "pending", "success": "success", "failure": "failure"},
        "gitlab": {"pending": "running", "success": "success", "failure": "failed"},
        "gitea": {"pending": "pending", "success": "success", "failure": "failure"},
    }

    @property
    def name(self) -> str:
        return self.host

    def __repr__(self) -> str:  # never the token
        return f"CommitStatus({self.host!r}, {self.api!r}, {self.repository!r})"

    def request(self, event: Event) -> Request | None:
        state = {
            "sync_started": "pending",
            "sync_succeeded": "success",
            "sync_recovered": "success",
            "sync_failed": "failure",
        }.get(event.kind)
        if state is None or not event.revision:
            return None
        description = {
            "pending": "samops is validating and applying this revision",
            "success": event.summary.removeprefix("samops recovered: ").removeprefix("samops: "),
            "failure": event.summary.removeprefix("samops "),
        }[state]
        target = f"{self.console_url.rstrip('/')}/#history" if self.console_url else None
        api = self.api.rstrip("/")
        sha = urllib.parse.quote(event.revision, safe="")
        if self.host == "gitlab":
            project = urllib.parse.quote(self.repository, safe="")
            url = f"{api}/projects/{project}/statuses/{sha}"
            headers = {"PRIVATE-TOKEN": self.token}
            body = {"state": self.STATES["gitlab"][state], "name": CONTEXT}
        else:
            owner_name = "/".join(
                urllib.parse.quote(p, safe="") for p in self.repository.split("/")
            )
            url = f"{api}/repos/{owner_name}/statuses/{sha}"
            if self.host == "github":
                headers = {
                    "Authorization": f"Bearer {self.token}",
                    "Accept": "application/vnd.github+json",
                    "X-GitHub-Api-Version": "2022-11-28",
                }
            else:
                headers = {"Authorization": f"token {self.token}"}
            body = {"state": self.STATES[self.host][state], "context": CONTEXT}
        body["description"] = _short(description)
        if target:
            body["target_url"] = target
        headers["Content-Type"] = "application/json"
        return Request(url, headers, _json(body))


@dataclass(frozen=True, slots=True)
class Webhook:
    """A generic webhook: the event's JSON, signed when a secret is set."""

    url: str
    secret: str | None = None
    name: str = "webhook"

    def __repr__(self) -> str:
        return f"Webhook({_without_query(self.url)!r})"

    def request(self, event: Event) -> Request | None:
        if event.kind not in NOTIFIED:
            return None
        body = _json(event.to_json())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "samops",
            "X-Samops-Event": event.kind,
            "X-Samops-Delivery": str(uuid.uuid4()),
        }
        if self.secret:
            digest = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Samops-Signature"] = f"sha256={digest}"
        return Request(self.url, headers, body)


def slack_escape(text: str) -> str:
    """Slack's mrkdwn control characters, escaped (its documented three)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


ICONS = {"info": ":large_green_circle:", "warning": ":warning:", "error": ":red_circle:"}


@dataclass(frozen=True, slots=True)
class Slack:
    """A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat)."""

    url: str
    console_url: str | None = None
    name: str = "slack"

    def __repr__(self) -> str:  # the URL is the secret
        return "Slack(<incoming webhook>)"

    def request(self, event: Event) -> Request | None:
        if event.kind not in NOTIFIED:
            return None
        text = f"{ICONS[event.severity]} {slack_escape(event.summary)}"
        blocks: list[dict[str, object]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}}
        ]
        errors = event.details.get("errors") or []
        if errors:
            listed = "\n".join(f"• `{slack_escape(line)}`" for line in errors)
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": listed}})
        context = [f"{event.kind}"]
        if event.revision:
            context.append(f"revision `{event.revision[:12]}`")
        if self.console_url:
            context.append(f"<{self.console_url.rstrip('/')}/#history|console>")
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]}
        )
        body = {"text": text, "blocks": blocks}
        return Request(self.url, {"Content-Type": "application/json"}, _json(body))


def _without_query(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts._replace(netloc=parts.hostname or "", query="").geturl()
