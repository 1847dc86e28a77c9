"""The serving process keeps its snapshot through a database outage and says so once, then
sparsely, then that it is over (issue 12, item 15: "cannot load the serving state" was logged
five times a second for as long as the database was down)."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import Engine

from reconciler.apply import apply_revision
from reconciler.source import DirectorySource, validate_source
from serve.server import watch_generations as _watch_generations
from serve.settings import ServingSettings
from serve.snapshot import ServingState
from tests.conftest import MANIFESTS
from tests.serve.outages import Outages

LOGGER = "samops.run"

MESSAGE = "cannot load the serving state; serving the last one"


def test_an_outage_is_logged_once_then_sparsely_then_its_end(
    engine: Engine, outages: Outages, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = Path(shutil.copytree(MANIFESTS, tmp_path / "manifests"))
    apply_revision(engine, validate_source(DirectorySource(folder)))
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    async def scenario() -> int:
        async with aiohttp.ClientSession() as http:
            state = ServingState(engine, http, ServingSettings(data_dir=tmp_path))
            served = state.load().generation
            refresh, stop = asyncio.Event(), asyncio.Event()
            watcher = asyncio.create_task(_watch_generations(state, refresh, stop, lambda _g: None))
            with outages.unreachable():
                for _ in range(40):  # forty attempts in two seconds
                    refresh.set()
                    await asyncio.sleep(0.05)
                assert state.snapshot.generation == served  # still serving
            refresh.set()
            await asyncio.sleep(0.3)
            stop.set()
            refresh.set()
            await asyncio.wait_for(watcher, 5)
            state.close()
            return served

    asyncio.run(scenario())
    ours = [r for r in caplog.records if r.name == LOGGER]
    warnings = [r for r in ours if r.levelno == logging.WARNING and r.getMessage() == MESSAGE]
    failures = [r for r in ours if r.getMessage() == MESSAGE]
    assert len(failures) >= 30
    assert 1 <= len(warnings) <= 2
    assert [r.getMessage() for r in ours if r.levelno == logging.INFO][-1:] == [
        "the serving state loads again"
    ]
