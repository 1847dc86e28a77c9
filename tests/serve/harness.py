"""samops' chat routes served in the test's own process, for tests that drive them over HTTP
while they control the database and the upstream themselves."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from serve.app import ServerDeps, create_app
from serve.budgets import Budgets
from serve.chat_http import ChatDeps
from serve.chat_routes import add_chat_routes
from serve.limits import Limiter
from serve.preview import PreviewDeps, add_preview_route
from serve.providers import Providers
from serve.sessions import SessionStore
from serve.settings import ChatSettings, ProviderSettings, ServingSettings
from serve.snapshot import ServingState
from serve.usage import UsageRecorder


@asynccontextmanager
async def chat_routes(
    engine: Engine,
    http: aiohttp.ClientSession,
    sessions: SessionStore,
    *,
    upstream_url: str,
    data_dir: Path,
    settings: ChatSettings | None = None,
    timeout: float = 60.0,
    retries: int = 0,
    usage: UsageRecorder | None = None,
    limiter: Limiter | None = None,
    registry: CollectorRegistry | None = None,
) -> AsyncIterator[str]:
    """The chat routes over the state applied on ``engine``, the built-in ``openai`` provider
    pointing at ``upstream_url``; yields the base URL. ``sessions`` stays the caller's."""
    state = ServingState(engine, http, ServingSettings(data_dir=data_dir))
    state.load()
    providers = Providers(
        ProviderSettings(
            openai_base_url=upstream_url,
            openai_api_key="upstream-key",
            timeout_seconds=timeout,
            max_retries=retries,
        )
    )
    app = create_app(
        ServerDeps(
            engine=engine,
            registry=CollectorRegistry(),
            wake_reconciler=lambda _reason: None,
            served_generation=lambda: state.snapshot.generation,
        )
    )
    add_chat_routes(
        app,
        ChatDeps(
            state,
            providers,
            sessions,
            settings or ChatSettings(),
            usage=usage,
            limiter=limiter,
            budgets=Budgets(limiter, registry) if limiter is not None else None,
        ),
    )
    add_preview_route(app, PreviewDeps(None, None, http, state.settings))  # off: no admin key
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
        await providers.close()
        state.close()


@asynccontextmanager
async def loopback(app: web.Application) -> AsyncIterator[str]:
    """``app`` served on 127.0.0.1 in this event loop; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def example_chat(
    tmp_path: Path, upstream: web.Application, *, folder: Path | None = None
) -> AsyncIterator[str]:
    """The example manifests (or ``folder``) applied on SQLite and served by the chat routes
    in front of ``upstream``, an OpenAI-shaped app on loopback; yields the routes' base URL."""
    from reconciler.apply import apply_revision
    from reconciler.source import DirectorySource, validate_source
    from reconciler.store.db import open_database
    from tests.conftest import MANIFESTS

    engine = open_database(f"sqlite:///{tmp_path / 'samops.sqlite3'}")
    folder = folder or Path(shutil.copytree(MANIFESTS, tmp_path / "manifests"))
    apply_revision(engine, validate_source(DirectorySource(folder)))
    sessions = SessionStore(engine)
    sessions.start()
    try:
        async with (
            loopback(upstream) as upstream_url,
            aiohttp.ClientSession() as http,
            chat_routes(
                engine,
                http,
                sessions,
                upstream_url=f"{upstream_url}/v1",
                data_dir=tmp_path,
                timeout=5,
            ) as base,
        ):
            yield base
    finally:
        await sessions.close()
        engine.dispose()
