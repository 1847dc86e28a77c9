"""Ports for the servers the tests start as child processes (``samops run``/``serve``).

A child binds its port a moment after the test picked it, so the port must stay free in
between. Asking the kernel for "any free port" (bind to 0) hands out ports from the same
ephemeral range every outgoing connection of every test worker draws from: under CI's load a
database or HTTP connection took the port in that moment twice (the child then failed with
"address already in use", or another worker's daemon answered in its place). So ports come from
below the ephemeral range, which the kernel never hands out by itself, and each pytest-xdist
worker draws from its own slice of it, so two workers never pick the same one.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator
from pathlib import Path

SLICE_SPAN = 10_000
"""How many ports below the ephemeral range are shared out between the workers."""


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _worker_slice() -> range:
    low = _ephemeral_low()
    start = max(1024, low - SLICE_SPAN)
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    width = max(1, (low - start) // workers)
    first = start + (index % workers) * width
    return range(first, first + width)


def _candidates() -> Iterator[int]:
    ports = _worker_slice()
    offset = os.getpid() % len(ports)
    return itertools.cycle([*ports[offset:], *ports[:offset]])


_NEXT = _candidates()


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, that no outgoing connection will
    take, and that no other test worker will pick."""
    for _ in range(len(_worker_slice())):
        port = next(_NEXT)
        if _bindable(port):
            return port
    with socket.socket() as probe:  # the whole slice busy: fall back to the kernel's choice
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
