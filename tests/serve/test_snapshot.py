"""The serving snapshot rebuilds only what a change touches, and swaps whole generations."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import aiohttp
from sqlalchemy import Engine

from reconciler.apply import apply_revision
from reconciler.source import DirectorySource, validate_source
from serve.settings import ServingSettings
from serve.snapshot import ServingState
from tests.conftest import MANIFESTS


def edit(folder: Path, relative: str, old: str, new: str) -> None:
    path = folder / relative
    text = path.read_text()
    assert old in text, (relative, old)
    path.write_text(text.replace(old, new))


def test_only_dependants_of_changed_rows_are_rebuilt(engine: Engine, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(MANIFESTS, tmp_path / "manifests"))

    def apply() -> None:
        revision = validate_source(DirectorySource(folder))
        assert revision.valid, revision.diagnostics
        apply_revision(engine, revision)

    async def scenario() -> list[tuple[int, set[str]]]:
        async with aiohttp.ClientSession() as http:
            state = ServingState(engine, http, ServingSettings(data_dir=tmp_path))
            steps = []
            apply()
            first = state.load()
            steps.append((first.generation, set(state.rebuilt)))
            assert state.load() is first  # same generation: nothing read again

            edit(folder, "plugins/gobstopper.yaml", "marketing agent", "sales agent")
            apply()
            second = state.load()
            steps.append((second.generation, set(state.rebuilt)))
            assert second.clients["stackademy_advisor"] is first.clients["stackademy_advisor"]

            edit(folder, "keys/stackademy-advisor-key.yaml", "isActive: true", "isActive: false")
            apply()
            third = state.load()
            steps.append((third.generation, set(state.rebuilt)))
            assert not third.clients["stackademy_advisor"].key.required

            edit(folder, "secrets/stackademy-api-token.yaml", "STACKADEMY_API_TOKEN", "OTHER_TOKEN")
            apply()
            fourth = state.load()
            steps.append((fourth.generation, set(state.rebuilt)))
            state.close()
            return steps

    steps = asyncio.run(scenario())
    assert steps == [
        (1, {"support", "stackademy_advisor", "lab_assistant"}),
        (2, {"support"}),  # the plugin's only client
        (3, {"stackademy_advisor"}),  # the key's only client
        (4, {"stackademy_advisor"}),  # secret -> connection -> plugin -> client
    ]
