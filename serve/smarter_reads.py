"""Smarter's REST reads: LLM clients (one, the list, their plugins, extensions and keys),
plugins, providers and their models, Secrets.

Serve stage, added by ``chat_routes.add_chat_routes`` under ``/api/v1/llm-clients/``, in the
shapes the official SDK reads (``serve/smarter_objects.py``). A client is named by its integer
id, its hashed id or its name. Who sees what: without a key, the public clients; a client's
key adds the clients it opens; the admin key (``--admin-key-digest``) sees them all. Plugins
and providers are those of the clients the caller sees (all, to the admin); Secrets (where
each value comes from, never a value) and plugin manifests are the admin's. A resource the
caller may not see is answered as one that does not exist (404), so a list or a guess tells
nothing of the others. Keys are shown by id and short digest, never the key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from reconciler.api import digests_match
from serve import jsonwire
from serve.chat_http import CHAT, ChatDeps, ChatError, presented
from serve.compiled import CompiledClient, CompiledPlugin, Snapshot
from serve.providers import BUILTIN
from serve.smarter_objects import (
    api_key_links,
    extension_links,
    llm_client_object,
    model_object,
    plugin_links,
    plugin_manifest,
    plugin_object,
    provider_object,
    secret_object,
)
from serve.smarter_routes import base_url, smarter_error_of


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


def _not_found(what: str, reference: str) -> ChatError:
    return ChatError(404, f"unknown_{what}", f"there is no {what} named or numbered {reference!r}")


def _admin_only(caller: Caller, what: str) -> None:
    if not caller.admin:
        raise ChatError(401, "admin_key_required", f"{what} needs the admin key")


Read = Callable[[web.Request, ChatDeps, Snapshot, Caller], Any]


def _read(command: str, read: Read) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A GET answered from the request's snapshot, as JSON; ChatErrors in Smarter's shape."""

    async def handler(request: web.Request) -> web.Response:
        deps = request.app[CHAT]
        snapshot = deps.state.snapshot
        try:
            return jsonwire.response(read(request, deps, snapshot, Caller(request, deps, snapshot)))
        except ChatError as error:
            return smarter_error_of(error, command)

    return handler


def _visible(snapshot: Snapshot, caller: Caller) -> list[CompiledClient]:
    return [c for _, c in sorted(snapshot.clients.items()) if caller.may_see(c)]


def _client(request: web.Request, snapshot: Snapshot, caller: Caller) -> CompiledClient:
    """The client named in the path, if the caller may see it."""
    reference = request.match_info["name"]
    client = snapshot.client(reference)
    if client is None or not caller.may_see(client):
        raise ChatError(
            404, "unknown_client", f"there is no LLM client named or numbered {reference!r}"
        )
    return client


# --- LLM clients -------------------------------------------------------------------------------


def list_clients(request: web.Request, deps: ChatDeps, snapshot: Snapshot, caller: Caller) -> Any:
    base, suffix = base_url(request), _host_suffix(deps)
    return [llm_client_object(c, base, suffix) for c in _visible(snapshot, caller)]


def retrieve_client(
    request: web.Request, deps: ChatDeps, snapshot: Snapshot, caller: Caller
) -> Any:
    client = _client(request, snapshot, caller)
    return llm_client_object(client, base_url(request), _host_suffix(deps))


def client_plugins(
    request: web.Request, _deps: ChatDeps, snapshot: Snapshot, caller: Caller
) -> Any:
    return plugin_links(_client(request, snapshot, caller))


def client_extensions(
    request: web.Request, _deps: ChatDeps, snapshot: Snapshot, caller: Caller
) -> Any:
    return extension_links(_client(request, snapshot, caller))


def client_api_keys(
    request: web.Request, _deps: ChatDeps, snapshot: Snapshot, caller: Caller
) -> Any:
    return api_key_links(_client(request, snapshot, caller))


# --- plugins, providers, secrets ---------------------------------------------------------------


def _plugins(snapshot: Snapshot, caller: Caller) -> dict[str, CompiledPlugin]:
    """The plugins of the clients the caller may see (every plugin, to the admin)."""
    if caller.admin:
        return dict(sorted(snapshot.plugins.items()))
    seen = {p.name: p for c in _visible(snapshot, caller) for p in c.plugins}
    return dict(sorted(seen.items()))


def list_plugins(_request: web.Request, _deps: ChatDeps, snapshot: Snapshot, caller: Caller) -> Any:
    return [plugin_object(p) for p in _plugins(snapshot, caller).values()]


def retrieve_plugin(
    request: web.Request, _deps: ChatDeps, snapshot: Snapshot, caller: Caller
) -> Any:
    """A plugin's manifest (the SDK's ``plugins.retrieve``): the admin's, as describe's."""
    _admin_only(caller, "a plugin's manifest")
    reference = request.match_info["name"]
    for plugin in snapshot.plugins.values():
        if reference in (
            plugin.name,
            str(plugin_object(plugin)["id"]),
            plugin_object(plugin)["hashedId"],
        ):
            return plugin_manifest(plugin)
    raise _not_found("plugin", reference)


def _providers(deps: ChatDeps, snapshot: Snapshot, caller: Caller) -> dict[str, dict[str, Any]]:
    """Providers with the models used with them here, as the caller may see them."""
    builtin = deps.providers.settings.openai_base_url
    names = set(snapshot.provider_documents) | {BUILTIN}
    clients = list(snapshot.clients.values()) if caller.admin else _visible(snapshot, caller)
    used: dict[str, set[str]] = {}
    for client in clients:
        used.setdefault(client.provider, set()).add(client.model)
        for plugin in client.plugins:
            provider = plugin.document.spec.prompt.provider
            used.setdefault(provider, set()).add(plugin.model or client.model)
    shown = names if caller.admin else set(used) & names
    providers = {}
    for name in sorted(shown):
        document = snapshot.provider_documents.get(name)
        found = provider_object(name, document, builtin if document is None else None)
        models = set(used.get(name, ()))
        if found["defaultModel"]:
            models.add(found["defaultModel"])
        providers[name] = {"object": found, "models": sorted(models)}
    return providers


def list_providers(
    _request: web.Request, deps: ChatDeps, snapshot: Snapshot, caller: Caller
) -> Any:
    return [p["object"] for p in _providers(deps, snapshot, caller).values()]


def _provider(request: web.Request, deps: ChatDeps, snapshot: Snapshot, caller: Caller) -> Any:
    reference = request.match_info["name"]
    for name, found in _providers(deps, snapshot, caller).items():
        if reference in (name, str(found["object"]["id"]), found["object"]["hashedId"]):
            return found
    raise _not_found("provider", reference)


def retrieve_provider(
    request: web.Request, deps: ChatDeps, snapshot: Snapshot, caller: Caller
) -> Any:
    return _provider(request, deps, snapshot, caller)["object"]


def provider_models(
    request: web.Request, deps: ChatDeps, snapshot: Snapshot, caller: Caller
) -> Any:
    return [model_object(m) for m in _provider(request, deps, snapshot, caller)["models"]]


def list_secrets(_request: web.Request, _deps: ChatDeps, snapshot: Snapshot, caller: Caller) -> Any:
    _admin_only(caller, "the list of Secrets")
    return [secret_object(s) for _, s in sorted(snapshot.secrets.items())]


def retrieve_secret(
    request: web.Request, _deps: ChatDeps, snapshot: Snapshot, caller: Caller
) -> Any:
    _admin_only(caller, "a Secret")
    reference = request.match_info["name"]
    for secret in snapshot.secrets.values():
        shown = secret_object(secret)
        if reference in (secret.name, str(shown["id"]), shown["hashedId"]):
            return shown
    raise _not_found("Secret", reference)


ROUTES: dict[str, tuple[str, Read]] = {
    "/api/v1/llm-clients/": ("get", list_clients),
    "/api/v1/llm-clients/{name}/": ("get", retrieve_client),
    "/api/v1/llm-clients/{name}/plugins/": ("get", client_plugins),
    "/api/v1/llm-clients/{name}/extensions": ("get", client_extensions),
    "/api/v1/llm-clients/{name}/extensions/": ("get", client_extensions),
    "/api/v1/llm-clients/{name}/apikeys/": ("get", client_api_keys),
    "/api/v1/plugins/": ("get", list_plugins),
    "/api/v1/plugins/{name}/": ("get", retrieve_plugin),
    "/api/v1/providers/": ("get", list_providers),
    "/api/v1/providers/{name}/": ("get", retrieve_provider),
    "/api/v1/providers/{name}/models/": ("get", provider_models),
    "/api/v1/secrets/": ("get", list_secrets),
    "/api/v1/secrets/{name}/": ("get", retrieve_secret),
}
"""Each path, the journal command its errors name, and what it reads."""


def add_smarter_reads(app: web.Application) -> None:
    for path, (command, read) in ROUTES.items():
        app.router.add_get(path, _read(command, read))
