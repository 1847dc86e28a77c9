"""The embedded aiohttp server: health, readiness, metrics, status and the git webhook.

Serve stage. The application is built by ``create_app`` from what the composition root hands
it: the database engine, the metrics registry, and a callback that wakes the reconciler (the
server never imports the daemon). Chat routes join this application later.

Every error answer has samops' JSON shape (``serve/errors.py``): ``{"error": {"code": ...,
"message": ...}}``. Database work runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import Engine, text

from reconciler.api import digests_match, presented_digests
from reconciler.errors import DatabaseError
from reconciler.store.db import reading, translated_errors
from reconciler.store.read import read_state
from reconciler.store.status import status_document
from serve.bodies import BodyTimeout, BodyTooLarge, read_body
from serve.errors import error_response
from serve.webhooks import Deliveries, verify
from serve.workers import shared_metrics_folder

log = logging.getLogger("samops.serve")
WEBHOOK_MAX_BYTES = 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class ServerDeps:
    """What the server needs from the rest of the process."""

    engine: Engine
    registry: CollectorRegistry
    wake_reconciler: Callable[[str], None]
    webhook_secret: str | None = None
    admin_key_digest: str | None = None
    protect: frozenset[str] = frozenset()
    """Operational endpoints (``status``, ``metrics``) answered only with the admin key."""
    served_generation: Callable[[], int] = lambda: 0
    """The generation this process serves (0 before the first snapshot is loaded)."""
    worker: int = 0
    """This process's index in its worker group (0: the primary, or the only process)."""
    workers_listening: Callable[[], bool] = lambda: True
    """In a primary: whether all its workers have started listening."""
    offline_demo: bool = False
    """No OPENAI_API_KEY: the built-in openai provider is the offline demo model."""


DEPS = web.AppKey("deps", ServerDeps)
WEBHOOKS = web.AppKey("webhook_counter", Counter)
DELIVERIES = web.AppKey("webhook_deliveries", Deliveries)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """HTTP errors in the project's JSON shape; unexpected ones logged, never leaked."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        return error_response(exc.status, code, exc.text or exc.reason)
    except ConnectionResetError:  # the caller left before the answer: nobody to tell
        log.debug("caller went away", extra={"path": request.path})
        return error_response(499, "caller_went_away", "the caller closed the connection")
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return error_response(500, "internal_error", "the server failed; see its log")


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    engine = request.app[DEPS].engine

    def check() -> str | None:
        with reading(engine) as connection:
            connection.execute(text("SELECT 1"))
            revision = read_state(connection).last_applied_revision
            connection.rollback()
        return revision

    try:
        revision = await asyncio.to_thread(check)
    except Exception as exc:
        return error_response(
            503, "database_unavailable", f"the database cannot be reached: {type(exc).__name__}"
        )
    if revision is None:
        return error_response(503, "not_applied", "no revision has been applied yet")
    served = request.app[DEPS].served_generation()
    if served == 0:
        return error_response(503, "not_serving", "the applied state is not loaded yet")
    if not request.app[DEPS].workers_listening():
        return error_response(503, "workers_starting", "the worker processes are starting")
    return web.json_response(
        {
            "status": "ready",
            "revision": revision,
            "served_generation": served,
            "worker": request.app[DEPS].worker,
        }
    )


def _refused(request: web.Request, endpoint: str) -> web.Response | None:
    """A 401 for an endpoint the operator protected, unless the admin key is presented."""
    deps = request.app[DEPS]
    if endpoint not in deps.protect or deps.admin_key_digest is None:
        return None
    header = request.headers.get("Authorization", "")
    key = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    if key and digests_match(presented_digests(key), [deps.admin_key_digest]):
        return None
    return error_response(
        401,
        "admin_key_required",
        f"this server protects {request.path}: send 'Authorization: Bearer <admin key>'",
    )


async def metrics(request: web.Request) -> web.Response:
    """This process's metrics; with workers, the whole group's (``serve/workers.py``)."""
    refused = _refused(request, "metrics")
    if refused is not None:
        return refused
    folder = shared_metrics_folder()
    if folder is None:
        body = generate_latest(request.app[DEPS].registry)
    else:
        group = CollectorRegistry()
        MultiProcessCollector(group, path=str(folder))  # type: ignore[no-untyped-call]
        body = await asyncio.to_thread(generate_latest, group)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def status(request: web.Request) -> web.Response:
    refused = _refused(request, "status")
    if refused is not None:
        return refused
    engine = request.app[DEPS].engine

    def document_of() -> dict[str, Any]:
        with translated_errors(str(engine.url)):
            return status_document(engine)

    try:
        document = await asyncio.to_thread(document_of)
    except DatabaseError as exc:  # an outage is not a server bug
        cause = type(exc.__cause__ or exc).__name__
        return error_response(
            503, "database_unavailable", f"the database cannot be reached: {cause}"
        )
    if request.app[DEPS].offline_demo:
        document["offline_demo"] = True
    return web.json_response(document)


async def git_webhook(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    counter = request.app[WEBHOOKS]
    if not deps.webhook_secret:
        counter.labels(provider="unknown", result="disabled").inc()
        return error_response(
            404, "webhook_disabled", "the git webhook is off: start samops with --webhook-secret"
        )
    try:
        body = await read_body(request, WEBHOOK_MAX_BYTES)
    except BodyTimeout as exc:
        counter.labels(provider="unknown", result="body_timeout").inc()
        return error_response(408, "body_timeout", str(exc))
    except BodyTooLarge:
        counter.labels(provider="unknown", result="too_large").inc()
        return error_response(
            413, "payload_too_large", f"webhook payloads are limited to {WEBHOOK_MAX_BYTES} bytes"
        )
    verdict = verify(request.headers, body, deps.webhook_secret)
    if not verdict.ok:
        counter.labels(provider=verdict.provider, result="bad_signature").inc()
        log.warning(
            "webhook refused",
            extra={
                "provider": verdict.provider,
                "reason": verdict.reason,
                "remote": request.remote,
            },
        )
        return error_response(401, "bad_signature", f"webhook refused: {verdict.reason}")
    if not request.app[DELIVERIES].first_time(request.headers, body, time.monotonic()):
        counter.labels(provider=verdict.provider, result="duplicate").inc()
        return web.json_response({"status": "duplicate", "worker": deps.worker}, status=200)
    counter.labels(provider=verdict.provider, result="accepted").inc()
    deps.wake_reconciler(f"webhook from {verdict.provider}")
    return web.json_response({"status": "accepted", "worker": deps.worker}, status=202)


def create_app(deps: ServerDeps) -> web.Application:
    app = web.Application(middlewares=[json_errors])
    app[DEPS] = deps
    app[DELIVERIES] = Deliveries()
    app[WEBHOOKS] = Counter(
        "samops_webhook_requests",
        "Git webhook deliveries by result.",
        ["provider", "result"],
        registry=deps.registry,
    )
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/status", status)
    app.router.add_post("/hooks/git", git_webhook)
    return app
