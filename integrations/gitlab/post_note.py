"""Post samops' plan as a merge-request note on GitLab, or update the note posted before.

The last step of ``samops-plan.gitlab-ci.yml``: the job runs ``samops plan --format markdown``,
then hands the markdown to this script, which keeps one note per merge request up to date.
The note is found by the marker line ``<!-- samops-plan -->`` that the markdown starts with:
an existing (non-system) note containing it is replaced (PUT), otherwise a note is created
(POST). Standard library only, so it runs on a bare ``python`` image with nothing installed;
it is a file of its own, not a snippet inside the YAML, so tests can run it against a local
server imitating GitLab's notes endpoints.

Everything it needs comes from GitLab's predefined variables (``CI_API_V4_URL``,
``CI_PROJECT_ID``, ``CI_MERGE_REQUEST_IID``) and a token with the ``api`` scope in
``SAMOPS_GITLAB_TOKEN``. The token is read from the environment only (never from the command
line, which job logs and process lists show) and never printed.

Errors: every failure of the HTTP exchange is translated into ``GitLabError`` in one place
(``_request``), with a sentence saying what to check; ``main`` prints it and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MARKER = "<!-- samops-plan -->"
TOKEN_VARIABLE = "SAMOPS_GITLAB_TOKEN"  # noqa: S105 (the variable's name, not a token)
PER_PAGE = 100
MAX_PAGES = 50
"""A merge request with more than 5,000 notes is not searched further (a new note is posted)."""
TIMEOUT_SECONDS = 30.0

HINTS = {
    401: f"the token was refused: check that {TOKEN_VARIABLE} is set to a current project or "
    "personal access token",
    403: f"the token may not do this: {TOKEN_VARIABLE} needs the 'api' scope and at least the "
    "Reporter role on the project",
    404: "the project or merge request was not found, or the token cannot see it: check "
    "CI_PROJECT_ID and CI_MERGE_REQUEST_IID (the job must run in a merge request pipeline)",
}


class GitLabError(Exception):
    """The notes API could not be used; the message says what to check."""


class Notes:
    """The notes of one merge request, through GitLab's REST API (v4)."""

    def __init__(self, *, api_url: str, project: str, merge_request: str, token: str) -> None:
        project_id = urllib.parse.quote(project, safe="")
        self.url = (
            f"{api_url.rstrip('/')}/projects/{project_id}/merge_requests/{merge_request}/notes"
        )
        self._token = token

    def _request(
        self, method: str, url: str, body: Mapping[str, str] | None = None
    ) -> tuple[Any, Mapping[str, str]]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (http(s) only: checked in main)
        request.add_header("PRIVATE-TOKEN", self._token)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
                return json.loads(response.read() or b"null"), dict(response.headers.items())
        except urllib.error.HTTPError as exc:
            detail = _message(exc.read())
            hint = HINTS.get(exc.code, "see GitLab's answer above")
            raise GitLabError(
                f"GitLab answered {exc.code} to {method} {url}{detail}; {hint}"
            ) from exc
        except urllib.error.URLError as exc:
            raise GitLabError(
                f"cannot reach GitLab at {url}: {exc.reason}; check CI_API_V4_URL"
            ) from exc
        except (TimeoutError, json.JSONDecodeError) as exc:
            raise GitLabError(f"{method} {url} failed: {exc}; GitLab may be unavailable") from exc

    def find_marked(self) -> int | None:
        """The id of the oldest user note containing the marker, if any."""
        page: str | None = "1"
        for _ in range(MAX_PAGES):
            if not page:
                return None
            query = urllib.parse.urlencode(
                {"per_page": PER_PAGE, "page": page, "sort": "asc", "order_by": "created_at"}
            )
            notes, headers = self._request("GET", f"{self.url}?{query}")
            found = marked_note(notes)
            if found is not None:
                return found
            page = {k.lower(): v for k, v in headers.items()}.get("x-next-page")
        return None

    def update(self, note_id: int, body: str) -> None:
        self._request("PUT", f"{self.url}/{note_id}", {"body": body})

    def create(self, body: str) -> int:
        note, _ = self._request("POST", self.url, {"body": body})
        return int(note["id"]) if isinstance(note, dict) and "id" in note else 0


def marked_note(notes: object) -> int | None:
    """The id of the first note of a page that is not a system note and holds the marker."""
    if not isinstance(notes, list):
        raise GitLabError(f"GitLab's list of notes is not a list: {str(notes)[:80]!r}")
    for note in notes:
        if (
            isinstance(note, dict)
            and not note.get("system", False)
            and MARKER in str(note.get("body", ""))
        ):
            return int(note["id"])
    return None


def post_plan(notes: Notes, body: str) -> str:
    """Update the marked note, or create one; return a line saying which."""
    if MARKER not in body:
        body = f"{MARKER}\n{body}"
    note_id = notes.find_marked()
    if note_id is None:
        return f"created note {notes.create(body)}"
    notes.update(note_id, body)
    return f"updated note {note_id}"


def _message(raw: bytes) -> str:
    """GitLab's own explanation from an error body, shortened, or nothing."""
    try:
        payload = json.loads(raw)
    except ValueError:
        return ""
    if isinstance(payload, dict):
        text = payload.get("message") or payload.get("error") or ""
        return f" ({str(text)[:200]})" if text else ""
    return ""


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        description="Post samops' plan markdown as a GitLab merge-request note, or update the "
        f"note holding {MARKER}. The token is read from ${TOKEN_VARIABLE}."
    )
    parser.add_argument("body", type=Path, help="the markdown file written by samops plan")
    parser.add_argument("--api-url", default=env("CI_API_V4_URL"), help="default $CI_API_V4_URL")
    parser.add_argument("--project", default=env("CI_PROJECT_ID"), help="default $CI_PROJECT_ID")
    parser.add_argument(
        "--merge-request",
        default=env("CI_MERGE_REQUEST_IID"),
        help="the merge request's IID, default $CI_MERGE_REQUEST_IID",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    token = os.environ.get(TOKEN_VARIABLE, "")
    missing = [
        name
        for name, value in (
            ("CI_API_V4_URL (--api-url)", args.api_url),
            ("CI_PROJECT_ID (--project)", args.project),
            ("CI_MERGE_REQUEST_IID (--merge-request)", args.merge_request),
            (TOKEN_VARIABLE, token),
        )
        if not value
    ]
    if missing:
        print(
            f"post_note: {', '.join(missing)} not set. Run in a merge request pipeline, and add "
            f"{TOKEN_VARIABLE} as a masked CI/CD variable holding an access token with the 'api' "
            "scope. The plan is in the job log above.",
            file=sys.stderr,
        )
        return 1
    if urllib.parse.urlsplit(args.api_url).scheme not in ("http", "https"):
        print(f"post_note: CI_API_V4_URL {args.api_url!r} is not an http(s) URL", file=sys.stderr)
        return 1
    try:
        body = args.body.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"post_note: cannot read the plan: {exc}", file=sys.stderr)
        return 1
    notes = Notes(
        api_url=args.api_url, project=args.project, merge_request=args.merge_request, token=token
    )
    try:
        print(f"post_note: {post_plan(notes, body)} on merge request !{args.merge_request}")
    except GitLabError as exc:
        print(f"post_note: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
