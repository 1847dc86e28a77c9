"""The composition root: builds the serving process and owns its lifecycle.

Serve stage. ``serve_until_stopped`` is the only place that knows both the daemon and the
server. ``samops run`` is the embedded default (reconciler and chat server in one process);
``samops serve`` is a serve-only replica that follows the generation of a shared database.
Both build the same server: the serving snapshot, the providers, the session writer, the HTTP
application. The root tasks (the daemon loop, the generation watcher, the HTTP site, the
worker supervisor) are named and owned here: if one dies the others are stopped and the error
surfaces. SIGTERM and SIGINT stop everything gracefully (sessions queued for writing are
written first). The commands that start it are in ``serve/cli.py``.

Without ``OPENAI_API_KEY``, the built-in ``openai`` provider is pointed at the offline demo
model, started in-process on a free loopback port, so chat works offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import click
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import Engine

from reconciler.api import (
    Daemon,
    DirectoryFollower,
    Follower,
    LocalGitFollower,
    Outbound,
    RefReader,
    RemoteGitFollower,
    Throttled,
    clone_dir_for,
    outbound_targets,
    ref_reader_for,
)
from reconciler.sam.load import LoadOptions
from reconciler.sam.secret_access import SecretAccess
from reconciler.store.db import (
    default_data_dir,
)
from reconciler.store.status import status_document
from serve import eventloop
from serve.app import ServerDeps, create_app
from serve.budgets import Budgets
from serve.chat_http import ChatDeps
from serve.chat_metrics import ChatMetrics
from serve.chat_routes import add_chat_routes
from serve.console import add_console
from serve.console.startup import console_deps, console_line, console_sign_in
from serve.demo import add_demo_routes
from serve.heartbeat import Heartbeat
from serve.limits import Limiter
from serve.listening import LimitedSite
from serve.manifest_api import ManifestApiDeps, add_manifest_api
from serve.notify import GenerationListener
from serve.offline import offline_upstream
from serve.preview import (
    PreviewDeps,
    add_preview_route,
)
from serve.providers import Providers
from serve.sessions import SessionStore
from serve.settings import (
    ProviderSettings,
    ServerOptions,
    ServingSettings,
    UpstreamEnvironment,
)
from serve.snapshot import ServingState
from serve.tls import CertificateReloader, server_context
from serve.usage import UsageMetrics, UsageRecorder
from serve.workers import (
    WAKE_SIGNAL,
    WorkerConfig,
    WorkerGroup,
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
    runner: web.AppRunner,
    options: ServerOptions,
    *,
    reuse_port: bool,
    tls: ssl.SSLContext | None,
) -> int:
    """Listen (HTTPS with ``tls``), with at most ``options.max_connections`` open; the port
    bound (``options.port`` may be 0)."""
    host, port = options.host, options.port
    await runner.setup()
    try:
        await LimitedSite(
            runner,
            host,
            port,
            max_connections=options.max_connections,
            reuse_port=reuse_port or None,
            ssl_context=tls,
        ).start()
    except OSError as exc:
        await runner.cleanup()
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror} (hint: "
            "another process uses the port; try --port)"
        ) from exc
    return int(runner.addresses[0][1])


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
    sign_in_key = None
    if daemon is not None and worker is None:
        options, sign_in_key = console_sign_in(options)
    served = Gauge(
        "samops_served_generation",
        "Generation this process serves (with workers: the lowest any of them serves).",
        registry=registry,
        multiprocess_mode="livemin",
    )
    load_seconds = Gauge(
        "samops_snapshot_last_load_seconds",
        "Seconds this process took to load its last new generation: read the rows and "
        "compile what changed (with workers: the slowest).",
        registry=registry,
        multiprocess_mode="livemax",
    )
    loads = Counter(
        "samops_snapshot_loads_total",
        "New generations loaded, by what was read: rows (the rows the generation changed, "
        "from its change record) or all (every row, compared).",
        ["read"],
        registry=registry,
    )
    shared_upstream = worker.offline_upstream_url if worker is not None else None
    upstream = UpstreamEnvironment.read()
    async with (
        offline_upstream(upstream, shared_upstream) as openai_url,
        aiohttp.ClientSession() as http,
    ):
        state = ServingState(engine, http, ServingSettings(data_dir=default_data_dir()))
        providers = Providers(
            ProviderSettings(openai_base_url=openai_url, openai_api_key=upstream.api_key)
        )
        metrics = ChatMetrics(registry)
        sessions = SessionStore(
            engine, on_unstored=lambda reason, turns: metrics.unstored.labels(reason).inc(turns)
        )
        usage = UsageRecorder(engine, metrics=UsageMetrics(registry))
        limiter = Limiter(engine)
        budgets = Budgets(limiter, registry)
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
                offline_demo=upstream.offline,
            )
        )
        add_chat_routes(
            app,
            ChatDeps(
                state,
                providers,
                sessions,
                options.chat,
                metrics,
                options.admin_key_digest,
                usage=usage,
                limiter=limiter,
                budgets=budgets,
            ),
        )
        preview_reader = _ref_reader(daemon, options)
        add_preview_route(
            app,
            PreviewDeps(
                admin_key_digest=options.admin_key_digest,
                source=preview_reader,
                http=http,
                serving=state.settings,
            ),
        )
        add_manifest_api(
            app,
            ManifestApiDeps(
                engine,
                follower=options.follower,
                admin_key_digest=options.admin_key_digest,
                protect=frozenset(options.protect),
                status=lambda: status_document(engine),
            ),
        )
        if options.demo:
            add_demo_routes(app, default_data_dir())
        if options.console:
            add_console(app, console_deps(engine, options, wake, preview_reader))
        heartbeat = Heartbeat(
            engine,
            "run" if daemon is not None else "worker" if worker is not None else "serve",
            served_generation=lambda: state.snapshot.generation,
            leads=lambda: daemon is not None and daemon.leading,
        )
        app.cleanup_ctx.append(
            _serving_parts(engine, (sessions, usage, limiter), providers, state, refresh)
        )
        if daemon is not None:
            daemon.on_generation = lambda _generation: refresh.set()
        group: WorkerGroup | None = None
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=options.keepalive_timeout)

        last_loaded = -1

        def loaded(generation: int) -> None:
            """A load finished (new generation or not): the gauges, and how a new one read."""
            nonlocal last_loaded
            if generation != last_loaded:
                last_loaded = generation
                how, _changed, seconds = state.last_load
                loads.labels(how).inc()
                load_seconds.set(seconds)
            served.set(generation)
            heartbeat.now()

        await asyncio.to_thread(state.load)
        loaded(state.snapshot.generation)
        # What exists now (modules, the application, the first snapshot) lives as long as the
        # process: move it out of the collector's sight, so that the collections a busy
        # server triggers do not scan it again and again (measured: about 15 % less CPU per
        # request at 64 concurrent requests). Python's docs: gc.freeze.
        gc.freeze()
        tls = (
            server_context(options.tls_cert, options.tls_key)
            if options.tls_cert and options.tls_key
            else None
        )
        port = await _start_site(
            runner, options, reuse_port=options.workers > 1 or bool(worker), tls=tls
        )
        outbound = Outbound(
            outbound_targets(
                options.follower.url if options.follower else None,
                reconciles=daemon is not None,
                console_url=options.url(port) if options.console else None,
            ),
            registry=registry,
        )
        budgets.on_event = outbound.emit
        if daemon is not None:
            daemon.reporter.on_event = outbound.emit
        if primary:
            group = WorkerGroup(
                _worker_configs(options, port, openai_url if upstream.offline else None),
                _worker_environment(engine, options),
            )
            group.start()
            describe += f", {options.workers} processes"
        if worker is None:
            click.echo(f"samops: serving on {options.url(port).rstrip('/')} ({describe})", err=True)
            if options.console:
                click.echo(console_line(options, port, sign_in_key), err=True)
            if upstream.offline:
                click.echo(
                    "samops: OPENAI_API_KEY is not set: the offline demo model answers the "
                    "openai provider ('echo: ...'); set it to use OpenAI",
                    err=True,
                )
        else:
            tell_primary_listening(worker)
        tasks = {
            asyncio.create_task(
                watch_generations(state, refresh, stop, loaded), name="samops-generations"
            ),
            asyncio.create_task(stop.wait(), name="samops-stop"),
            asyncio.create_task(heartbeat.run(stop), name="samops-heartbeat"),
            asyncio.create_task(outbound.run(stop), name="samops-outbound"),
        }
        if daemon is not None:
            tasks.add(asyncio.create_task(daemon.run(stop), name="samops-daemon"))
        if tls is not None and options.tls_cert and options.tls_key:
            reloader = CertificateReloader(
                tls, options.tls_cert, options.tls_key, options.tls_reload_seconds
            )
            tasks.add(asyncio.create_task(reloader.run(stop), name="samops-tls"))
        if group is not None:
            tasks.add(asyncio.create_task(group.supervise(stop), name="samops-workers"))
        if worker is not None:
            tasks.add(
                asyncio.create_task(watch_primary(worker.primary_pid, stop), name="samops-primary")
            )
        writers = {sessions.writer, usage.records.writer, limiter.settlements.writer}
        watched = {*tasks, *writers}  # the writers are closed, not cancelled
        try:
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
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
            if group is not None:
                await group.stop()
            with contextlib.suppress(Exception):  # a stale row is ignored after 30 s anyway
                await asyncio.to_thread(heartbeat.forget)
            await runner.cleanup()  # the cleanup contexts: sessions written, pools closed
            log.info("stopped")


def _serving_parts(
    engine: Engine,
    writers: tuple[SessionStore, UsageRecorder, Limiter],
    providers: Providers,
    state: ServingState,
    refresh: asyncio.Event,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The application's cleanup context: what serving needs beside the HTTP site, started
    with the application and stopped with it, in reverse order: the session, usage and
    limit writers (root tasks: a failure stops the process; at shutdown they write what is
    queued first, and the limits give back what this process holds), the
    PostgreSQL generation listener (notifications first, the poll as fallback), the upstream
    clients and the SQL pools of compiled plugins."""

    async def parts(_app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        sessions, usage, limiter = writers
        sessions.start()
        usage.records.start()
        limiter.settlements.start()
        listener = None
        if engine.dialect.name == "postgresql":

            def heard() -> None:
                loop.call_soon_threadsafe(refresh.set)

            listener = GenerationListener(engine, heard)
            listener.start()
        try:
            yield
        finally:
            if listener is not None:
                await asyncio.to_thread(listener.stop)
            await sessions.close()
            await usage.records.close()
            await limiter.close()
            await providers.close()
            state.close()

    return parts


def _ref_reader(daemon: Daemon | None, options: ServerOptions) -> RefReader | None:
    """The primary previews from its follower; a worker from the same source, rebuilt."""
    if daemon is not None:
        return ref_reader_for(daemon.follower, daemon.settings.load_options)
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
    return ref_reader_for(
        follower, LoadOptions(options.allow_plaintext_secrets, SecretAccess.if_configured())
    )


def _worker_configs(
    options: ServerOptions, port: int, shared_upstream: str | None
) -> list[WorkerConfig]:
    """The workers' settings; ``shared_upstream`` is the offline demo model they all use."""
    bound = dataclasses.replace(options, port=port)
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


async def watch_generations(
    state: ServingState,
    refresh: asyncio.Event,
    stop: asyncio.Event,
    report: Callable[[int], None],
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
        load = asyncio.ensure_future(asyncio.to_thread(state.load))
        try:
            snapshot = await asyncio.shield(load)
        except asyncio.CancelledError:  # stopping: a load's thread cannot be stopped, so the
            with contextlib.suppress(Exception):  # task ends after it (its log line first)
                await load
            raise
        except Exception as exc:  # the database may be down: keep serving the last snapshot
            failing.failed(time.monotonic(), str(exc)[:200])
            continue
        failing.recovered(time.monotonic())
        report(snapshot.generation)


def run_server(main: Awaitable[None], engine: Engine) -> None:
    try:
        eventloop.run(main)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        pass
    finally:
        engine.dispose()
    sys.exit(0)
