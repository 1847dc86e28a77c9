"""Serving HTTPS: the server's TLS context from a certificate and key in PEM files.

Entry point helper (``serve/cli_options.py`` checks the files before anything starts; every
serving process builds its context from the same paths at start-up, ``serve/server.py``).
Without TLS, samops serves plain HTTP, as behind a proxy that ends TLS (docs/daemon.md, TLS).
A renewed certificate is picked up without a restart (``CertificateReloader``).
The console's session cookie is ``Secure`` whenever the browser's request came over TLS: to
samops directly, or to a proxy that says so in ``X-Forwarded-Proto`` or ``Forwarded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl

import click
from aiohttp import web

log = logging.getLogger("samops.serve")


class TlsFilesError(ValueError):
    """TLS files that cannot serve; the text names them, never their content."""


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 or newer, Python's default ciphers) with the
    certificate chain in ``cert`` and its private key in ``key``; a file that cannot serve is
    a usage error naming it (never quoting it: the key is a secret)."""
    try:
        return _context(cert, key)
    except TlsFilesError as exc:
        raise click.UsageError(str(exc)) from None


def _context(cert: str, key: str) -> ssl.SSLContext:
    """``server_context``, its problems as ``TlsFilesError``."""
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            with open(path, "rb") as file:
                file.read(1)
        except OSError as exc:
            raise TlsFilesError(
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
            else "they are not a PEM certificate chain and the private key that matches it "
            "(hint: the server's certificate first, then its intermediates)"
        )
        raise TlsFilesError(f"--tls-cert {cert}, --tls-key {key}: {why}") from None
    return context


class CertificateReloader:
    """Serves a renewed certificate without a restart (cert-manager, certbot and the like
    replace the files): every ``interval`` seconds the two files' sizes and modification
    times are compared with the last loaded; when they changed, the pair is checked in a
    context of its own first, then loaded into the serving one, so new connections get it
    (connections already open keep theirs). A pair that does not serve (half written, a key
    that does not match) is logged once and the certificate in use is kept."""

    def __init__(self, context: ssl.SSLContext, cert: str, key: str, interval: float) -> None:
        self.context, self.cert, self.key, self.interval = context, cert, key, interval
        self._loaded = self._stamp()

    def _stamp(self) -> tuple[tuple[int, int], ...] | None:
        try:
            return tuple(
                (stat.st_mtime_ns, stat.st_size) for stat in map(os.stat, (self.cert, self.key))
            )
        except OSError:
            return None

    def check(self) -> None:
        """Reload the pair when its files changed since it was last looked at."""
        stamp = self._stamp()
        if stamp is None or stamp == self._loaded:
            return
        self._loaded = stamp  # a pair that fails is told once, not every interval
        try:
            _context(self.cert, self.key)
        except TlsFilesError as exc:
            log.warning("TLS: the files changed but %s; serving the certificate in use", exc)
            return
        try:  # the files may have changed again since the check: never a passphrase prompt
            self.context.load_cert_chain(self.cert, self.key, password=lambda: b"")
        except ssl.SSLError:
            log.warning("TLS: the files changed while being read; reading them again next time")
            self._loaded = None
            return
        log.info("TLS: certificate reloaded", extra={"cert": self.cert})

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
            if not stop.is_set():
                await asyncio.to_thread(self.check)


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
