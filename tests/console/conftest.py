"""A real ``samops run`` with the console on, its keys, and a cookie-keeping HTTP client."""

from __future__ import annotations

import http.cookiejar
import json
import secrets
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from reconciler.apikeys import digest_of
from tests.conftest import GitRepo
from tests.daemon.conftest import DaemonProcess, repo, start_daemon  # noqa: F401 - fixtures

STACKADEMY_TOKEN = "stackademy-token-never-shown-" + "x" * 8


@dataclass(frozen=True)
class Keys:
    admin: str
    viewer: str


@pytest.fixture
def keys() -> Keys:
    return Keys(admin=secrets.token_urlsafe(24), viewer=secrets.token_urlsafe(24))


@dataclass
class Console:
    """The daemon, its repository and keys."""

    daemon: DaemonProcess
    repo: GitRepo
    keys: Keys

    @property
    def base(self) -> str:
        return self.daemon.base

    def client(self) -> ConsoleClient:
        return ConsoleClient(self.base, self.daemon.tls)


def start_console(
    start: Callable[..., DaemonProcess],
    followed: GitRepo,
    keys: Keys,
    *,
    env: dict[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
) -> Console:
    """``samops run`` (``start``: the ``start_daemon`` fixture) following ``followed`` with
    the console's two keys, its first revision served."""
    daemon = start(
        "--repo",
        str(followed.root),
        "--path",
        "manifests",
        "--admin-key-digest",
        digest_of(keys.admin),
        "--viewer-key-digest",
        digest_of(keys.viewer),
        env={
            "STACKADEMY_API_TOKEN": STACKADEMY_TOKEN,
            "SAMOPS_SECRETS_ENV": "STACKADEMY_API_TOKEN",
            **(env or {}),
        },
        tls=tls,
    )
    daemon.applied(followed.git("rev-parse", "HEAD"))
    daemon.ready()
    return Console(daemon, followed, keys)


@pytest.fixture
def console(
    start_daemon: Callable[..., DaemonProcess],  # noqa: F811
    repo: GitRepo,  # noqa: F811
    keys: Keys,
) -> Console:
    return start_console(start_daemon, repo, keys)


class ConsoleClient:
    """A browser-like client: keeps the session cookie, sends the CSRF token it was given."""

    def __init__(self, base: str, tls: ssl.SSLContext | None = None) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), urllib.request.HTTPSHandler(context=tls)
        )
        self.csrf: str | None = None
        self.last_headers: dict[str, str] = {}

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        csrf: bool = True,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        headers = dict(headers or {})
        if body is not None:
            headers["Content-Type"] = "application/json"
        if csrf and self.csrf and method != "GET":
            headers["X-CSRF-Token"] = self.csrf
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - always 127.0.0.1
            self.base + path, data=data, method=method, headers=headers
        )
        try:
            with self.opener.open(request, timeout=20) as response:
                raw, status = response.read(), response.status
                self.last_headers = dict(response.headers)
                kind = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
            self.last_headers = dict(error.headers)
            kind = error.headers.get("Content-Type", "")
        return status, json.loads(raw) if "json" in kind else raw.decode()

    def sign_in(self, key: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        status, session = self.call("POST", "/console/api/session", {"key": key}, headers=headers)
        assert status == 200, session
        self.csrf = session["csrf"]
        return dict(session)
