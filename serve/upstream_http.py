"""The HTTP client under the ``openai`` SDK: httpx2's interface, one aiohttp pool underneath.

Used by ``providers.py``: every ``AsyncOpenAI`` client of the process is given this one
``http_client`` (the SDK's documented way to choose its HTTP layer, as its own
``DefaultAioHttpClient`` does). The SDK keeps everything it is there for: the request it
builds (URL, auth and version headers, idempotency key), retries with backoff, timeouts, the
status-error classes, SSE decoding. What goes is the layering httpx2 puts around a transport for
features samops never uses, which py-spy showed costing about a third of the SDK's time per
request (issue 18): client-default header and cookie merging, auth flows, redirect handling,
event hooks, and a streamed body read chunk by chunk through async generators when the whole
answer is wanted.

- ``build_request``: a plain request (no params, files, form data, cookies) is built directly;
  anything else goes through httpx2's own ``build_request``.
- ``send``: one aiohttp request on the shared connection pool, timed on the wire for
  ``x-samops-overhead-ms`` (``UpstreamClock``); the whole body read at once unless the SDK
  streams (then a byte stream the SDK's SSE decoder reads as it arrives).
- aiohttp's errors become httpx2's (``httpx2.TimeoutException`` for an expired timer, a
  ``httpx2.RequestError`` for everything else), which the SDK turns into its retries and its
  ``APITimeoutError``/``APIConnectionError``; the aiohttp error stays the cause, so
  ``providers.translated_upstream_errors`` can tell a refused connection from a slow one.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx2
import openai
from openai._models import FinalRequestOptions

Timeouts = dict[str, float | None]

KEEPALIVE_SECONDS = 30.0
"""How long an idle connection to an upstream is kept for the next request."""
SKIPPED = {"content-encoding", "content-length", "transfer-encoding"}
"""Answer headers not passed on: aiohttp has decoded and de-chunked the body already."""


class UpstreamClock:
    """Time spent on the wire with upstreams during one chat turn: from the moment a request is
    sent until the answer's headers arrive, summed over the turn's calls (tool rounds,
    retries). Everything else, the SDK's own work included, is samops' overhead
    (``x-samops-overhead-ms``): an honest figure, not just our code's."""

    def __init__(self) -> None:
        self.seconds = 0.0


_clock: contextvars.ContextVar[UpstreamClock | None] = contextvars.ContextVar(
    "samops_upstream_clock", default=None
)


@contextmanager
def upstream_clock() -> Iterator[UpstreamClock]:
    """Measure the wire time of the upstream calls made in this block (same task)."""
    clock = UpstreamClock()
    token = _clock.set(clock)
    try:
        yield clock
    finally:
        _clock.reset(token)


class UpstreamSdkClient(openai.AsyncOpenAI):
    """``openai.AsyncOpenAI`` with its request URLs remembered: the SDK parses the base URL and
    the path into a new URL for every request (a tenth of its time per request in py-spy);
    a client only ever asks for a handful of paths. Its idempotency keys (one per request,
    the same for its retries) come from a random prefix and a counter, not from a system
    random UUID each."""

    def _idempotency_key(self) -> str:
        return f"stainless-python-retry-{_KEY_PREFIX}-{next(_KEY_COUNTER):012x}"

    def _prepare_url(self, url: str) -> httpx2.URL:
        cache: dict[str, httpx2.URL] = self.__dict__.setdefault("_samops_urls", {})
        prepared = cache.get(url)
        if prepared is None:
            prepared = super()._prepare_url(url)
            if len(cache) < URLS_REMEMBERED:
                cache[url] = prepared
        return prepared


_KEY_PREFIX = uuid.uuid4().hex[:20]
_KEY_COUNTER = itertools.count()
URLS_REMEMBERED = 64
"""Request URLs remembered per SDK client and per HTTP client (a few paths are ever used)."""
_OPTION_DEFAULTS = {
    name: field.get_default(call_default_factory=True)
    for name, field in FinalRequestOptions.model_fields.items()
    if not field.is_required()
}


async def post_json(client: openai.AsyncOpenAI, path: str, body: bytes) -> bytes:
    """``client.post(path, cast_to=bytes, content=body)``: the SDK's request (auth, retries,
    timeouts, error classes) for an encoded JSON body, its answer's bytes undecoded."""
    return await client.request(bytes, _options(path, body))


async def stream_json(
    client: openai.AsyncOpenAI, path: str, body: bytes
) -> openai.AsyncStream[object]:
    """The SDK's streamed request for an encoded JSON body (``"stream": true`` in it): its
    server-sent events decoded by the SDK, each event's data as the dict it is (no typed
    chunk built per event and dumped again: that took milliseconds before the first token)."""
    return await client.request(
        object, _options(path, body), stream=True, stream_cls=openai.AsyncStream[object]
    )


def _options(path: str, body: bytes) -> FinalRequestOptions:
    """A POST's options: a copy of one built at start with every default resolved (building
    them per request resolved and deep-copied each default, pydantic's ``model_construct``;
    the SDK itself shallow-copies options per attempt, so the default dicts are shared as the
    SDK shares them)."""
    return _PROTOTYPE.model_copy(update={"url": path, "content": body})


_PROTOTYPE = FinalRequestOptions.construct(
    **{**_OPTION_DEFAULTS, "method": "post", "url": "/", "content": None}
)


class UpstreamHttpClient(httpx2.AsyncClient):
    """``httpx2.AsyncClient`` for the SDK (see the module doc); one per process."""

    def __init__(self, *, max_connections: int = 1000) -> None:
        super().__init__(follow_redirects=False, trust_env=False)
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, httpx2.URL] = {}

    def _pool(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections, keepalive_timeout=KEEPALIVE_SECONDS
            )
            # No cookie jar: an upstream's cookies must never reach another client's request.
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    def build_request(
        self,
        method: str,
        url: httpx2.URL | str,
        *,
        content: Any = None,
        data: Any = None,
        files: Any = None,
        json: Any = None,
        params: Any = None,
        headers: Any = None,
        cookies: Any = None,
        timeout: Any = httpx2.USE_CLIENT_DEFAULT,
        extensions: Any = None,
    ) -> httpx2.Request:
        plain = (
            data is None
            and files is None
            and json is None
            and not params
            and cookies is None
            and extensions is None
            and timeout is not httpx2.USE_CLIENT_DEFAULT
            and (content is None or isinstance(content, bytes))
        )
        if not plain:
            return super().build_request(
                method,
                url,
                content=content,
                data=data,
                files=files,
                json=json,
                params=params,
                headers=headers,
                cookies=cookies,
                timeout=timeout,
                extensions=extensions,
            )
        if isinstance(url, str):
            parsed = self._urls.get(url)
            if parsed is None:
                parsed = httpx2.URL(url)
                if len(self._urls) < URLS_REMEMBERED:
                    self._urls[url] = parsed
            url = parsed
        # The body as a stream, then read: ``content=`` would add Host and Content-Length by
        # building every header again (aiohttp sets both itself when it sends).
        request = httpx2.Request(
            method,
            url,
            headers=headers,
            stream=httpx2.ByteStream(content or b""),
            extensions={"timeout": _timeouts(timeout)},
        )
        request.read()
        return request

    async def send(
        self,
        request: httpx2.Request,
        *,
        stream: bool = False,
        auth: Any = httpx2.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx2.USE_CLIENT_DEFAULT,
    ) -> httpx2.Response:
        timeouts: Timeouts = request.extensions.get("timeout", {})
        try:
            body: Any = request.content or None
        except httpx2.RequestNotRead:  # a streamed upload (multipart files): aiohttp reads it
            body = request.stream
        started = time.perf_counter()
        with _httpx_errors(request):
            answer = await self._pool().request(
                request.method,
                str(request.url),
                headers=_decoded(request.headers),
                data=body,
                allow_redirects=False,
                timeout=_client_timeout(
                    timeouts.get("connect"), timeouts.get("read"), timeouts.get("pool")
                ),
            )
        clock = _clock.get()
        if clock is not None:
            clock.seconds += time.perf_counter() - started
        headers = [(k, v) for k, v in answer.raw_headers if k.lower() not in _SKIPPED_BYTES]
        if stream:
            return httpx2.Response(
                answer.status,
                headers=headers,
                stream=_AnswerStream(answer, request),
                request=request,
            )
        try:
            with _httpx_errors(request):
                content = await answer.read()
        finally:
            answer.release()
        # As a stream the SDK reads (``content=`` would add Content-Length to the headers, one
        # more lookup and insert per answer, for nothing).
        return httpx2.Response(
            answer.status, headers=headers, stream=httpx2.ByteStream(content), request=request
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        await super().aclose()


_SKIPPED_BYTES = {name.encode() for name in SKIPPED}


def _decoded(headers: httpx2.Headers) -> list[tuple[str, str]]:
    """``headers.multi_items()`` with its encoding looked up once (it was twice per header)."""
    encoding = headers.encoding
    return [(key.decode(encoding), value.decode(encoding)) for key, value in headers.raw]


@functools.lru_cache(maxsize=16)
def _client_timeout(
    connect: float | None, read: float | None, pool: float | None
) -> aiohttp.ClientTimeout:
    """aiohttp's timeouts for the SDK's (one set per process in practice, so made once)."""
    return aiohttp.ClientTimeout(sock_connect=connect, sock_read=read, connect=pool)


def _timeouts(timeout: httpx2.Timeout | float | None) -> Timeouts:
    """httpx2's timeout extension (seconds per phase) from what the SDK passes."""
    if isinstance(timeout, httpx2.Timeout):
        return timeout.as_dict()
    return {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}


class _AnswerStream(httpx2.AsyncByteStream):
    """A streamed answer's body for the SDK's SSE decoder, as it arrives."""

    def __init__(self, answer: aiohttp.ClientResponse, request: httpx2.Request) -> None:
        self.answer, self.request = answer, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors(self.request):
            async for chunk in self.answer.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        self.answer.release()


@contextmanager
def _httpx_errors(request: httpx2.Request) -> Iterator[None]:
    """aiohttp's errors as the httpx2 errors the SDK handles (the original is the cause)."""
    try:
        yield
    except TimeoutError as exc:  # aiohttp's timeouts derive from it
        raise httpx2.ReadTimeout(
            str(exc) or "the upstream did not answer in time", request=request
        ) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx2.ConnectError(str(exc), request=request) from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise httpx2.RemoteProtocolError(str(exc), request=request) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise httpx2.ReadError(str(exc) or type(exc).__name__, request=request) from exc
