"""Upstream model providers, called through the ``openai`` SDK's async client.

Used by the chat turn. One ``AsyncOpenAI`` client per (base URL, key) is kept for the life of
the process and shared by every request (connection reuse matters for latency). The SDK
retries 408/409/429/5xx with exponential backoff (``max_retries``) and applies the timeout.

The built-in provider ``openai`` needs no manifest: its base URL comes from
``OPENAI_BASE_URL`` (default the public API) and its key from ``OPENAI_API_KEY``. When no key
is set, ``samops run`` points it at the offline demo model (``serve/offline.py``).

The SDK's exceptions are translated here, at one choke point, into ``UpstreamError`` with the
HTTP status samops answers (502 for a failing or refusing upstream, 504 for a timeout).
"""

from __future__ import annotations

import contextvars
import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import openai

from serve.compiled import ProviderTarget, Snapshot
from serve.settings import ProviderSettings

BUILTIN = "openai"


class UpstreamError(Exception):
    """The model provider failed; ``status`` is what samops answers (502 or 504)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class Providers:
    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings
        self._clients: dict[tuple[str | None, str], openai.AsyncOpenAI] = {}
        # One connection pool for every provider client: the SDK's own HTTP client class, so
        # its transport package (httpx, or httpx2 in newer SDKs) is the SDK's business. Its
        # event hooks time each exchange on the wire (see ``UpstreamClock``).
        hooks: dict[str, list[Callable[..., Any]]] = {
            "request": [_sending],
            "response": [_answered],
        }
        self._http = (
            openai.DefaultAioHttpClient(event_hooks=hooks)
            if settings.aiohttp_transport
            else openai.DefaultAsyncHttpxClient(event_hooks=hooks)
        )

    def target(self, snapshot: Snapshot, name: str) -> ProviderTarget:
        found = snapshot.providers.get(name)
        if found is not None:
            return found
        if name == BUILTIN:
            return ProviderTarget(
                BUILTIN, self.settings.openai_base_url, self.settings.openai_api_key
            )
        raise UpstreamError(502, "unknown_provider", f"the provider {name!r} is not configured")

    def client(self, target: ProviderTarget) -> openai.AsyncOpenAI:
        if target.error:
            raise UpstreamError(502, "provider_unavailable", target.error)
        key = target.api_key or "samops-no-key"
        cache_key = (target.base_url, hashlib.sha256(key.encode()).hexdigest())
        client = self._clients.get(cache_key)
        if client is None:
            client = openai.AsyncOpenAI(
                base_url=target.base_url,
                api_key=key,
                http_client=self._http,
                max_retries=self.settings.max_retries,
                timeout=self.settings.timeout_seconds,
            )
            self._clients[cache_key] = client
        return client

    async def close(self) -> None:
        await self._http.aclose()


class UpstreamClock:
    """Time spent on the wire with upstreams during one chat turn: from the moment the SDK
    hands a request to its HTTP client until the answer's headers arrive, summed over the
    turn's calls (tool rounds, retries). Everything else, the SDK's own work included, is
    samops' overhead (``x-samops-overhead-ms``): an honest figure, not just our code's."""

    def __init__(self) -> None:
        self.seconds = 0.0


_clock: contextvars.ContextVar[UpstreamClock | None] = contextvars.ContextVar(
    "samops_upstream_clock", default=None
)
_SENT = "samops_sent_at"


@contextmanager
def upstream_clock() -> Iterator[UpstreamClock]:
    """Measure the wire time of the upstream calls made in this block (same task)."""
    clock = UpstreamClock()
    token = _clock.set(clock)
    try:
        yield clock
    finally:
        _clock.reset(token)


async def _sending(request: Any) -> None:
    request.extensions[_SENT] = time.perf_counter()


async def _answered(response: Any) -> None:
    clock = _clock.get()
    sent = response.request.extensions.get(_SENT)
    if clock is not None and sent is not None:
        clock.seconds += time.perf_counter() - sent


@contextmanager
def translated_upstream_errors(provider: str) -> Iterator[None]:
    """The one place where the SDK's errors become samops' answers."""
    try:
        yield
    except openai.APITimeoutError as exc:
        if _connection_failed(exc):  # the SDK's aiohttp transport calls a refusal a timeout
            raise UpstreamError(
                502,
                "upstream_unreachable",
                f"the provider {provider!r} cannot be reached: the connection failed",
            ) from exc
        raise UpstreamError(
            504, "upstream_timeout", f"the provider {provider!r} did not answer in time"
        ) from exc
    except openai.APIConnectionError as exc:
        raise UpstreamError(
            502,
            "upstream_unreachable",
            f"the provider {provider!r} cannot be reached: {exc.__class__.__name__}",
        ) from exc
    except openai.AuthenticationError as exc:
        raise UpstreamError(
            502,
            "upstream_refused_credentials",
            f"the provider {provider!r} refused samops' credentials (check its api_key Secret)",
        ) from exc
    except openai.APIStatusError as exc:
        raise UpstreamError(
            502,
            "upstream_error",
            f"the provider {provider!r} answered HTTP {exc.status_code} after retries",
        ) from exc


def _connection_failed(exc: BaseException) -> bool:
    """Whether an error's causes hold a failed connection (refused, unreachable, reset)
    rather than an expired timer."""
    seen: BaseException | None = exc
    for _ in range(10):  # cause chains are short; never loop on a cycle
        seen = seen.__cause__ or seen.__context__ if seen is not None else None
        if seen is None:
            return False
        if isinstance(seen, OSError) and not isinstance(seen, TimeoutError):
            return True
    return False
