"""The settings one server process starts with: built by the composition root from the
command line (``serve/main.py``), and handed to its worker processes as JSON
(``serve/workers.py``), so a setting added here reaches every process of a group."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from serve.chat_routes import ChatSettings


@dataclass(frozen=True, slots=True)
class FollowerSpec:
    """The followed source, so that a worker can preview refs as the primary does."""

    path: str | None = None
    repo: str | None = None
    url: str | None = None
    ref: str = "HEAD"
    subpath: str = ""


@dataclass(frozen=True, slots=True)
class ServerOptions:
    host: str
    port: int
    webhook_secret: str | None
    """A secret: never in the JSON form (workers read it from the environment)."""
    chat: ChatSettings
    demo: bool = False
    admin_key_digest: str | None = None
    """Enables the preview route (``serve/preview.py``) for the key with this digest."""
    protect: tuple[str, ...] = ()
    """Operational endpoints (``status``, ``metrics``) that require that key."""
    workers: int = 1
    """Server processes on the port (``serve/workers.py``); 1 is this process alone."""
    keepalive_timeout: float = 15.0
    """Seconds a connection may stay idle or take to send its headers."""
    max_connections: int = 1000
    """Connections open at once, per process."""
    log_format: str = "text"
    log_level: str = "info"
    follower: FollowerSpec | None = None
    """What the workers preview refs from (the primary's follower)."""
    allow_plaintext_secrets: bool = False

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
