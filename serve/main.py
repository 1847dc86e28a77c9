"""``samops run`` and ``samops serve``: the processes, and the only place that wires them.

The composition root: the only module that knows both the daemon and the server. ``run`` is
the embedded default (reconciler and chat server in one process); ``serve`` is a serve-only
replica that follows the generation of a shared database. Both build the same server: the
serving snapshot, the providers, the session writer, the HTTP application. The root tasks (the
daemon loop, the generation watcher, the HTTP site) are owned here: if one dies the others are
stopped and the error surfaces. SIGTERM and SIGINT stop everything gracefully (sessions
queued for writing are written first). The commands reach the ``samops`` CLI through a package
entry point, so ``reconciler`` never imports this package.

Without ``OPENAI_API_KEY``, the built-in ``openai`` provider is pointed at the project's
scripted upstream, started in-process on a free loopback port, so chat works offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import click
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import Engine

from reconciler.cli import database_options, fail
from reconciler.daemon import Daemon, DaemonSettings
from reconciler.follow import (
    DirectoryFollower,
    Follower,
    LocalGitFollower,
    RemoteGitFollower,
    clone_dir_for,
)
from reconciler.leader import leader_lock_for
from reconciler.logs import Throttled, configure_logging
from reconciler.metrics import ReconcilerMetrics
from reconciler.sam.kinds import DIGEST_PATTERN
from reconciler.sam.load import LoadOptions
from reconciler.sam.render import as_text
from reconciler.sam.revision import Revision
from reconciler.sam.secret_access import SecretAccess
from reconciler.source import SourceError
from reconciler.store.db import (
    DatabaseError,
    default_data_dir,
    open_database,
    open_existing_database,
)
from serve import eventloop, logctx
from serve.app import ServerDeps, create_app
from serve.chat_metrics import ChatMetrics
from serve.chat_routes import ChatDeps, ChatSettings, add_chat_routes
from serve.demo import add_demo_routes
from serve.listening import LimitedSite
from serve.notify import GenerationListener
from serve.options import FollowerSpec, ServerOptions
from serve.preview import (
    Answer,
    LocalPreviewSource,
    PreviewDeps,
    PreviewError,
    PreviewSource,
    Validator,
    add_preview_route,
    chat_once,
    preview_source_for,
    require_valid,
)
from serve.providers import Providers, ProviderSettings, UpstreamError
from serve.scripted import create_scripted_app
from serve.sessions import SessionStore
from serve.state import ServingSettings, ServingState
from serve.workers import (
    WAKE_SIGNAL,
    WorkerConfig,
    WorkerGroup,
    enable_shared_metrics,
    tell_primary_listening,
    wake_primary,
    watch_primary,
)

log = logging.getLogger("samops.run")
GENERATION_POLL_SECONDS = 0.2


def choose_follower(
    path: Path | None, repo: Path | None, url: str | None, ref: str, subpath: str, data_dir: Path
) -> Follower:
    given = [x for x in (path, repo, url) if x is not None]
    if len(given) > 1:
        raise click.UsageError("give one of PATH, --repo or --url")
    if url is not None:
        branch = ref.removeprefix("refs/heads/")
        if branch == "HEAD":
            raise click.UsageError("with --url, --ref names the branch to follow, e.g. main")
        return RemoteGitFollower(url, branch, clone_dir_for(data_dir, url, branch), subpath)
    if repo is not None:
        return LocalGitFollower(repo, ref, subpath)
    return DirectoryFollower(path or Path("."))


async def _start_site(
    runner: web.AppRunner, host: str, port: int, *, reuse_port: bool, max_connections: int
) -> int:
    """Listen, with at most ``max_connections`` open; the port bound (``port`` may be 0)."""
    await runner.setup()
    try:
        await LimitedSite(
            runner, host, port, max_connections=max_connections, reuse_port=reuse_port or None
        ).start()
    except OSError as exc:
        await runner.cleanup()
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror} (hint: "
            "another process uses the port; try --port)"
        ) from None
    return int(runner.addresses[0][1])


@asynccontextmanager
async def offline_upstream(shared: str | None = None) -> AsyncIterator[str | None]:
    """The scripted upstream's URL when no OpenAI key is set (None otherwise): ``shared``
    (the primary's, in a worker), or one started here."""
    if os.environ.get("OPENAI_API_KEY"):
        yield os.environ.get("OPENAI_BASE_URL")
        return
    if shared is not None:
        yield shared
        return
    runner = web.AppRunner(create_scripted_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    log.info(
        "OPENAI_API_KEY is not set: the openai provider answers from the scripted upstream",
        extra={"url": f"http://127.0.0.1:{port}/v1"},
    )
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


async def serve_until_stopped(
    *,
    engine: Engine,
    registry: CollectorRegistry,
    options: ServerOptions,
    describe: str,
    daemon: Daemon | None = None,
    worker: WorkerConfig | None = None,
) -> None:
    """Run the server (and the daemon, if any) until a signal, or until a root task fails.
    With ``options.workers`` > 1 this process is the primary of a worker group; ``worker`` is
    set when this process is one of the workers (``serve/workers.py``)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    primary = worker is None and options.workers > 1
    served = Gauge(
        "samops_served_generation",
        "Generation this process serves (with workers: the lowest any of them serves).",
        registry=registry,
        multiprocess_mode="livemin",
    )
    shared_upstream = worker.scripted_upstream_url if worker is not None else None
    async with offline_upstream(shared_upstream) as openai_url, aiohttp.ClientSession() as http:
        state = ServingState(engine, http, ServingSettings(data_dir=default_data_dir()))
        providers = Providers(
            ProviderSettings(
                openai_base_url=openai_url, openai_api_key=os.environ.get("OPENAI_API_KEY")
            )
        )
        metrics = ChatMetrics(registry)
        sessions = SessionStore(
            engine, on_unstored=lambda reason, turns: metrics.unstored.labels(reason).inc(turns)
        )
        sessions.start()
        refresh = asyncio.Event()

        def wake(reason: str) -> None:
            if daemon is not None:
                daemon.trigger(reason, fetch=True)
            elif worker is not None:
                wake_primary(worker.primary_pid)

        if primary:
            loop.add_signal_handler(WAKE_SIGNAL, wake, "webhook received by a worker")
        app = create_app(
            ServerDeps(
                engine=engine,
                registry=registry,
                wake_reconciler=wake,
                webhook_secret=options.webhook_secret,
                admin_key_digest=options.admin_key_digest,
                protect=frozenset(options.protect),
                served_generation=lambda: state.snapshot.generation,
                worker=worker.index if worker is not None else 0,
                workers_listening=lambda: group is None or group.listening,
                offline_demo=not os.environ.get("OPENAI_API_KEY"),
            )
        )
        add_chat_routes(app, ChatDeps(state, providers, sessions, options.chat, metrics))
        add_preview_route(
            app,
            PreviewDeps(
                admin_key_digest=options.admin_key_digest,
                source=_preview_source(daemon, options),
                http=http,
                serving=state.settings,
            ),
        )
        if options.demo:
            add_demo_routes(app, default_data_dir())
        if daemon is not None:
            daemon.on_generation = lambda _generation: refresh.set()
        group: WorkerGroup | None = None
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=options.keepalive_timeout)
        await asyncio.to_thread(state.load)
        served.set(state.snapshot.generation)
        # What exists now (modules, the application, the first snapshot) lives as long as the
        # process: move it out of the collector's sight, so that the collections a busy
        # server triggers do not scan it again and again (measured: about 15 % less CPU per
        # request at 64 concurrent requests). Python's docs: gc.freeze.
        gc.freeze()
        port = await _start_site(
            runner,
            options.host,
            options.port,
            reuse_port=options.workers > 1 or bool(worker),
            max_connections=options.max_connections,
        )
        if primary:
            group = WorkerGroup(
                _worker_configs(options, port, openai_url), _worker_environment(engine, options)
            )
            group.start()
            describe += f", {options.workers} processes"
        if worker is None:
            click.echo(f"samops: serving on http://{options.host}:{port} ({describe})", err=True)
            if not os.environ.get("OPENAI_API_KEY"):
                click.echo(
                    "samops: OPENAI_API_KEY is not set: the offline demo model answers the "
                    "openai provider ('echo: ...'); set it to use OpenAI",
                    err=True,
                )
        else:
            tell_primary_listening(worker)
        listener = None
        if engine.dialect.name == "postgresql":  # notifications first, the poll as fallback

            def heard() -> None:
                loop.call_soon_threadsafe(refresh.set)

            listener = GenerationListener(engine, heard)
            listener.start()
        tasks = {
            asyncio.create_task(
                _watch_generations(state, refresh, stop, served.set), name="samops-generations"
            ),
            asyncio.create_task(stop.wait(), name="samops-stop"),
        }
        if daemon is not None:
            tasks.add(asyncio.create_task(daemon.run(stop), name="samops-daemon"))
        if group is not None:
            tasks.add(asyncio.create_task(group.supervise(stop), name="samops-workers"))
        if worker is not None:
            tasks.add(
                asyncio.create_task(watch_primary(worker.primary_pid, stop), name="samops-primary")
            )
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            stop.set()
            for task in done:
                task.result()  # surfaces the error of a root task that died
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if listener is not None:
                await asyncio.to_thread(listener.stop)
            if group is not None:
                await group.stop()
            await runner.cleanup()
            await sessions.close()
            await providers.close()
            state.close()
            log.info("stopped")


def _preview_source(daemon: Daemon | None, options: ServerOptions) -> PreviewSource | None:
    """The primary previews from its follower; a worker from the same source, rebuilt."""
    if daemon is not None:
        return preview_source_for(daemon.follower, daemon.settings.load_options)
    spec = options.follower
    if spec is None:
        return None
    follower = choose_follower(
        Path(spec.path) if spec.path else None,
        Path(spec.repo) if spec.repo else None,
        spec.url,
        spec.ref,
        spec.subpath,
        default_data_dir(),
    )
    return preview_source_for(
        follower, LoadOptions(options.allow_plaintext_secrets, SecretAccess.if_configured())
    )


def _worker_configs(
    options: ServerOptions, port: int, openai_url: str | None
) -> list[WorkerConfig]:
    bound = dataclasses.replace(options, port=port)
    shared_upstream = None if os.environ.get("OPENAI_API_KEY") else openai_url
    return [
        WorkerConfig(index, os.getpid(), bound, shared_upstream)
        for index in range(1, options.workers)
    ]


def _worker_environment(engine: Engine, options: ServerOptions) -> dict[str, str]:
    """The secrets a worker needs, passed in the environment (never on its command line)."""
    environment = {"SAMOPS_DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    if options.webhook_secret:
        environment["SAMOPS_WEBHOOK_SECRET"] = options.webhook_secret
    return environment


async def _watch_generations(
    state: ServingState,
    refresh: asyncio.Event,
    stop: asyncio.Event,
    report: Callable[[float], None],
) -> None:
    """Load new generations: at once when the daemon announces one, else by polling. A
    failure (the database down) keeps the last snapshot serving, logged once, then sparsely."""
    failing = Throttled(
        log,
        "cannot load the serving state; serving the last one",
        "the serving state loads again",
    )
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(refresh.wait(), timeout=GENERATION_POLL_SECONDS)
        refresh.clear()
        try:
            snapshot = await asyncio.to_thread(state.load)
        except Exception as exc:  # the database may be down: keep serving the last snapshot
            failing.failed(time.monotonic(), str(exc)[:200])
            continue
        failing.recovered(time.monotonic())
        report(snapshot.generation)


def server_options(command: Callable[..., None]) -> Callable[..., None]:
    """Listening and chat options shared by ``run`` and ``serve``."""
    options = [
        click.option(
            "--admin-key-digest",
            envvar="SAMOPS_ADMIN_KEY_DIGEST",
            callback=lambda _ctx, _param, value: _digest(value),
            help="Digest (sha256:<hex>) of the admin key that may use the preview route, "
            "POST /api/v1/preview/llm-clients/{name}/prompt/ (off without it), and the "
            "--protect endpoints. Make one with `samops keys create admin`. "
            "[env: SAMOPS_ADMIN_KEY_DIGEST]",
        ),
        click.option(
            "--protect",
            envvar="SAMOPS_PROTECT",
            default="",
            callback=lambda _ctx, _param, value: _protected(value),
            metavar="status,metrics",
            help="Operational endpoints that require the admin key (Authorization: Bearer): "
            "status (/api/v1/status), metrics (/metrics); needs --admin-key-digest. "
            "[env: SAMOPS_PROTECT]",
        ),
        click.option(
            "--host",
            envvar="SAMOPS_HOST",
            default="127.0.0.1",
            show_default=True,
            help="Address to listen on. [env: SAMOPS_HOST]",
        ),
        click.option(
            "--port",
            envvar="SAMOPS_PORT",
            default=8080,
            show_default=True,
            type=int,
            help="Port to listen on. [env: SAMOPS_PORT]",
        ),
        click.option(
            "--account-number",
            envvar="SAMOPS_ACCOUNT_NUMBER",
            default="0000-0000-0000",
            show_default=True,
            help="Smarter account number of host-based routes "
            "(<client>.<account>.api.<domain>). [env: SAMOPS_ACCOUNT_NUMBER]",
        ),
        click.option(
            "--api-domain",
            envvar="SAMOPS_API_DOMAIN",
            default="localhost",
            show_default=True,
            help="Domain of host-based routes. [env: SAMOPS_API_DOMAIN]",
        ),
        click.option(
            "--workers",
            envvar="SAMOPS_WORKERS",
            default=1,
            show_default=True,
            type=click.IntRange(1, 64),
            help="Server processes sharing the port (SO_REUSEPORT, Linux). Each is one event "
            "loop on one core; the first also reconciles, the others serve from the database. "
            "About one per core. [env: SAMOPS_WORKERS]",
        ),
        click.option(
            "--keepalive-timeout",
            envvar="SAMOPS_KEEPALIVE_TIMEOUT",
            default=15.0,
            show_default=True,
            type=click.FloatRange(min=0.1),
            help="Seconds a connection may stay idle, or take to send a request's headers, "
            "before it is closed. [env: SAMOPS_KEEPALIVE_TIMEOUT]",
        ),
        click.option(
            "--body-timeout",
            envvar="SAMOPS_BODY_TIMEOUT",
            default=30.0,
            show_default=True,
            type=click.FloatRange(min=0.1),
            help="Seconds a request's body may take to arrive (then 408). "
            "[env: SAMOPS_BODY_TIMEOUT]",
        ),
        click.option(
            "--max-connections",
            envvar="SAMOPS_MAX_CONNECTIONS",
            default=1000,
            show_default=True,
            type=click.IntRange(1),
            help="Connections open at once, per process; more are closed at once. "
            "[env: SAMOPS_MAX_CONNECTIONS]",
        ),
        click.option(
            "--max-tool-rounds",
            envvar="SAMOPS_MAX_TOOL_ROUNDS",
            default=4,
            show_default=True,
            type=click.IntRange(0, 20),
            help="Most tool rounds in one chat turn. [env: SAMOPS_MAX_TOOL_ROUNDS]",
        ),
        click.option(
            "--log-format",
            envvar="SAMOPS_LOG_FORMAT",
            type=click.Choice(["text", "json"]),
            default="text",
            show_default=True,
            help="[env: SAMOPS_LOG_FORMAT]",
        ),
        click.option(
            "--log-level",
            envvar="SAMOPS_LOG_LEVEL",
            default="info",
            show_default=True,
            type=click.Choice(["debug", "info", "warning", "error"]),
            help="[env: SAMOPS_LOG_LEVEL]",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _chat_settings(
    account_number: str, api_domain: str, max_tool_rounds: int, body_timeout: float
) -> ChatSettings:
    return ChatSettings(
        account_number=account_number,
        api_domain=api_domain.lower(),
        max_tool_rounds=max_tool_rounds,
        body_timeout_seconds=body_timeout,
    )


PROTECTABLE = ("status", "metrics")


def _protected(value: str) -> tuple[str, ...]:
    names = tuple(sorted({n.strip() for n in value.split(",") if n.strip()}))
    unknown = [n for n in names if n not in PROTECTABLE]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}: expected some of {', '.join(PROTECTABLE)}")
    return names


def _needs_admin_key(protect: tuple[str, ...], admin_key_digest: str | None) -> None:
    if protect and admin_key_digest is None:
        raise click.UsageError("--protect needs --admin-key-digest (the key that may read them)")


def _digest(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not re.fullmatch(DIGEST_PATTERN, value.strip()):
        raise click.BadParameter(
            "expected sha256:<64 hex> or sha512:<128 hex> (the digest in the manifest that "
            "`samops keys create` prints, or `samops keys digest`), never the key itself"
        )
    return value.strip()


def run_server(main: Awaitable[None], engine: Engine) -> None:
    try:
        eventloop.run(main)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        pass
    finally:
        engine.dispose()
    sys.exit(0)


@click.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option(
    "--repo",
    envvar="SAMOPS_REPO",
    type=click.Path(path_type=Path),
    help="Follow this local git repository (watched for commits). [env: SAMOPS_REPO]",
)
@click.option(
    "--url",
    envvar="SAMOPS_URL",
    help="Follow a remote repository: samops keeps its own clone in the data "
    "directory and fetches on a timer and on webhooks. [env: SAMOPS_URL]",
)
@click.option(
    "--ref",
    envvar="SAMOPS_REF",
    default="HEAD",
    show_default=True,
    help="The ref to follow (with --url: the branch). [env: SAMOPS_REF]",
)
@click.option(
    "--path",
    "subpath",
    envvar="SAMOPS_PATH",
    default="",
    help="Folder inside the repository holding the manifests. [env: SAMOPS_PATH]",
)
@database_options
@server_options
@click.option(
    "--webhook-secret",
    envvar="SAMOPS_WEBHOOK_SECRET",
    help="Enables POST /hooks/git; deliveries must be signed with it. [env: SAMOPS_WEBHOOK_SECRET]",
)
@click.option(
    "--poll-interval",
    envvar="SAMOPS_POLL_INTERVAL",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds between fetches of a remote repository (jittered 10%). "
    "[env: SAMOPS_POLL_INTERVAL]",
)
@click.option(
    "--allow-plaintext-secrets",
    is_flag=True,
    envvar="SAMOPS_ALLOW_PLAINTEXT_SECRETS",
    help="Accept plaintext Secret values (a warning). [env: SAMOPS_ALLOW_PLAINTEXT_SECRETS]",
)
@click.option("--allow-empty", is_flag=True, help="Allow a revision that deletes every LLM client.")
@click.option(
    "--demo", is_flag=True, help="Also serve the example manifests' demo API (make run uses this)."
)
def run(
    path: Path | None,
    repo: Path | None,
    url: str | None,
    ref: str,
    subpath: str,
    database_url: str | None,
    source_name: str,
    host: str,
    port: int,
    account_number: str,
    api_domain: str,
    workers: int,
    max_tool_rounds: int,
    keepalive_timeout: float,
    body_timeout: float,
    max_connections: int,
    log_format: str,
    log_level: str,
    webhook_secret: str | None,
    poll_interval: float,
    allow_plaintext_secrets: bool,
    allow_empty: bool,
    demo: bool,
    admin_key_digest: str | None,
    protect: tuple[str, ...],
) -> None:
    """Follow a repository and serve chat: every commit is validated and applied at once.

    PATH is a directory of manifests; --repo follows a local git repository (a commit, merge,
    reset or checkout that moves --ref is applied at once); --url follows a remote one.
    Invalid commits are recorded and change nothing; the last good state keeps serving.

    \b
    Examples:
      samops run --repo . --path manifests
      samops run --url https://git.example.com/team/bots.git --ref main --webhook-secret "$S"
    """
    _needs_admin_key(protect, admin_key_digest)
    configure_logging(log_format, log_level)
    logctx.install()
    follower = choose_follower(path, repo, url, ref, subpath, default_data_dir())
    try:
        engine = open_database(database_url)
        if not follower.remote:
            follower.read()  # fail now, clearly, on a wrong path or ref
    except (DatabaseError, SourceError) as exc:
        fail(str(exc))
    if workers > 1:
        enable_shared_metrics()
    registry = CollectorRegistry()
    daemon = Daemon(
        engine=engine,
        follower=follower,
        leader=leader_lock_for(engine, source_name),
        metrics=ReconcilerMetrics(registry),
        settings=DaemonSettings(
            source_name=source_name,
            poll_interval_seconds=poll_interval,
            allow_empty=allow_empty,
            load_options=LoadOptions(
                allow_plaintext_secrets=allow_plaintext_secrets,
                secret_access=SecretAccess.if_configured(),
            ),
        ),
    )
    options = ServerOptions(
        host,
        port,
        webhook_secret,
        _chat_settings(account_number, api_domain, max_tool_rounds, body_timeout),
        keepalive_timeout=keepalive_timeout,
        max_connections=max_connections,
        demo=demo,
        admin_key_digest=admin_key_digest,
        protect=protect,
        workers=workers,
        log_format=log_format,
        log_level=log_level,
        follower=FollowerSpec(
            str(path) if path else None, str(repo) if repo else None, url, ref, subpath
        ),
        allow_plaintext_secrets=allow_plaintext_secrets,
    )
    run_server(
        serve_until_stopped(
            engine=engine,
            registry=registry,
            options=options,
            describe=f"following {follower.describe()}",
            daemon=daemon,
        ),
        engine,
    )


@click.command()
@database_options
@server_options
def serve(
    database_url: str | None,
    source_name: str,
    host: str,
    port: int,
    account_number: str,
    api_domain: str,
    workers: int,
    max_tool_rounds: int,
    keepalive_timeout: float,
    body_timeout: float,
    max_connections: int,
    log_format: str,
    log_level: str,
    admin_key_digest: str | None,
    protect: tuple[str, ...],
) -> None:
    """Serve chat from a shared database, without reconciling (a replica).

    Run any number of these behind a load balancer, next to one or more `samops run` on the
    same PostgreSQL database; each follows the applied generation within moments.

    \b
    Examples:
      samops serve --database-url postgresql://samops@db.internal/samops --port 8081
      samops serve --database-url postgresql://samops@db.internal/samops --workers 2
    """
    _needs_admin_key(protect, admin_key_digest)
    configure_logging(log_format, log_level)
    logctx.install()
    try:
        engine = open_database(database_url)
    except DatabaseError as exc:
        fail(str(exc))
    if workers > 1:
        enable_shared_metrics()
    options = ServerOptions(
        host,
        port,
        None,
        _chat_settings(account_number, api_domain, max_tool_rounds, body_timeout),
        keepalive_timeout=keepalive_timeout,
        max_connections=max_connections,
        admin_key_digest=admin_key_digest,
        protect=protect,
        workers=workers,
        log_format=log_format,
        log_level=log_level,
    )
    run_server(
        serve_until_stopped(
            engine=engine,
            registry=CollectorRegistry(),
            options=options,
            describe="serve-only replica",
        ),
        engine,
    )


@click.command("chat")
@click.argument("client")
@click.argument("message")
@click.option(
    "--ref",
    help="Answer with the configuration of this commit, branch or tag of --repo, without "
    "applying it (default: the state applied in the database).",
)
@click.option(
    "--repo",
    envvar="SAMOPS_REPO",
    default=Path("."),
    show_default=True,
    type=click.Path(path_type=Path),
    help="The git repository --ref is read from (git objects, never the working tree). "
    "[env: SAMOPS_REPO]",
)
@click.option(
    "--path",
    "subpath",
    envvar="SAMOPS_PATH",
    default="",
    help="Folder inside the repository holding the manifests. [env: SAMOPS_PATH]",
)
@click.option(
    "--allow-plaintext-secrets",
    is_flag=True,
    envvar="SAMOPS_ALLOW_PLAINTEXT_SECRETS",
    help="Accept plaintext Secret values in --ref (a warning). "
    "[env: SAMOPS_ALLOW_PLAINTEXT_SECRETS]",
)
@database_options
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: the answer; json: the completion, the plugins selected and the tool calls made.",
)
def chat(
    client: str,
    message: str,
    ref: str | None,
    repo: Path,
    subpath: str,
    allow_plaintext_secrets: bool,
    database_url: str | None,
    source_name: str,
    output_format: str,
) -> None:
    """Send MESSAGE ('-': standard input) to CLIENT and print its answer: one turn, no session.

    With --ref, the answer uses the configuration at that revision of --repo, validated but
    NOT applied: preview a branch before merging it. Without --ref, the state applied in the
    database. Nothing is written either way. Client API keys are not required here (whoever
    runs this has the repository or the database); tools really run, with this host's
    secrets. The upstream is OPENAI_BASE_URL / OPENAI_API_KEY, as for the server; without
    OPENAI_API_KEY, samops' scripted upstream answers (offline).

    \b
    Examples:
      samops chat support --ref my-branch --path manifests "Any coupons?"
      samops chat support "#system"              # the applied system prompt, offline
      echo "Any coupons?" | samops chat support - --format json

    Exit codes: 0 answered; 1 unknown client or ref, invalid revision, upstream failure.
    """
    configure_logging("text", "warning")
    if message == "-":
        message = sys.stdin.read()
    try:
        revision = None
        engine = None
        if ref is not None:
            source = LocalPreviewSource(
                repo,
                subpath,
                Validator(LoadOptions(allow_plaintext_secrets, SecretAccess.if_configured())),
            )
            revision = require_valid(source.read(ref), ref)
        else:
            engine = open_existing_database(database_url)  # chat reads; it never creates
        answer = asyncio.run(_chat_once(client, message, revision, engine))
    except PreviewError as exc:
        if exc.revision is not None and output_format == "text":
            click.echo(as_text(exc.revision), err=True)
        _chat_failed(output_format, exc.to_json())
    except (DatabaseError, UpstreamError) as exc:
        code = getattr(exc, "code", "database_error")
        _chat_failed(output_format, {"error": {"code": code, "message": str(exc)}})
    finally:
        if engine is not None:
            engine.dispose()
    if output_format == "json":
        data = answer.data()
        click.echo(
            json.dumps(
                {
                    "client": answer.client,
                    "revision": answer.revision,
                    "ref": ref,
                    "completion": {
                        k: v
                        for k, v in data.items()
                        if k not in ("plugins_selected", "tool_calls_made", "revision")
                    },
                    "plugins_selected": data["plugins_selected"],
                    "tool_calls_made": data["tool_calls_made"],
                },
                indent=2,
            )
        )
    else:
        click.echo(answer.text)


async def _chat_once(
    client: str, message: str, revision: Revision | None, engine: Engine | None
) -> Answer:
    async with offline_upstream() as openai_url:
        return await chat_once(
            client,
            message,
            revision=revision,
            engine=engine,
            providers=ProviderSettings(
                openai_base_url=openai_url, openai_api_key=os.environ.get("OPENAI_API_KEY")
            ),
            serving=ServingSettings(data_dir=default_data_dir()),
        )


def _chat_failed(output_format: str, document: dict[str, Any]) -> NoReturn:
    if output_format == "json":
        click.echo(json.dumps(document, indent=2))
        sys.exit(1)
    fail(document["error"]["message"])
