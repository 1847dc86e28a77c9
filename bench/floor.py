"""The floor for a Python gateway: a bare aiohttp pass-through proxy (issue 18's baseline).

``python -m bench.floor --port P --upstream http://127.0.0.1:U`` listens on 127.0.0.1:P and
forwards every POST's body bytes to the same path on the upstream through one pooled
``aiohttp.ClientSession``, answering with the upstream's status, content type and body bytes.
No parsing, no logic, nothing recorded: what any Python gateway pays for an HTTP server, an
HTTP client and the event loop (uvloop, as samops runs it). samops' chat throughput is shown
as a share of this floor, measured in the same run.

``--via sdk``: the same proxy, but the upstream is called through the ``openai`` SDK as samops
calls it (``serve/upstream_http.py``: one ``UpstreamSdkClient`` on the shared aiohttp pool,
``post_json`` for the whole answer, ``stream_json`` for a stream, each event re-encoded). Still
no other logic: what the SDK itself costs a gateway that must keep it (issue 18 forbids
skipping it), the highest throughput samops' chat route could reach with it. ``--via
sdk-stock``: the SDK as its README shows it (``AsyncOpenAI`` on its default HTTP client,
``chat.completions.create`` with the request's parameters, the typed answer dumped to JSON):
what a gateway pays without samops' HTTP client under the SDK.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import openai
import orjson
from aiohttp import web

from serve import eventloop
from serve.upstream_http import UpstreamHttpClient, UpstreamSdkClient, post_json, stream_json

FORWARDED = "Content-Type"


CLIENT = web.AppKey("floor_client", Any)


def _proxy(
    client: Callable[[], Any], forward: Callable[[Any, web.Request], Awaitable[web.StreamResponse]]
) -> web.Application:
    """A floor: every POST handed to ``forward`` with the upstream client, made by ``client``
    once the loop runs and closed at cleanup (an aiohttp session or an SDK client)."""
    app = web.Application()

    async def start(app: web.Application) -> None:
        app[CLIENT] = client()

    async def stop(app: web.Application) -> None:
        await app[CLIENT].close()

    async def handle(request: web.Request) -> web.StreamResponse:
        return await forward(app[CLIENT], request)

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_post("/{tail:.*}", handle)
    app.router.add_get("/healthz", healthz)
    return app


def create_app(upstream: str) -> web.Application:
    """The floor: body bytes forwarded through one pooled aiohttp session."""
    base = upstream.rstrip("/")

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=0)
        return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))

    async def forward(session: aiohttp.ClientSession, request: web.Request) -> web.Response:
        body = await request.read()
        async with session.post(
            base + request.path,
            data=body,
            headers={FORWARDED: request.headers.get(FORWARDED, "application/json")},
        ) as answer:
            payload = await answer.read()
            return web.Response(
                status=answer.status,
                body=payload,
                headers={FORWARDED: answer.headers.get(FORWARDED, "application/json")},
            )

    return _proxy(session, forward)


def create_sdk_app(upstream: str) -> web.Application:
    """The floor with the SDK between it and the upstream (``--via sdk``)."""

    def sdk() -> UpstreamSdkClient:
        return UpstreamSdkClient(
            base_url=upstream.rstrip("/") + "/v1",
            api_key="floor",
            http_client=UpstreamHttpClient(),
        )

    async def forward(sdk: UpstreamSdkClient, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        path = request.path.removeprefix("/v1")
        if b'"stream":true' not in body.replace(b" ", b""):
            answer = await post_json(sdk, path, body)
            return web.Response(body=answer, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async for event in await stream_json(sdk, path, body):
            await response.write(b"data: " + orjson.dumps(event) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    return _proxy(sdk, forward)


def create_stock_sdk_app(upstream: str) -> web.Application:
    """The floor with the SDK as documented between it and the upstream (``--via
    sdk-stock``; plain answers only)."""

    def sdk() -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=upstream.rstrip("/") + "/v1", api_key="floor")

    async def forward(sdk: openai.AsyncOpenAI, request: web.Request) -> web.Response:
        completion = await sdk.chat.completions.create(**orjson.loads(await request.read()))
        return web.Response(body=completion.model_dump_json(), content_type="application/json")

    return _proxy(sdk, forward)


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def serve(app: web.Application, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.Event().wait()  # until the bench stops the process
    finally:
        await runner.cleanup()


APPS = {"bytes": create_app, "sdk": create_sdk_app, "sdk-stock": create_stock_sdk_app}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:8081")
    parser.add_argument(
        "--via", choices=sorted(APPS), default="bytes", help="how the upstream is called"
    )
    args = parser.parse_args(argv)
    eventloop.run(serve(APPS[args.via](args.upstream), args.port))


if __name__ == "__main__":
    main()
