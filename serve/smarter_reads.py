"""Smarter's REST reads of LLM clients: the list, one client, its plugins, extensions, keys.

Serve stage, added by ``chat_routes.add_chat_routes`` under ``/api/v1/llm-clients/``, in the
shapes the official SDK reads (``serve/smarter_objects.py``). A client is named by its integer
id, its hashed id or its name. Who sees what: without a key, the public clients; a client's
key adds the clients it opens; the admin key (``--admin-key-digest``) sees them all. A client
the caller may not see is answered as one that does not exist (404), so a list or a guess
tells nothing of the others. Keys are shown by id and short digest, never the key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from aiohttp import web

from reconciler.api import digests_match
from serve import jsonwire
from serve.chat_http import CHAT, ChatDeps, ChatError, presented
from serve.smarter_objects import (
    api_key_links,
    extension_links,
    llm_client_object,
    plugin_links,
)
from serve.smarter_routes import base_url, smarter_error_of
from serve.snapshot import CompiledClient, Snapshot


class Caller:
    """What the request's key lets it see."""

    def __init__(self, request: web.Request, deps: ChatDeps, snapshot: Snapshot) -> None:
        self.digests = presented(request)
        self.now = dt.datetime.now(dt.UTC)
        self.admin = (
            self.digests is not None
            and deps.admin_key_digest is not None
            and digests_match(self.digests, [deps.admin_key_digest])
        )
        known = None
        if self.digests is not None:
            known = snapshot.tokens.get(self.digests["sha256"]) or snapshot.tokens.get(
                self.digests["sha512"]
            )
        self.usable = known is None or (
            known.active and (known.expires_at is None or self.now < known.expires_at)
        )
        """False for a key known to be deactivated or expired: it opens nothing."""

    def may_see(self, client: CompiledClient) -> bool:
        if self.admin or not client.key.required:
            return True
        return (
            self.usable
            and self.digests is not None
            and not client.key.expired(self.now)
            and digests_match(self.digests, client.key.digests)
        )


def _host_suffix(deps: ChatDeps) -> str:
    return f".{deps.settings.account_number}.api.{deps.settings.api_domain}"


async def list_clients(request: web.Request) -> web.Response:
    """``GET /api/v1/llm-clients/``: the clients the caller may see, by name."""
    deps = request.app[CHAT]
    snapshot = deps.state.snapshot
    caller = Caller(request, deps, snapshot)
    base, suffix = base_url(request), _host_suffix(deps)
    listed = [
        llm_client_object(client, base, suffix)
        for name, client in sorted(snapshot.clients.items())
        if caller.may_see(client)
    ]
    return jsonwire.response(listed)


def _one(
    build: Callable[[CompiledClient, web.Request, ChatDeps], Any],
) -> Callable[[web.Request], Any]:
    """A read of one client the caller may see, named in the path; 404 otherwise."""

    async def handler(request: web.Request) -> web.Response:
        deps = request.app[CHAT]
        snapshot = deps.state.snapshot
        reference = request.match_info["name"]
        client = snapshot.client(reference)
        if client is None or not Caller(request, deps, snapshot).may_see(client):
            error = ChatError(
                404, "unknown_client", f"there is no LLM client named or numbered {reference!r}"
            )
            return smarter_error_of(error, "get")
        return jsonwire.response(build(client, request, deps))

    return handler


retrieve_client = _one(
    lambda client, request, deps: llm_client_object(client, base_url(request), _host_suffix(deps))
)
client_plugins = _one(lambda client, _request, _deps: plugin_links(client))
client_extensions = _one(lambda client, _request, _deps: extension_links(client))
client_api_keys = _one(lambda client, _request, _deps: api_key_links(client))


def add_smarter_reads(app: web.Application) -> None:
    app.router.add_get("/api/v1/llm-clients/", list_clients)
    app.router.add_get("/api/v1/llm-clients/{name}/", retrieve_client)
    app.router.add_get("/api/v1/llm-clients/{name}/plugins/", client_plugins)
    app.router.add_get("/api/v1/llm-clients/{name}/extensions", client_extensions)
    app.router.add_get("/api/v1/llm-clients/{name}/extensions/", client_extensions)
    app.router.add_get("/api/v1/llm-clients/{name}/apikeys/", client_api_keys)
