"""The floor for a Python gateway: a bare aiohttp pass-through proxy (issue 18's baseline).

``python -m bench.floor --port P --upstream http://127.0.0.1:U`` listens on 127.0.0.1:P and
forwards every POST's body bytes to the same path on the upstream through one pooled
``aiohttp.ClientSession``, answering with the upstream's status, content type and body bytes.
No parsing, no logic, nothing recorded: what any Python gateway pays for an HTTP server, an
HTTP client and the event loop (uvloop, as samops runs it). samops' chat throughput is shown
as a share of this floor, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

import aiohttp
from aiohttp import web

from serve import eventloop

FORWARDED = "Content-Type"


def create_app(upstream: str) -> web.Application:
    app = web.Application()
    base = upstream.rstrip("/")

    async def start(app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0)
        app["session"] = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=60)
        )

    async def stop(app: web.Application) -> None:
        await app["session"].close()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        session: aiohttp.ClientSession = app["session"]
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

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_post("/{tail:.*}", forward)
    app.router.add_get("/healthz", healthz)
    return app


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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:8081")
    args = parser.parse_args(argv)
    eventloop.run(serve(create_app(args.upstream), args.port))


if __name__ == "__main__":
    main()
