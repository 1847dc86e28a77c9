"""Smarter's manifest API, ``POST /api/v1/cli/{verb}/...``, as its SDK and CLI call it.

Serve stage, added by ``add_manifest_api``. Answers are journaled as Smarter's are
(``{"api", "metadata": {"command", "thing"}, "data"}``), errors in Smarter's shape
(``serve/errors.py``). What each verb does here:

- ``whoami``, ``version``, ``resources`` (the kinds), ``validate`` (a manifest in; ``valid`` and
  every error with its position out), ``json-schema/{Kind}`` and ``example-manifest/{Kind}``
  answer anyone: they tell nothing of the applied state.
- ``status`` answers as ``/api/v1/status`` does (``--protect status`` asks for the admin key).
- ``get/{Kind}``, ``describe/{Kind}?name=`` and ``logs/{Kind}?name=`` read the applied state
  (system prompts, queries, endpoints: never a secret value or a key) and need the admin key.
- ``apply``, ``delete``, ``deploy`` and ``undeploy`` are refused with 409: this server follows
  git, and the sentence says which repository, ref and path to change instead.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import Engine

from reconciler.api import describe, digests_match, get_table
from reconciler.errors import DescribeError
from reconciler.sam.base import closest
from reconciler.sam.examples import EXAMPLES
from reconciler.sam.kinds import KINDS
from reconciler.sam.load import LoadOptions
from reconciler.sam.revision import validate_files
from reconciler.sam.schema import kind_schema
from reconciler.store.resource_log import resource_log
from serve import jsonwire
from serve.chat_http import CHAT, ChatError, json_object, presented
from serve.errors import SMARTER_API, smarter_error_response
from serve.settings import FollowerSpec

PACKAGES = ("samops", "pydantic", "sqlalchemy", "aiohttp", "openai", "gitpython")
REFUSED_VERBS = ("apply", "delete", "deploy", "undeploy")


@dataclass(frozen=True, slots=True)
class ManifestApiDeps:
    engine: Engine
    follower: FollowerSpec | None = None
    """What this server follows, named in the refusals (None for ``samops serve``)."""
    admin_key_digest: str | None = None
    protect: frozenset[str] = frozenset()
    status: Callable[[], dict[str, Any]] | None = None
    """The document of ``/api/v1/status``."""


MANIFEST_API = web.AppKey("manifest_api", ManifestApiDeps)


@dataclass(frozen=True, slots=True)
class _ManifestFile:
    path: str
    blob: str
    data: bytes


def journaled(data: Any, command: str, thing: str = "None") -> web.Response:
    document = {"api": SMARTER_API, "metadata": {"command": command, "thing": thing}, "data": data}
    return jsonwire.response(document)


def _is_admin(request: web.Request, deps: ManifestApiDeps) -> bool:
    digests = presented(request)
    return (
        digests is not None
        and deps.admin_key_digest is not None
        and digests_match(digests, [deps.admin_key_digest])
    )


def _need_admin(request: web.Request, deps: ManifestApiDeps, what: str) -> None:
    if deps.admin_key_digest is None:
        raise ChatError(
            403,
            "admin_key_not_configured",
            f"{what} reads the applied state and needs the admin key; this server has none "
            "(hint: start it with --admin-key-digest, from 'samops keys create admin')",
        )
    if not _is_admin(request, deps):
        raise ChatError(401, "admin_key_required", f"{what} needs the admin key")


def _kind(request: web.Request) -> str:
    given = request.match_info["kind"]
    for kind in KINDS:
        if kind.lower() == given.lower():
            return kind
    suggestion = closest(given, KINDS)
    hint = f"did you mean {suggestion!r}? " if suggestion else ""
    raise ChatError(
        404, "unknown_kind", f"unknown kind {given!r} ({hint}kinds: {', '.join(KINDS)})"
    )


def _name(request: web.Request) -> str:
    name = request.query.get("name", "").strip()
    if not name:
        raise ChatError(400, "missing_name", "this verb needs ?name=<the resource's name>")
    return name


def _source(follower: FollowerSpec | None) -> str:
    """What the server follows, for a person: a remote URL without its credentials."""
    if follower is None:
        return "the git repository its daemon follows (see 'samops status')"
    where = follower.where()
    if follower.path is not None and follower.repo is None and follower.url is None:
        return f"the directory {where}"
    folder = f", folder {follower.subpath}" if follower.subpath else ""
    return f"the git repository {where} at {follower.ref}{folder}"


# --- verbs ------------------------------------------------------------------------------------


async def whoami(request: web.Request, deps: ManifestApiDeps) -> web.Response:
    chat = request.app[CHAT]
    digests = presented(request)
    username, admin = "anonymous", _is_admin(request, deps)
    if admin:
        username = "admin"
    elif digests is not None:
        token = chat.state.snapshot.tokens.get(digests["sha256"]) or chat.state.snapshot.tokens.get(
            digests["sha512"]
        )
        username = token.token if token is not None else username
    account = chat.settings.account_number
    return journaled(
        {
            "user": {"id": 0, "username": username, "isStaff": admin, "isSuperuser": admin},
            "account": {"id": 1, "name": "samops", "accountNumber": account},
            "environment": "samops",
        },
        "whoami",
    )


async def version(_request: web.Request, _deps: ManifestApiDeps) -> web.Response:
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    data = {"api": {"version": versions["samops"] or "0", "python": versions}, "cli": None}
    return journaled(data, "version")


async def status(request: web.Request, deps: ManifestApiDeps) -> web.Response:
    if "status" in deps.protect and not _is_admin(request, deps):
        raise ChatError(401, "admin_key_required", "status is protected: it needs the admin key")
    document = await asyncio.to_thread(deps.status) if deps.status is not None else {}
    snapshot = request.app[CHAT].state.snapshot
    data = {
        "infrastructures": {"database": {"dialect": deps.engine.dialect.name}, "samops": document},
        "compute": {"generation": snapshot.generation, "clients": len(snapshot.clients)},
    }
    return journaled(data, "status")


async def resources(_request: web.Request, _deps: ManifestApiDeps) -> web.Response:
    kinds = [
        {
            "Singular": kind.lower(),
            "Plural": f"{kind.lower()}s",
            "APIKind": kind,
            "Display": kind,
            "DisplayPlural": f"{kind}s",
            "Deployable": False,
        }
        for kind in KINDS
    ]
    return journaled(kinds, "resources")


async def validate(request: web.Request, _deps: ManifestApiDeps) -> web.Response:
    """A manifest alone (the body, JSON or YAML as a JSON string): every error with its
    position in the body; references to other resources are not checked here."""
    settings = request.app[CHAT].settings
    body = await json_object(request, settings)
    text = (
        jsonwire.dumps(body).decode()
        if not isinstance(body.get("manifest"), str)
        else body["manifest"]
    )
    revision = await asyncio.to_thread(
        validate_files,
        "request",
        [_ManifestFile("manifest.yaml", "request", text.encode())],
        options=LoadOptions(),
        check_references=False,
    )
    data = {
        "valid": revision.valid,
        "errors": [d.to_json() for d in revision.errors],
        "warnings": [d.to_json() for d in revision.warnings],
        "references_checked": False,
    }
    kind = str(body.get("kind") or "None")
    return journaled(data, "validate", kind)


async def get(request: web.Request, deps: ManifestApiDeps) -> web.Response:
    kind = _kind(request)
    _need_admin(request, deps, "get")
    name = request.query.get("name") or None
    try:
        headings, rows = await asyncio.to_thread(get_table, deps.engine, kind, name)
    except DescribeError as exc:
        raise ChatError(404, "not_found", str(exc)) from exc
    keys = [h.lower().replace(" ", "_") for h in headings]
    items = [dict(zip(keys, row, strict=True)) for row in rows]
    data = {
        "apiVersion": SMARTER_API,
        "kind": kind,
        "name": name,
        "metadata": {"count": len(items)},
        "data": {"titles": [{"name": k, "type": "CharField"} for k in keys], "items": items},
    }
    return journaled(data, "get", kind)


def _applied_read(
    command: str, read: Callable[[Engine, str, str], Any]
) -> Callable[[web.Request, ManifestApiDeps], Awaitable[web.Response]]:
    """A read of one applied resource, ``{Kind}/?name=``, by the admin: 404 when none."""

    async def handler(request: web.Request, deps: ManifestApiDeps) -> web.Response:
        kind = _kind(request)
        name = _name(request)
        _need_admin(request, deps, command)
        try:
            found = await asyncio.to_thread(read, deps.engine, kind, name)
        except DescribeError as exc:
            raise ChatError(404, "not_found", str(exc)) from exc
        return journaled(found, command, kind)

    return handler


describe_one = _applied_read("describe", describe)
logs = _applied_read("logs", resource_log)


async def json_schema(request: web.Request, _deps: ManifestApiDeps) -> web.Response:
    kind = _kind(request)
    return journaled(kind_schema(kind), "json-schema", kind)


async def example_manifest(request: web.Request, _deps: ManifestApiDeps) -> web.Response:
    kind = _kind(request)
    return journaled(EXAMPLES[kind], "example-manifest", kind)


def refused(verb: str) -> Callable[[web.Request, ManifestApiDeps], Awaitable[web.Response]]:
    async def handler(request: web.Request, deps: ManifestApiDeps) -> web.Response:
        kind = request.match_info.get("kind", "")
        source = _source(deps.follower if _is_admin(request, deps) else None)
        raise ChatError(
            409,
            "follows_git",
            f"{verb} is not done here: this server follows {source}, and what it serves "
            f"changes only with a commit there (hint: {_how(verb, kind)}, commit and push; "
            "'samops plan --base main --head HEAD' shows the change first)",
        )

    return handler


def _how(verb: str, kind: str) -> str:
    thing = kind or "the resource"
    return {
        "apply": f"edit or add the {thing} manifest",
        "delete": f"remove the {thing} manifest's file (or its document)",
        "deploy": "set spec.config.deployed: true in the LLMClient manifest",
        "undeploy": "set spec.config.deployed: false in the LLMClient manifest",
    }[verb]


Verb = Callable[[web.Request, ManifestApiDeps], Awaitable[web.Response]]


def _route(command: str, verb: Verb) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        deps = request.app[MANIFEST_API]
        try:
            return await verb(request, deps)
        except ChatError as error:
            thing = request.match_info.get("kind", "None")
            return smarter_error_response(
                error.status, error.code, str(error), command=command, thing=thing
            )

    return handler


def add_manifest_api(app: web.Application, deps: ManifestApiDeps) -> None:
    app[MANIFEST_API] = deps
    verbs: dict[str, tuple[Verb, str]] = {  # command: (verb, what follows it in the path)
        "whoami": (whoami, ""),
        "version": (version, ""),
        "status": (status, ""),
        "resources": (resources, ""),
        "validate": (validate, ""),
        "get": (get, "{kind}/"),
        "describe": (describe_one, "{kind}/"),
        "logs": (logs, "{kind}/"),
        "json-schema": (json_schema, "{kind}/"),
        "example-manifest": (example_manifest, "{kind}/"),
    }
    for command, (verb, tail) in verbs.items():
        app.router.add_post(f"/api/v1/cli/{command}/{tail}", _route(command, verb))
    for command in REFUSED_VERBS:
        for tail in ("", "{kind}/"):
            app.router.add_post(f"/api/v1/cli/{command}/{tail}", _route(command, refused(command)))
