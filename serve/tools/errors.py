"""What a tool's failure is, and the one place where the HTTP client's errors become one.

Used by every executor (``plugins.py``, ``functions.py``). A ``ToolError`` is returned to the
model as the tool's result, never a crash of the request. aiohttp's client exceptions (and a
timeout) are translated here, in ``client_errors``, with the sentences the caller gives.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp


class ToolError(Exception):
    """A tool could not produce a result; the message is returned to the model as the result."""


@contextmanager
def client_errors(*, timed_out: str, unreachable: str, answered: str = "") -> Iterator[None]:
    """aiohttp's client errors and timeouts as ``ToolError``s with these sentences; in them,
    ``{name}`` is the error's class and ``{status}`` the HTTP status (``answered``, for an
    error status the client raised; ``unreachable`` when empty)."""
    try:
        yield
    except TimeoutError as exc:
        raise ToolError(timed_out) from exc
    except aiohttp.ClientResponseError as exc:
        sentence = answered or unreachable
        raise ToolError(sentence.format(status=exc.status, name=type(exc).__name__)) from exc
    except aiohttp.ClientError as exc:
        raise ToolError(unreachable.format(name=type(exc).__name__, status="")) from exc


def short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
