"""Preview chat: answer with the configuration of a revision that is not applied.

Beside the serve stage, outside the pipeline: ``samops chat CLIENT --ref REF`` and
``POST /api/v1/preview/llm-clients/{name}/prompt/`` read a revision from git objects, validate
it as the daemon would, compile a throwaway serving snapshot from its desired state
(``ServingState.install``, no database), run one turn and close that snapshot's SQL pools.
Nothing is applied, recorded or written: no session, no sync record, no generation. Without a
ref the CLI answers from the applied state in the database, exactly as the server would.

Where the revision comes from depends on what the server follows: a local repository (any
ref), a remote one (the branch, tag or SHA is fetched into a private ref of samops' own clone,
with a timeout, read, and the ref deleted), or a directory (no revisions: refused). Every
problem becomes a ``PreviewError`` here, at one place, with the HTTP status the route answers
(the CLI exits 1 with the same sentence):

    400 invalid_ref, no_prompt        404 preview_disabled, unknown_ref, unknown_client
    401 missing_key, invalid_key      409 preview_needs_git
    422 invalid_revision (errors with file, line, column)
    502 preview_fetch_failed          503 source_unavailable      504 preview_fetch_timeout

The route is enabled only by an admin key digest (``--admin-key-digest``, ``sha256:<hex>`` as
in SmarterAuthToken manifests): keys are only ever held as digests, compared in constant time.
Git, validation and compilation run in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import Engine

from reconciler.api import RefError, RefReader, desired_state, digests_match
from reconciler.errors import error_document
from reconciler.sam.revision import Revision
from serve import logctx
from serve.chat import Turn, TurnResult, text_of
from serve.chat_http import (
    CHAT,
    ChatError,
    answer_headers,
    json_body,
    new_turn,
    presented,
    turn_errors,
)
from serve.compiled import CompiledClient, Snapshot
from serve.errors import error_response
from serve.providers import Providers
from serve.settings import ProviderSettings, ServingSettings
from serve.smarter_routes import envelope
from serve.snapshot import ServingState


class PreviewError(Exception):
    """A preview cannot be answered; ``status`` is the HTTP answer, ``revision`` the invalid
    revision (for ``invalid_revision``)."""

    def __init__(
        self, status: int, code: str, message: str, *, revision: Revision | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.revision = status, code, revision

    def to_json(self) -> dict[str, Any]:
        """The project's one error shape, plus the revision's errors when it is invalid."""
        if self.revision is None:
            return error_document(self.code, str(self))
        return error_document(
            self.code, str(self), errors=[d.to_json() for d in self.revision.errors]
        )


REF_ERROR_STATUS = {
    "invalid_ref": 400,
    "unknown_ref": 404,
    "invalid_revision": 422,
    "preview_fetch_failed": 502,
    "source_unavailable": 503,
    "preview_fetch_timeout": 504,
}


def read_ref(reader: RefReader, ref: str) -> Revision:
    """The valid revision at ``ref``; any problem as a ``PreviewError``. Blocking."""
    try:
        revision = reader.read(ref)
    except RefError as exc:
        raise PreviewError(REF_ERROR_STATUS[exc.code], exc.code, str(exc)) from exc
    return require_valid(revision, ref)


def require_valid(revision: Revision, ref: str) -> Revision:
    if not revision.valid:
        count = len(revision.errors)
        raise PreviewError(
            422,
            "invalid_revision",
            f"{ref} ({revision.revision[:12]}) is invalid: {count} error{'s' * (count != 1)}; "
            "nothing can be previewed",
            revision=revision,
        )
    return revision


# --- compiling and answering ------------------------------------------------------------------


def compiled(
    revision: Revision, http: aiohttp.ClientSession, settings: ServingSettings
) -> AbstractAsyncContextManager[Snapshot]:
    """A throwaway snapshot of a valid revision."""
    return _snapshot(
        None,
        http,
        settings,
        lambda state: state.install(0, revision.revision, desired_state(revision.resources)),
    )


def applied(
    engine: Engine, http: aiohttp.ClientSession, settings: ServingSettings
) -> AbstractAsyncContextManager[Snapshot]:
    """The applied state in the database, compiled as the server would."""
    return _snapshot(engine, http, settings, _loaded)


@asynccontextmanager
async def _snapshot(
    engine: Engine | None,
    http: aiohttp.ClientSession,
    settings: ServingSettings,
    build: Callable[[ServingState], Snapshot],
) -> AsyncIterator[Snapshot]:
    """The snapshot ``build`` makes of a serving state of its own; its SQL pools are closed
    afterwards."""
    state = ServingState(engine, http, settings)
    try:
        yield await asyncio.to_thread(build, state)
    finally:
        await asyncio.to_thread(state.close)


def _loaded(state: ServingState) -> Snapshot:
    snapshot = state.load()
    if snapshot.revision is None:
        raise PreviewError(
            409,
            "nothing_applied",
            "nothing has been applied to this database yet (hint: samops apply, or give "
            "--ref to chat with a revision of the repository)",
        )
    return snapshot


def find_client(snapshot: Snapshot, name: str) -> CompiledClient:
    client = snapshot.clients.get(name)
    if client is None:
        known = ", ".join(sorted(snapshot.clients)) or "none"
        raise PreviewError(
            404,
            "unknown_client",
            f"there is no LLM client named {name!r} at {(snapshot.revision or '?')[:12]} "
            f"(known clients: {known})",
        )
    return client


@dataclass(frozen=True, slots=True)
class Answer:
    client: str
    revision: str
    result: TurnResult

    def data(self) -> dict[str, Any]:
        """The completion (``model`` is the client), selected plugins and tool calls."""
        return {
            **self.result.completion,
            "model": self.client,
            "plugins_selected": self.result.selected,
            "tool_calls_made": self.result.tool_calls_made(),
            "revision": self.revision,
        }

    @property
    def text(self) -> str:
        return text_of(self.result.completion["choices"][0]["message"].get("content"))


async def chat_once(
    name: str,
    message: str,
    *,
    revision: Revision | None,
    engine: Engine | None,
    providers: ProviderSettings,
    serving: ServingSettings,
) -> Answer:
    """One turn of client ``name``: from ``revision`` (not applied) or else from the applied
    state of ``engine``. Raises ``PreviewError`` or ``UpstreamError``."""
    async with aiohttp.ClientSession() as http:
        upstreams = Providers(providers)
        try:
            if revision is not None:
                source = compiled(revision, http, serving)
            elif engine is not None:
                source = applied(engine, http, serving)
            else:
                raise ValueError("give a revision or a database")
            async with source as snapshot:
                client = find_client(snapshot, name)
                turn = Turn(client, snapshot, upstreams, [{"role": "user", "content": message}])
                result = await turn.run()
                return Answer(client.name, snapshot.revision or "", result)
        finally:
            await upstreams.close()


# --- the HTTP route ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreviewDeps:
    admin_key_digest: str | None
    """``sha256:<hex>`` of the admin key; None leaves the route off (404)."""
    source: RefReader | None
    """Where refs are read (None: the server follows no git repository, 409)."""
    http: aiohttp.ClientSession
    serving: ServingSettings


PREVIEW = web.AppKey("preview", PreviewDeps)


def _admin(request: web.Request, digest: str) -> None:
    key = presented(request)
    if key is None:
        raise PreviewError(
            401,
            "missing_key",
            "the preview route requires the admin key: send 'Authorization: Bearer <key>'",
        )
    if not digests_match(key, [digest]):
        raise PreviewError(401, "invalid_key", "this is not the admin key")


def _messages(body: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The ref and the conversation, as the prompt route reads a request without a session."""
    ref = body.get("ref")
    if not isinstance(ref, str) or not ref:
        raise PreviewError(400, "invalid_ref", "'ref' must name a branch, tag or commit")
    users = [m for m in body["messages"] if m.get("role") == "user"]
    if not users:
        raise PreviewError(400, "no_prompt", "the messages hold no user message")
    prompt = {"role": "user", "content": text_of(users[-1].get("content"))}
    return ref, [*body["messages"][:-1], prompt]


async def preview_prompt(request: web.Request) -> web.Response:
    chat = request.app[CHAT]
    deps = request.app[PREVIEW]
    started = time.perf_counter()
    try:
        if deps.admin_key_digest is None:
            raise PreviewError(
                404,
                "preview_disabled",
                "the preview route is off: start samops with --admin-key-digest "
                "(SAMOPS_ADMIN_KEY_DIGEST)",
            )
        _admin(request, deps.admin_key_digest)
        ref, messages = _messages(await json_body(request, chat.settings))
        if deps.source is None:
            raise PreviewError(
                409,
                "preview_needs_git",
                "this server does not follow a git repository, so it has no revisions to "
                "preview (hint: run samops with --repo or --url)",
            )
        revision = await asyncio.to_thread(read_ref, deps.source, ref)
        async with compiled(revision, deps.http, deps.serving) as snapshot:
            client = find_client(snapshot, request.match_info["name"])
            turn = new_turn(chat, client, snapshot, messages)  # not counted in chat metrics
            async with turn_errors(chat, turn):
                result = await turn.run()
    except PreviewError as error:
        response = web.json_response(error.to_json(), status=error.status)
    except ChatError as error:
        response = error_response(error.status, error.code, str(error))
    else:
        answer = Answer(client.name, revision.revision, result)
        headers = answer_headers(started, result, snapshot, request)
        del headers["x-samops-generation"]  # a preview has a revision, not a generation
        headers["x-samops-revision"] = revision.revision
        data = {**answer.data(), "ref": ref}
        return web.json_response(envelope(data, "preview"), headers=headers)
    response.headers["x-request-id"] = logctx.request_id.get() or ""
    return response


def add_preview_route(app: web.Application, deps: PreviewDeps) -> None:
    """Always registered (answering 404 ``preview_disabled`` without an admin key digest),
    after ``add_chat_routes``, whose settings, providers and request ids it uses."""
    app[PREVIEW] = deps
    app.router.add_post("/api/v1/preview/llm-clients/{name}/prompt/", preview_prompt)
