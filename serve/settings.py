"""The server's settings, one typed object per concern, every field with its unit and default.

Serve stage. What the command line and the environment set (``serve/cli_options.py`` names
the options and their ``SAMOPS_*`` variables; ``reconciler/settings.py`` lists every variable)
arrives here as values; nothing below reads the environment except ``UpstreamEnvironment``,
the one place that reads ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL``.

- ``ServerOptions``: listening, workers, logging, protection (and ``FollowerSpec``, what the
  workers preview from);
- ``ChatSettings``: the bounds of one chat request and turn;
- ``ProviderSettings``: how upstream models are called;
- ``ServingSettings`` and ``FunctionSettings``: what compiled clients and built-in functions
  need on this host.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reconciler.api import setting

BODY_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_TOOL_ROUNDS = 4
DEFAULT_MAX_TOOL_CALLS_PER_ROUND = 16
"""Calls of one round that run; the model is told the others did not (an upstream once asked
for 150 at a time, all sent to one API host at once)."""
DEFAULT_MAX_CONCURRENT_TOOL_CALLS = 4
"""Calls of one round that run at the same time."""


@dataclass(frozen=True)
class FunctionSettings:
    """Where ``get_current_weather`` asks, and how long it waits (tests use a local server)."""

    geocoding_url: str = "https://geocoding-api.open-meteo.com/v1/search"
    """Open-Meteo's geocoding search: place name to coordinates."""
    forecast_url: str = "https://api.open-meteo.com/v1/forecast"
    """Open-Meteo's forecast: current conditions at coordinates."""
    timeout_seconds: float = 10.0
    """Total time allowed for each HTTP request, in seconds."""


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    openai_base_url: str | None = None
    """URL of the built-in ``openai`` provider (None: OpenAI's public API)."""
    openai_api_key: str | None = None
    """Key of the built-in ``openai`` provider (held in memory only)."""
    timeout_seconds: float = 60.0
    """Seconds one upstream call may take (default 60)."""
    max_retries: int = 2
    """Retries of a failed upstream call, with the SDK's backoff (default 2)."""


@dataclass(frozen=True, slots=True)
class ChatSettings:
    max_body_bytes: int = 1024 * 1024
    """Largest chat request body, in bytes (default 1 MiB); larger ones get 413."""
    body_timeout_seconds: float = BODY_TIMEOUT_SECONDS
    """Seconds a request body may take to arrive (default 30); then 408."""
    max_messages: int = 200
    """Most messages in one request (default 200)."""
    max_history_messages: int = 100
    """Most earlier messages of a session sent upstream with a new prompt (the newest)."""
    max_history_chars: int = 200_000
    """Most characters of earlier messages sent upstream (the newest, whole messages)."""
    max_tool_calls_per_round: int = DEFAULT_MAX_TOOL_CALLS_PER_ROUND
    """Tool calls of one round that run (default 16); the model is told of the others."""
    max_concurrent_tool_calls: int = DEFAULT_MAX_CONCURRENT_TOOL_CALLS
    """Tool calls of one round that run at the same time (default 4)."""
    deadline_seconds: float = 120.0
    """Seconds a whole turn may take, tool rounds included (default 120)."""
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS
    """Most tool rounds in one turn (default 4)."""
    account_number: str = "0000-0000-0000"
    """Smarter account number of host-based prompt routes."""
    api_domain: str = "localhost"
    """Domain of host-based prompt routes (``{client}.{account}.api.{domain}``)."""


@dataclass
class ServingSettings:
    data_dir: Path = Path("data")
    """Relative SQLite paths of SqlConnections are read from here."""
    functions: FunctionSettings = field(default_factory=FunctionSettings)
    """What the built-in functions reach and how long they wait."""


@dataclass(frozen=True, slots=True)
class FollowerSpec:
    """The followed source, so that a worker can preview refs as the primary does."""

    path: str | None = None
    """A directory of manifests (PATH), or None."""
    repo: str | None = None
    """A local git repository (--repo), or None."""
    url: str | None = None
    """A remote git repository (--url), or None."""
    ref: str = "HEAD"
    """The ref followed (default HEAD; with a URL, the branch)."""
    subpath: str = ""
    """The folder of the manifests in the repository ("" for all of it)."""

    def where(self) -> str:
        """The repository or folder, for a person: a remote URL without its credentials."""
        if self.url is not None:
            parts = urllib.parse.urlsplit(self.url)
            return parts._replace(netloc=parts.hostname or "").geturl()
        return os.path.abspath(self.repo or self.path or ".")


@dataclass(frozen=True, slots=True)
class ServerOptions:
    host: str
    """Address to listen on (default 127.0.0.1)."""
    port: int
    """Port to listen on (default 8080; 0 picks a free one)."""
    webhook_secret: str | None
    """A secret: never in the JSON form (workers read it from the environment)."""
    chat: ChatSettings
    """The bounds of chat requests and turns."""
    demo: bool = False
    """Also serve the example's demo API (``make run``)."""
    admin_key_digest: str | None = None
    """Enables the preview route (``serve/preview.py``) for the key with this digest."""
    viewer_key_digest: str | None = None
    """Signs in to the console read-only (``serve/console/sessions.py``)."""
    console: bool = True
    """Serve the web console at ``/``."""
    console_key_digest: str | None = None
    """The digest of the sign-in key ``samops run`` made for itself (no admin key, loopback)."""
    protect: tuple[str, ...] = ()
    """Operational endpoints (``status``, ``metrics``) that require that key."""
    workers: int = 1
    """Server processes on the port (``serve/workers.py``); 1 is this process alone."""
    keepalive_timeout: float = 15.0
    """Seconds a connection may stay idle or take to send its headers."""
    max_connections: int = 1000
    """Connections open at once, per process."""
    log_format: str = "text"
    """``text`` or ``json`` (default text)."""
    log_level: str = "info"
    """``debug``, ``info``, ``warning`` or ``error`` (default info)."""
    follower: FollowerSpec | None = None
    """What the workers preview refs from (the primary's follower)."""
    allow_plaintext_secrets: bool = False
    """Accept plaintext Secret values when previewing refs."""
    tls_cert: str | None = None
    """PEM certificate chain: serve HTTPS (``serve/tls.py``); with ``tls_key``."""
    tls_key: str | None = None
    """PEM private key of ``tls_cert`` (unencrypted; a path, never its content)."""
    tls_reload_seconds: float = 60.0
    """Seconds between looks at the TLS files for a renewed certificate (``serve/tls.py``)."""

    @property
    def scheme(self) -> str:
        """``https`` when serving TLS, else ``http``."""
        return "https" if self.tls_cert else "http"

    def url(self, port: int) -> str:
        """This server's base URL on ``port``, ending in ``/``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{port}/"

    def to_data(self) -> dict[str, Any]:
        """JSON-ready, without the webhook secret."""
        return asdict(self) | {"webhook_secret": None}

    @classmethod
    def from_data(cls, data: dict[str, Any], *, webhook_secret: str | None) -> ServerOptions:
        follower = data.get("follower")
        return cls(
            **data
            | {
                "webhook_secret": webhook_secret,
                "chat": ChatSettings(**data["chat"]),
                "follower": FollowerSpec(**follower) if follower else None,
                "protect": tuple(data.get("protect", ())),
            }
        )


@dataclass(frozen=True, slots=True)
class UpstreamEnvironment:
    """The built-in ``openai`` provider's key and URL, as the environment sets them."""

    api_key: str | None
    """``OPENAI_API_KEY``; without it the offline demo model answers (``serve/offline.py``)."""
    base_url: str | None
    """``OPENAI_BASE_URL`` (default: OpenAI's public API)."""

    @property
    def offline(self) -> bool:
        return not self.api_key

    @classmethod
    def read(cls) -> UpstreamEnvironment:
        return cls(setting("OPENAI_API_KEY") or None, setting("OPENAI_BASE_URL"))
