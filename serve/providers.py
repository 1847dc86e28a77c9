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

from collections.abc import Iterator
from contextlib import contextmanager

import openai

from serve.compiled import ProviderTarget, Snapshot
from serve.settings import ProviderSettings
from serve.upstream_http import UpstreamHttpClient, UpstreamSdkClient

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
        self._clients: dict[tuple[str | None, str], openai.AsyncOpenAI] = {}  # (URL, key)
        # One connection pool for every provider client (serve/upstream_http.py), which also
        # times each exchange on the wire (``UpstreamClock``).
        self._http = UpstreamHttpClient()

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
        client = self._clients.get((target.base_url, key))
        if client is None:
            client = UpstreamSdkClient(
                base_url=target.base_url,
                api_key=key,
                http_client=self._http,
                max_retries=self.settings.max_retries,
                timeout=self.settings.timeout_seconds,
            )
            self._clients[target.base_url, key] = client
        return client

    async def close(self) -> None:
        await self._http.aclose()


@contextmanager
def translated_upstream_errors(provider: str) -> Iterator[None]:
    """The one place where the SDK's errors become samops' answers."""
    try:
        yield
    except openai.APITimeoutError as exc:
        if _connection_failed(exc):  # a refusal is never a timeout, whatever a layer calls it
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
