"""Reading a request body whole, up to a limit.

Serve stage, for every route that reads a body (the git webhook, chat). aiohttp's
``request.content.read(n)`` returns what has arrived so far, at most ``n`` bytes, not ``n``
bytes: a body that arrives in several packets would be cut short, so a webhook's signature
would be checked against part of the body, and a chat body would no longer be valid JSON.
``read_body`` reads to the end of the body, whatever its framing (``Content-Length`` or
chunked), and refuses a body that declares, or turns out to have, more bytes than allowed,
or that has not arrived whole within ``timeout`` seconds (a client that sends 9 bytes of a
100,000-byte body and waits would otherwise hold the connection and a handler for ever).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from serve.settings import BODY_TIMEOUT_SECONDS


class BodyTimeout(Exception):
    """The body did not arrive whole in time (answer 408)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request body did not arrive within {seconds:g} s")


class BodyTooLarge(Exception):
    """The body declares, or has, more bytes than the route accepts (answer 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request bodies are limited to {limit} bytes")
        self.limit = limit


async def read_body(
    request: web.BaseRequest, limit: int, timeout: float = BODY_TIMEOUT_SECONDS
) -> bytes:
    """The whole body of ``request``; ``BodyTooLarge`` as soon as it exceeds ``limit`` bytes
    (before reading anything when ``Content-Length`` says so); ``BodyTimeout`` when it has
    not arrived within ``timeout`` seconds."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit)
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_any():
                body += chunk
                if len(body) > limit:
                    raise BodyTooLarge(limit)
    except TimeoutError as exc:
        raise BodyTimeout(timeout) from exc
    return bytes(body)
