"""Connections are bounded in time and number (issue 12, item 8: 500 idle keep-alive
connections, 100 that sent half a header and 100 that sent 9 bytes of a 100,000-byte body were
all still open after 94 s; open files went from 28 to 728)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

from tests.conftest import MANIFESTS
from tests.daemon.conftest import DaemonProcess, wait_for

BOUNDS = ("--keepalive-timeout", "1", "--body-timeout", "1", "--max-connections", "5")


async def _held(
    port: int, sent: bytes, *, wait: float = 10.0, whole: bool = True
) -> tuple[bytes, float]:
    """Send ``sent``; wait for the server to close (``whole``) or to answer at all; (what it
    sent, seconds). A reset counts as closed."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = loop.time()
    if sent:
        writer.write(sent)
        await writer.drain()
    try:
        got = await asyncio.wait_for(reader.read() if whole else reader.read(4096), wait)
    except ConnectionResetError:
        got = b""
    finally:
        writer.close()
    return got, loop.time() - started


def test_idle_half_header_and_half_body_connections_are_closed(
    start_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    daemon = start_daemon(str(Path(shutil.copytree(MANIFESTS, tmp_path / "m"))), *BOUNDS)

    async def scenario() -> list[tuple[bytes, float]]:
        return list(
            await asyncio.gather(
                _held(daemon.port, b""),
                _held(daemon.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"),
                _held(
                    daemon.port,
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                    b'Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"model":',
                    whole=False,
                ),
            )
        )

    idle, half_header, half_body = asyncio.run(scenario())
    assert idle[0] == b"" and idle[1] < 5
    assert half_header[0] == b"" and half_header[1] < 5
    assert half_body[0].startswith(b"HTTP/1.1 408") and half_body[1] < 5
    assert b"body_timeout" in half_body[0]


def test_connections_beyond_the_limit_are_closed_at_once(
    start_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    daemon = start_daemon(str(Path(shutil.copytree(MANIFESTS, tmp_path / "m"))), *BOUNDS)

    async def scenario() -> tuple[bytes, float]:
        holders = [await asyncio.open_connection("127.0.0.1", daemon.port) for _ in range(5)]
        await asyncio.sleep(0.2)
        try:
            return await _held(daemon.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        finally:
            for _, writer in holders:
                writer.close()

    refused, seconds = asyncio.run(scenario())
    assert refused == b"" and seconds < 1
    wait_for(daemon.healthy, what="the server answering again")  # the limit is not a lock-out
