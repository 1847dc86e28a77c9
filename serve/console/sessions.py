"""Who is signed in to the console, and whether a request may act.

Beside the serve stage. A person signs in with the admin key (role ``admin``: may suspend,
resume, reconcile) or the viewer key (role ``viewer``: reads only); keys are held as digests
and compared in constant time (``reconciler/apikeys.py``). A sign-in creates a random session
token, sent once as the cookie ``samops_console`` (``HttpOnly``, ``SameSite=Strict``, ``Secure``
when the request came over TLS, to samops or to a proxy in front: ``serve/tls.py``) and
stored only as its sha256 in ``console_sessions``, shared by every process and replica: a
cookie works wherever a request lands, and signing out ends it everywhere.

Cross-site requests: the cookie is ``SameSite=Strict`` and every request that changes something
must also carry ``X-CSRF-Token``, an HMAC of the session token that the console's script reads
from ``GET /console/api/session`` (a page of another site can neither read that answer nor
the cookie, so it cannot forge the header).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from sqlalchemy import Engine, delete, insert, select

from reconciler.api import digests_match, presented_digests
from reconciler.store import schema
from reconciler.store.db import reading
from serve.tls import came_over_tls

Role = Literal["admin", "viewer"]
COOKIE = "samops_console"
LIFETIME = dt.timedelta(hours=12)
MAX_KEY_CHARS = 512


@dataclass(frozen=True, slots=True)
class Access:
    """The digests that sign in, by role (``sha256:<hex>``)."""

    admin: tuple[str, ...] = ()
    viewer: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.admin or self.viewer)

    def role_of(self, key: str) -> Role | None:
        if not key or len(key) > MAX_KEY_CHARS:
            return None
        presented = presented_digests(key)
        if digests_match(presented, self.admin):
            return "admin"
        if digests_match(presented, self.viewer):
            return "viewer"
        return None


@dataclass(frozen=True, slots=True)
class Session:
    role: Role
    token: str

    @property
    def csrf(self) -> str:
        return csrf_token(self.token)

    @property
    def may_act(self) -> bool:
        return self.role == "admin"


def csrf_token(token: str) -> str:
    return hmac.new(token.encode(), b"samops console csrf", hashlib.sha256).hexdigest()


def _digest(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Sessions:
    engine: Engine

    def create(self, role: Role) -> Session:
        """A new session (and expired ones deleted). Blocking."""
        token = secrets.token_urlsafe(32)
        now = _now()
        table = schema.console_sessions
        with self.engine.begin() as connection:
            connection.execute(delete(table).where(table.c.expires_at < now))
            connection.execute(
                insert(table),
                {
                    "token_digest": _digest(token),
                    "role": role,
                    "created_at": now,
                    "expires_at": now + LIFETIME,
                },
            )
        return Session(role, token)

    def find(self, token: str) -> Session | None:
        """The live session of a cookie's token, if any. Blocking."""
        if not token or len(token) > 100:
            return None
        table = schema.console_sessions
        with reading(self.engine) as connection:
            row = connection.execute(
                select(table.c.role, table.c.expires_at).where(
                    table.c.token_digest == _digest(token)
                )
            ).first()
            connection.rollback()
        if row is None or _aware(row.expires_at) <= _now():
            return None
        return Session(row.role, token)

    def end(self, token: str) -> None:
        """Sign out (everywhere: the row is gone). Blocking."""
        table = schema.console_sessions
        with self.engine.begin() as connection:
            connection.execute(delete(table).where(table.c.token_digest == _digest(token)))


async def current(request: web.Request, sessions: Sessions) -> Session | None:
    token = request.cookies.get(COOKIE, "")
    if not token:
        return None
    return await asyncio.to_thread(sessions.find, token)


def set_cookie(response: web.StreamResponse, request: web.Request, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        session.token,
        max_age=int(LIFETIME.total_seconds()),
        path="/",
        httponly=True,
        secure=came_over_tls(request),
        samesite="Strict",
    )


def clear_cookie(response: web.StreamResponse, request: web.Request) -> None:
    response.del_cookie(COOKIE, path="/", secure=came_over_tls(request), samesite="Strict")


def csrf_ok(request: web.Request, session: Session) -> bool:
    sent = request.headers.get("X-CSRF-Token", "")
    return bool(sent) and hmac.compare_digest(sent, session.csrf)
