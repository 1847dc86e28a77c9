"""JSON on the chat path, encoded and decoded with orjson.

Serve stage, used by the chat routes and the chat turn. Every chat request is decoded once,
encoded once for the upstream, the upstream's answer decoded once and ours encoded once:
with the standard library these four steps took about a tenth of the server's CPU under
``bench/chat.py``'s load; orjson does them several times faster. orjson is also stricter
than the standard library where strictness is right for a network service: ``NaN`` and
``Infinity`` are not JSON, and neither is invalid UTF-8.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

JSONDecodeError = orjson.JSONDecodeError
"""A subclass of ``ValueError``, raised by ``loads``."""


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; values that are not JSON types are shown with ``str``."""
    return orjson.dumps(value, default=str)


def response(
    value: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """What ``aiohttp.web.json_response`` answers, encoded with orjson."""
    return web.Response(
        body=dumps(value), status=status, headers=headers, content_type="application/json"
    )
