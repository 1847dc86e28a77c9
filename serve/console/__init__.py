"""The operator's web console at ``/``: see the fleet's state, act on it, chat with clients.

Beside the serve stage (DESIGN.md: "the operator's web console at `/`"). The page and its
script and style ship in this package (``assets/``; nothing is fetched from elsewhere, and the
Content-Security-Policy forbids it) and read JSON from the routes below:

    GET  /                                   the page
    GET  /console/assets/{file}              its script, style and icon
    GET  /console/api/session                who is signed in, and the CSRF token
    POST /console/api/session                sign in: {"key": "<admin or viewer key>"}
    DELETE /console/api/session              sign out                           (CSRF)
    GET  /console/api/overview               followed source, revisions, processes
    GET  /console/api/syncs[?before=ID]      the sync history, newest first, 50 at a time
    GET  /console/api/syncs/{id}             one sync: all its errors, its plan
    GET  /console/api/resources              applied resources, clients' dependencies, usage
    POST /console/api/review                 {"base"?, "head"}: a plan with its risk flags
    POST /console/api/chat/{client}          the playground (``playground.py``)       (CSRF)
    POST /console/api/actions/{action}       suspend, resume, reconcile   (admins, CSRF)

Who may do what is ``sessions.py``; what the reads return, ``reads.py``. Every answer of the
API is ``Cache-Control: no-store``; errors have the project's JSON shape.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources as package_files
from typing import Any

from aiohttp import web
from sqlalchemy import Engine

from reconciler.api import RefReader
from reconciler.store.control import request_reconcile, set_suspended
from serve import jsonwire
from serve.bodies import BodyTimeout, BodyTooLarge, read_body
from serve.console import playground, reads
from serve.console.sessions import (
    Access,
    Session,
    Sessions,
    clear_cookie,
    csrf_ok,
    current,
    set_cookie,
)
from serve.errors import error_response

log = logging.getLogger("samops.console")
ASSETS = {
    "console.js": "text/javascript",
    "console.css": "text/css",
    "icon.svg": "image/svg+xml",
}
SMALL_BODY = 16 * 1024
MAX_REASON_CHARS = 300
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
Handler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class ConsoleDeps:
    engine: Engine
    access: Access
    wake_reconciler: Callable[[str], None]
    followed: reads.Followed | None = None
    reader: RefReader | None = None
    sessions: Sessions = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sessions", Sessions(self.engine))


CONSOLE = web.AppKey("console", ConsoleDeps)


def _asset(name: str) -> bytes:
    return (package_files.files("serve.console") / "assets" / name).read_bytes()


async def page(_request: web.Request) -> web.Response:
    return web.Response(
        body=_asset("index.html"),
        content_type="text/html",
        charset="utf-8",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
    )


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["file"]
    if name not in ASSETS:
        return error_response(404, "not_found", f"the console has no file {name!r}")
    return web.Response(
        body=_asset(name),
        content_type=ASSETS[name],
        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
    )


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=jsonwire.dumps(data),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


async def _small_json(request: web.Request) -> dict[str, Any]:
    try:
        raw = await read_body(request, SMALL_BODY, 10.0)
        body = jsonwire.loads(raw or b"{}")
    except (BodyTooLarge, BodyTimeout, jsonwire.JSONDecodeError) as exc:
        raise web.HTTPBadRequest(text="the body must be a JSON object of at most 16 KB") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


def signed_in(*, act: bool = False, csrf: bool = False) -> Callable[[Handler], Any]:
    """A route for signed-in pages; ``act``: admins only; ``csrf``: the header must match."""

    def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def route(request: web.Request) -> web.StreamResponse:
            session = await current(request, request.app[CONSOLE].sessions)
            if session is None:
                return error_response(401, "not_signed_in", "sign in to the console first")
            if (csrf or act) and not csrf_ok(request, session):
                return error_response(
                    403, "csrf_token_missing", "send the page's X-CSRF-Token with this request"
                )
            if act and not session.may_act:
                return error_response(403, "read_only", "viewers may look, not act")
            response = await handler(request, session)
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return route

    return wrap


# --- session ------------------------------------------------------------------------------


def _session_json(session: Session) -> dict[str, Any]:
    return {"signed_in": True, "role": session.role, "csrf": session.csrf}


async def get_session(request: web.Request) -> web.Response:
    deps = request.app[CONSOLE]
    session = await current(request, deps.sessions)
    if session is not None:
        return _json(_session_json(session))
    hint = (
        "sign in with the admin key (or the viewer key)"
        if deps.access.enabled
        else "no key may sign in: start samops with --admin-key-digest (or --viewer-key-digest)"
    )
    return _json({"signed_in": False, "sign_in_enabled": deps.access.enabled, "hint": hint})


async def sign_in(request: web.Request) -> web.Response:
    deps = request.app[CONSOLE]
    body = await _small_json(request)
    key = body.get("key")
    role = deps.access.role_of(key) if isinstance(key, str) else None
    if role is None:
        log.warning("console sign-in refused", extra={"remote": request.remote})
        return error_response(401, "invalid_key", "this key may not sign in to the console")
    session = await asyncio.to_thread(deps.sessions.create, role)
    log.info("console sign-in", extra={"role": role, "remote": request.remote})
    response = _json(_session_json(session))
    set_cookie(response, request, session)
    return response


@signed_in(csrf=True)
async def sign_out(request: web.Request, session: Session) -> web.StreamResponse:
    await asyncio.to_thread(request.app[CONSOLE].sessions.end, session.token)
    response = _json({"signed_in": False})
    clear_cookie(response, request)
    return response


# --- reads --------------------------------------------------------------------------------


async def _read(function: Callable[..., Any], *args: Any) -> web.Response:
    try:
        return _json(await asyncio.to_thread(function, *args))
    except reads.NotFound as exc:
        return error_response(404, "not_found", str(exc))
    except reads.Unavailable as exc:
        return error_response(409, "unavailable", str(exc))


@signed_in()
async def get_overview(request: web.Request, _session: Session) -> web.StreamResponse:
    deps = request.app[CONSOLE]
    return await _read(reads.overview, deps.engine, deps.followed)


def _int(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or len(text) > 18:
        raise web.HTTPBadRequest(text=f"{what} must be a whole number")
    return int(text)


@signed_in()
async def get_syncs(request: web.Request, _session: Session) -> web.StreamResponse:
    before = _int(request.query.get("before"), "'before'")
    return await _read(reads.history, request.app[CONSOLE].engine, before)


@signed_in()
async def get_sync(request: web.Request, _session: Session) -> web.StreamResponse:
    deps = request.app[CONSOLE]
    sync_id = _int(request.match_info["id"], "the sync's number")
    return await _read(reads.sync_detail, deps.engine, sync_id, deps.reader)


@signed_in()
async def get_resources(request: web.Request, _session: Session) -> web.StreamResponse:
    return await _read(reads.resources, request.app[CONSOLE].engine)


@signed_in(csrf=True)
async def post_review(request: web.Request, _session: Session) -> web.StreamResponse:
    deps = request.app[CONSOLE]
    body = await _small_json(request)
    base, head = body.get("base"), body.get("head")
    if not isinstance(head, str) or not head or (base is not None and not isinstance(base, str)):
        raise web.HTTPBadRequest(text="'head' (and 'base', if given) must name refs")
    if not base:
        base = await asyncio.to_thread(reads.applied_revision, deps.engine)
    return await _read(reads.review, deps.reader, base, head)


@signed_in(csrf=True)
async def post_chat(request: web.Request, session: Session) -> web.StreamResponse:
    return await playground.chat(request, may_preview=session.may_act)


# --- actions ------------------------------------------------------------------------------


@signed_in(act=True)
async def post_action(request: web.Request, _session: Session) -> web.StreamResponse:
    deps = request.app[CONSOLE]
    action = request.match_info["action"]
    body = await _small_json(request)
    if action == "suspend":
        reason = body.get("reason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS):
            raise web.HTTPBadRequest(text=f"'reason' must be text of at most {MAX_REASON_CHARS}")
        await asyncio.to_thread(
            set_suspended, deps.engine, True, reason or "suspended from the console"
        )
    elif action == "resume":
        await asyncio.to_thread(set_suspended, deps.engine, False)
    elif action == "reconcile":
        await asyncio.to_thread(request_reconcile, deps.engine)
    else:
        return error_response(404, "unknown_action", f"there is no action {action!r}")
    log.info("console action", extra={"action": action, "remote": request.remote})
    deps.wake_reconciler(f"{action} from the console")
    return _json({"done": action})


def add_console(app: web.Application, deps: ConsoleDeps) -> None:
    """After ``add_chat_routes`` and ``add_preview_route`` (the playground uses both)."""
    app[CONSOLE] = deps
    app.router.add_get("/", page)
    app.router.add_get("/console/assets/{file}", asset)
    app.router.add_get("/console/api/session", get_session)
    app.router.add_post("/console/api/session", sign_in)
    app.router.add_delete("/console/api/session", sign_out)
    app.router.add_get("/console/api/overview", get_overview)
    app.router.add_get("/console/api/syncs", get_syncs)
    app.router.add_get("/console/api/syncs/{id}", get_sync)
    app.router.add_get("/console/api/resources", get_resources)
    app.router.add_post("/console/api/review", post_review)
    app.router.add_post("/console/api/chat/{name}", post_chat)
    app.router.add_post("/console/api/actions/{action}", post_action)
