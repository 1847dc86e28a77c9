"""The command-line options ``samops run`` and ``samops serve`` share, and their checks.

Entry point helpers: each option names its environment variable (``SAMOPS_*``) and its unit
and default in its help; values are checked here, so a bad one is a usage error before
anything starts.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import click

from reconciler.api import env_option
from reconciler.sam.kinds import DIGEST_PATTERN
from serve.settings import ChatSettings, ServerOptions
from serve.tls import server_context


def server_options(command: Callable[..., None]) -> Callable[..., None]:
    """Listening and chat options shared by ``run`` and ``serve``, handed to the command as
    one ``server: ServerOptions``."""
    options = [
        env_option(
            "--admin-key-digest",
            callback=lambda _ctx, _param, value: _digest(value),
            help="Digest (sha256:<hex>) of the admin key that may use the preview route, "
            "POST /api/v1/preview/llm-clients/{name}/prompt/ (off without it), and the "
            "--protect endpoints. Make one with `samops keys create admin`.",
        ),
        env_option(
            "--viewer-key-digest",
            callback=lambda _ctx, _param, value: _digest(value),
            help="Digest (sha256:<hex>) of a key that signs in to the console read-only "
            "(docs/console.md). Make one with `samops keys create viewer`.",
        ),
        env_option(
            "--console",
            type=click.Choice(["on", "off"]),
            default="on",
            help="The web console at / (docs/console.md). Without --admin-key-digest, "
            "`samops run` on a loopback address prints a sign-in link of its own.",
        ),
        env_option(
            "--protect",
            default="",
            callback=lambda _ctx, _param, value: _protected(value),
            metavar="status,metrics",
            help="Operational endpoints that require the admin key (Authorization: Bearer): "
            "status (/api/v1/status), metrics (/metrics); needs --admin-key-digest.",
        ),
        env_option("--host", default="127.0.0.1", help="Address to listen on."),
        env_option("--port", default=8080, type=int, help="Port to listen on."),
        env_option(
            "--tls-cert",
            type=click.Path(dir_okay=False),
            help="PEM certificate chain (the server's first): serve HTTPS; with --tls-key. "
            "Without them samops serves plain HTTP, as behind a proxy that ends TLS.",
        ),
        env_option(
            "--tls-key",
            type=click.Path(dir_okay=False),
            help="PEM private key of --tls-cert, unencrypted (keep the file readable only by "
            "samops' user).",
        ),
        env_option(
            "--tls-reload-interval",
            default=60.0,
            type=click.FloatRange(min=0.1),
            help="Seconds between looks at the TLS files: a renewed certificate is served "
            "without a restart.",
        ),
        env_option(
            "--account-number",
            default="0000-0000-0000",
            help="Smarter account number of host-based routes (<client>.<account>.api.<domain>).",
        ),
        env_option("--api-domain", default="localhost", help="Domain of host-based routes."),
        env_option(
            "--workers",
            default=1,
            type=click.IntRange(1, 64),
            help="Server processes sharing the port (SO_REUSEPORT, Linux). Each is one event "
            "loop on one core; the first also reconciles, the others serve from the database. "
            "About one per core.",
        ),
        env_option(
            "--keepalive-timeout",
            default=15.0,
            type=click.FloatRange(min=0.1),
            help="Seconds a connection may stay idle, or take to send a request's headers, "
            "before it is closed.",
        ),
        env_option(
            "--body-timeout",
            default=30.0,
            type=click.FloatRange(min=0.1),
            help="Seconds a request's body may take to arrive (then 408).",
        ),
        env_option(
            "--max-connections",
            default=1000,
            type=click.IntRange(1),
            help="Connections open at once, per process; more are closed at once.",
        ),
        env_option(
            "--max-tool-rounds",
            default=4,
            type=click.IntRange(0, 20),
            help="Most tool rounds in one chat turn.",
        ),
        env_option("--log-format", type=click.Choice(["text", "json"]), default="text", help=""),
        env_option(
            "--log-level",
            default="info",
            type=click.Choice(["debug", "info", "warning", "error"]),
            help="",
        ),
    ]

    @functools.wraps(command)
    def with_server_options(
        *args: Any,
        host: str,
        port: int,
        account_number: str,
        api_domain: str,
        workers: int,
        max_tool_rounds: int,
        keepalive_timeout: float,
        body_timeout: float,
        max_connections: int,
        log_format: str,
        log_level: str,
        admin_key_digest: str | None,
        viewer_key_digest: str | None,
        console: str,
        protect: tuple[str, ...],
        tls_cert: str | None,
        tls_key: str | None,
        tls_reload_interval: float,
        **kwargs: Any,
    ) -> None:
        needs_admin_key(protect, admin_key_digest)
        check_tls(tls_cert, tls_key)
        server = ServerOptions(
            host,
            port,
            None,
            chat_settings(account_number, api_domain, max_tool_rounds, body_timeout),
            keepalive_timeout=keepalive_timeout,
            max_connections=max_connections,
            admin_key_digest=admin_key_digest,
            viewer_key_digest=viewer_key_digest,
            console=console == "on",
            protect=protect,
            workers=workers,
            log_format=log_format,
            log_level=log_level,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_reload_seconds=tls_reload_interval,
        )
        command(*args, server=server, **kwargs)

    wrapped: Callable[..., None] = with_server_options
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped


def chat_settings(
    account_number: str, api_domain: str, max_tool_rounds: int, body_timeout: float
) -> ChatSettings:
    return ChatSettings(
        account_number=account_number,
        api_domain=api_domain.lower(),
        max_tool_rounds=max_tool_rounds,
        body_timeout_seconds=body_timeout,
    )


PROTECTABLE = ("status", "metrics")


def _protected(value: str) -> tuple[str, ...]:
    names = tuple(sorted({n.strip() for n in value.split(",") if n.strip()}))
    unknown = [n for n in names if n not in PROTECTABLE]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}: expected some of {', '.join(PROTECTABLE)}")
    return names


def needs_admin_key(protect: tuple[str, ...], admin_key_digest: str | None) -> None:
    if protect and admin_key_digest is None:
        raise click.UsageError("--protect needs --admin-key-digest (the key that may read them)")


def check_tls(cert: str | None, key: str | None) -> None:
    """Both TLS files or neither, and they serve (checked before anything starts)."""
    if bool(cert) != bool(key):
        raise click.UsageError("--tls-cert and --tls-key go together: give both, or neither")
    if cert and key:
        server_context(cert, key)


def _digest(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not re.fullmatch(DIGEST_PATTERN, value.strip()):
        raise click.BadParameter(
            "expected sha256:<64 hex> or sha512:<128 hex> (the digest in the manifest that "
            "`samops keys create` prints, or `samops keys digest`), never the key itself"
        )
    return value.strip()
