"""Serving HTTPS: the server's TLS context from a certificate and key in PEM files.

Entry point helper (``serve/cli_options.py`` checks the files before anything starts; every
serving process builds its context from the same paths at start-up, ``serve/server.py``).
Without TLS, samops serves plain HTTP, as behind a proxy that ends TLS (docs/daemon.md, TLS).
The console's session cookie is ``Secure`` whenever the browser's request came over TLS: to
samops directly, or to a proxy that says so in ``X-Forwarded-Proto`` or ``Forwarded``.
"""

from __future__ import annotations

import ssl

import click
from aiohttp import web


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 or newer, Python's default ciphers) with the
    certificate chain in ``cert`` and its private key in ``key``; a file that cannot serve is
    a usage error naming it (never quoting it: the key is a secret)."""
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            with open(path, "rb") as file:
                file.read(1)
        except OSError as exc:
            raise click.UsageError(
                f"{option} {path}: cannot read it: {exc.strerror} (hint: a PEM file this "
                "process can read)"
            ) from None
    encrypted = False

    def no_password() -> bytes:
        nonlocal encrypted
        encrypted = True
        return b""

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key, password=no_password)
    except ssl.SSLError:
        why = (
            "the key is encrypted (hint: samops takes an unencrypted key, readable only by "
            "the user it runs as)"
            if encrypted
            else "they are not a PEM certificate chain and the private key that matches it (hint: "
            "the server's certificate first, then its intermediates)"
        )
        raise click.UsageError(f"--tls-cert {cert}, --tls-key {key}: {why}") from None
    return context


def came_over_tls(request: web.Request) -> bool:
    """Whether the browser's request came over TLS: to this server, or to a proxy in front
    that says so (``X-Forwarded-Proto: https``, RFC 7239 ``Forwarded: proto=https``). A
    client may claim it falsely, but only to make its own cookie stricter (a ``Secure``
    cookie is not sent back over plain HTTP), never to weaken one."""
    if request.secure:
        return True
    if request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower() == "https":
        return True
    forwarded = request.headers.get("Forwarded", "").split(",")[0]
    return any(
        part.strip().lower().replace('"', "") == "proto=https" for part in forwarded.split(";")
    )
