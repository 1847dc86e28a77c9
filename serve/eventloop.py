"""The event loop every samops server process runs on: uvloop where it is installed, else
asyncio's own.

uvloop is libuv behind asyncio's API (aiohttp documents it as a drop-in). Under the chat load
of ``bench/chat.py`` it lowers samops' CPU time per request, which is what bounds throughput on
a small machine. ``SAMOPS_EVENT_LOOP=asyncio`` forces the standard loop (for debugging, or to
compare); ``uvloop`` requires it and fails at start when it is missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from reconciler.api import setting

T = TypeVar("T")
CHOICES = ("auto", "uvloop", "asyncio")


def chosen() -> str:
    """The loop ``run`` will use: ``uvloop`` or ``asyncio``."""
    wanted = (setting("SAMOPS_EVENT_LOOP") or "auto").strip().lower() or "auto"
    if wanted not in CHOICES:
        raise SystemExit(
            f"SAMOPS_EVENT_LOOP={wanted!r} is not one of {', '.join(CHOICES)} (default auto)"
        )
    if wanted == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError as exc:
        if wanted == "uvloop":
            raise SystemExit(
                "SAMOPS_EVENT_LOOP=uvloop but uvloop is not installed (pip install uvloop)"
            ) from exc
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the chosen loop."""
    if chosen() == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
