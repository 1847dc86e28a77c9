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
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import git
from aiohttp import web
from gitdb.exc import BadName, BadObject
from sqlalchemy import Engine

from reconciler.apikeys import digests_match
from reconciler.follow import Follower, LocalGitFollower, RemoteGitFollower
from reconciler.sam.diagnostics import mask_url_credentials
from reconciler.sam.load import LoadOptions
from reconciler.sam.revision import ParseCache, Revision, validate_files
from reconciler.source import GitSource, SourceError
from reconciler.state import desired_state
from serve import logctx
from serve.app import error_response
from serve.chat import Turn, TurnResult, text_of
from serve.chat_routes import (
    CHAT,
    ChatError,
    _envelope,
    _headers,
    _json_body,
    presented,
    turn_errors,
)
from serve.providers import Providers, ProviderSettings
from serve.state import CompiledClient, ServingSettings, ServingState, Snapshot

FETCH_TIMEOUT_SECONDS = 30.0
MAX_REF_CHARS = 256
FULL_SHA = re.compile(r"[0-9a-f]{40}")
SHORT_SHA = re.compile(r"[0-9a-f]{4,39}")
REMOTE_REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]*")
PREVIEW_REF_PREFIX = "refs/samops/preview/"


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
        error: dict[str, Any] = {"code": self.code, "message": str(self)}
        if self.revision is not None:
            error["errors"] = [d.to_json() for d in self.revision.errors]
        return {"error": error}


# --- reading a revision -------------------------------------------------------------------------


class PreviewSource(Protocol):
    def read(self, ref: str) -> Revision:
        """The validated revision at ``ref`` (valid or not). Blocking."""
        ...


@dataclass
class Validator:
    """Validates revisions like the daemon does; parsed files are cached by blob SHA, so a
    preview costs what differs from the last one (the cache is not thread-safe: a lock)."""

    options: LoadOptions = field(default_factory=LoadOptions)
    cache: ParseCache = field(default_factory=lambda: ParseCache(max_entries=5_000))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def read(self, repo: Path, commit: str, path: str, ref: str) -> Revision:
        try:
            snapshot = GitSource(repo, ref=commit, path=path).read()
        except SourceError as exc:  # the path is missing at that commit
            raise PreviewError(422, "invalid_revision", f"{ref}: {exc}") from None
        with self._lock:
            return validate_files(
                snapshot.revision,
                snapshot.files,
                options=self.options,
                cache=self.cache,
                source_diagnostics=snapshot.diagnostics,
            )


def _check_ref(ref: str, pattern: re.Pattern[str] | None = None) -> None:
    """Refs come from HTTP callers: never an option for git, never a refspec."""
    shaped = pattern is None or (pattern.fullmatch(ref) and ".." not in ref)
    if (
        not ref
        or len(ref) > MAX_REF_CHARS
        or ref.startswith("-")
        or not ref.isprintable()
        or not shaped
    ):
        raise PreviewError(400, "invalid_ref", f"{ref[:80]!r} is not a branch, tag or commit name")


def _unknown_ref(ref: str) -> PreviewError:
    return PreviewError(
        404,
        "unknown_ref",
        f"the ref {ref!r} is not a commit of the repository (hint: check the name with "
        "'git branch -a' and 'git tag'; a branch must be pushed where samops reads it)",
    )


@dataclass
class LocalPreviewSource:
    """Any ref of a local repository (the one ``samops run --repo`` follows)."""

    repo: Path
    path: str = ""
    validator: Validator = field(default_factory=Validator)

    def read(self, ref: str) -> Revision:
        _check_ref(ref)
        source = GitSource(self.repo, ref=ref, path=self.path)
        try:
            repository = source.open()
        except SourceError as exc:
            raise PreviewError(503, "source_unavailable", str(exc)) from None
        try:
            commit = source.resolve(repository).hexsha
        except SourceError:
            raise _unknown_ref(ref) from None
        finally:
            repository.close()
        return self.validator.read(self.repo, commit, self.path, ref)


@dataclass
class RemotePreviewSource:
    """A branch, tag or full SHA of the remote that ``samops run --url`` follows, fetched into
    a private ref of samops' clone (deleted after reading); a short SHA that the clone already
    holds also works."""

    follower: RemoteGitFollower
    validator: Validator = field(default_factory=Validator)
    fetch_timeout_seconds: float = FETCH_TIMEOUT_SECONDS

    def read(self, ref: str) -> Revision:
        _check_ref(ref, REMOTE_REF)
        clone = self.follower.clone_dir
        if not (clone / "HEAD").exists():  # before the daemon's first fetch
            try:
                self.follower.fetch()
            except SourceError as exc:
                raise PreviewError(502, "preview_fetch_failed", str(exc)) from None
        private = PREVIEW_REF_PREFIX + uuid.uuid4().hex
        repository = git.Repo(clone)
        try:
            commit = self._fetch(repository, ref, private)
        finally:
            with suppress(git.GitCommandError):
                repository.git.update_ref("-d", private)
            repository.close()
        return self.validator.read(clone, commit, self.follower.path, ref)

    def _fetch(self, repository: git.Repo, ref: str, private: str) -> str:
        if FULL_SHA.fullmatch(ref) and (known := _commit(repository, ref)):
            return known
        if FULL_SHA.fullmatch(ref) or ref.startswith("refs/") or ref == "HEAD":
            wanted = [ref]
        else:
            wanted = [f"refs/heads/{ref}", f"refs/tags/{ref}"]
        for remote_ref in wanted:
            started = time.monotonic()
            try:
                repository.git.fetch(
                    "--no-tags",
                    "--no-write-fetch-head",
                    "origin",
                    f"+{remote_ref}:{private}",
                    kill_after_timeout=self.fetch_timeout_seconds,
                )
            except git.GitCommandError as exc:
                stderr = (exc.stderr or "").strip()
                if "couldn't find remote ref" in stderr or "not our ref" in stderr:
                    continue
                raise self._fetch_failed(ref, stderr, time.monotonic() - started) from None
            found = _commit(repository, private)
            if found is None:
                raise PreviewError(404, "unknown_ref", f"the ref {ref!r} is not a commit")
            return found
        if SHORT_SHA.fullmatch(ref) and (known := _commit(repository, ref)):
            return known
        raise _unknown_ref(ref)

    def _fetch_failed(self, ref: str, stderr: str, seconds: float) -> PreviewError:
        url = mask_url_credentials(self.follower.url)
        if seconds >= self.fetch_timeout_seconds:
            return PreviewError(
                504,
                "preview_fetch_timeout",
                f"fetching {ref!r} from {url} took over {self.fetch_timeout_seconds:g} s",
            )
        lines = stderr.splitlines()
        reason = mask_url_credentials(lines[-1]) if lines else "git failed"
        return PreviewError(
            502,
            "preview_fetch_failed",
            f"cannot fetch {ref!r} from {url}: {reason} (hint: check the network and the "
            "credentials)",
        )


def _commit(repository: git.Repo, name: str) -> str | None:
    try:
        return repository.commit(name).hexsha
    except (BadName, BadObject, ValueError, git.GitCommandError):
        return None


def preview_source_for(follower: Follower | None, options: LoadOptions) -> PreviewSource | None:
    """What a server following ``follower`` previews from (None: a directory, or nothing)."""
    validator = Validator(options)
    if isinstance(follower, LocalGitFollower):
        return LocalPreviewSource(follower.repo, follower.path, validator)
    if isinstance(follower, RemoteGitFollower):
        return RemotePreviewSource(follower, validator)
    return None


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


@asynccontextmanager
async def compiled(
    revision: Revision, http: aiohttp.ClientSession, settings: ServingSettings
) -> AsyncIterator[Snapshot]:
    """A throwaway snapshot of a valid revision; its SQL pools are closed afterwards."""
    state = ServingState(None, http, settings)
    try:
        yield await asyncio.to_thread(
            lambda: state.install(0, revision.revision, desired_state(revision.resources))
        )
    finally:
        await asyncio.to_thread(state.close)


@asynccontextmanager
async def applied(
    engine: Engine, http: aiohttp.ClientSession, settings: ServingSettings
) -> AsyncIterator[Snapshot]:
    """The applied state in the database, compiled as the server would."""
    state = ServingState(engine, http, settings)
    try:
        snapshot = await asyncio.to_thread(state.load)
        if snapshot.revision is None:
            raise PreviewError(
                409,
                "nothing_applied",
                "nothing has been applied to this database yet (hint: samops apply, or give "
                "--ref to chat with a revision of the repository)",
            )
        yield snapshot
    finally:
        await asyncio.to_thread(state.close)


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
            "tool_calls_made": [
                {
                    "name": c.name,
                    "arguments": c.arguments,
                    "result": c.result,
                    "error": c.error,
                    "duration_ms": c.duration_ms,
                }
                for c in self.result.tool_calls
            ],
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
    source: PreviewSource | None
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
        ref, messages = _messages(await _json_body(request, chat.settings))
        if deps.source is None:
            raise PreviewError(
                409,
                "preview_needs_git",
                "this server does not follow a git repository, so it has no revisions to "
                "preview (hint: run samops with --repo or --url)",
            )
        revision = require_valid(await asyncio.to_thread(deps.source.read, ref), ref)
        async with compiled(revision, deps.http, deps.serving) as snapshot:
            client = find_client(snapshot, request.match_info["name"])
            turn = Turn(
                client,
                snapshot,
                chat.providers,
                messages,
                max_tool_rounds=chat.settings.max_tool_rounds,
            )
            async with turn_errors(chat, turn):
                result = await turn.run()
    except PreviewError as error:
        response = web.json_response(error.to_json(), status=error.status)
    except ChatError as error:
        response = error_response(error.status, error.code, str(error))
    else:
        answer = Answer(client.name, revision.revision, result)
        headers = _headers(started, result, snapshot, request)
        del headers["x-samops-generation"]  # a preview has a revision, not a generation
        headers["x-samops-revision"] = revision.revision
        data = {**answer.data(), "ref": ref}
        return web.json_response(_envelope(data, "preview"), headers=headers)
    response.headers["x-request-id"] = logctx.request_id.get() or ""
    return response


def add_preview_route(app: web.Application, deps: PreviewDeps) -> None:
    """Always registered (answering 404 ``preview_disabled`` without an admin key digest),
    after ``add_chat_routes``, whose settings, providers and request ids it uses."""
    app[PREVIEW] = deps
    app.router.add_post("/api/v1/preview/llm-clients/{name}/prompt/", preview_prompt)
