"""Listening with bounds: the embedded server's socket, its connections counted and capped.

Serve stage, at start-up (``serve/main.py``). aiohttp closes a connection that sends nothing,
or half a header, after ``keepalive_timeout``, and ``serve/bodies.py`` bounds the time a body
may take; what aiohttp has no setting for is how many connections may be open at once (the
probe opened 700 idle or half-sent ones, and each holds a file descriptor). ``LimitedSite``
is aiohttp's ``TCPSite`` whose protocol factory refuses, by closing it at once, a connection
beyond ``max_connections``: the connections already served keep their turn.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiohttp import web

log = logging.getLogger("samops.serve")


class _Refused(asyncio.Protocol):
    """A connection over the limit: closed as soon as it is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class _Limited:
    """The server's protocol factory, refusing connections beyond ``limit``."""

    def __init__(self, server: web.Server, limit: int) -> None:
        self.server, self.limit = server, limit
        self.refused = 0

    def __call__(self) -> asyncio.BaseProtocol:
        if len(self.server.connections) >= self.limit:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning(
                    "connection refused: the server holds its most connections",
                    extra={"max_connections": self.limit, "refused": self.refused},
                )
            return _Refused()
        return self.server()


class LimitedSite(web.TCPSite):
    """``web.TCPSite`` with at most ``max_connections`` connections open at once (its
    ``start`` is TCPSite's, with the limited factory)."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        *,
        max_connections: int,
        reuse_port: bool | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, host, port, reuse_port=reuse_port, ssl_context=ssl_context)
        self.max_connections = max_connections

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            _Limited(server, self.max_connections),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
