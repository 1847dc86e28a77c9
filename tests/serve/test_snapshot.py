"""The serving snapshot rebuilds only what a change touches, and swaps whole generations."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import aiohttp
from sqlalchemy import Engine, delete, event

from reconciler.apply import apply_revision
from reconciler.source import DirectorySource, validate_source
from reconciler.store import schema
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


def _statements(engine: Engine) -> list[str]:
    """Every SQL statement ``engine`` runs from now on."""
    seen: list[str] = []
    event.listen(
        engine, "before_cursor_execute", lambda _c, _cur, statement, *_: seen.append(statement)
    )
    return seen


def test_a_new_generation_is_read_by_its_changed_rows_only(engine: Engine, tmp_path: Path) -> None:
    """Issue 15: a serving process a generation behind reads the rows that generation
    changed (its change record), no other; with a generation unrecorded (pruned, or applied
    before the records existed) it reads everything, and serves the same."""
    folder = Path(shutil.copytree(MANIFESTS, tmp_path / "manifests"))

    def apply() -> int:
        revision = validate_source(DirectorySource(folder))
        return apply_revision(engine, revision).generation

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            state = ServingState(engine, http, ServingSettings(data_dir=tmp_path))
            apply()
            state.load()
            assert state.last_load[0] == "all"  # a new process reads everything once

            edit(folder, "clients/support.yaml", "friendly support agent", "patient agent")
            apply()
            statements = _statements(engine)
            snapshot = state.load()
            assert state.last_load[:2] == ("rows", 1)
            assert "patient agent" in snapshot.clients["support"].system_role
            assert state.rebuilt == {"support"}
            resource_tables = [s for s in statements if "FROM llm_clients" in s]
            assert resource_tables and all("IN (" in s for s in resource_tables), statements
            assert not any("FROM plugins" in s and "WHERE" not in s for s in statements)

            edit(folder, "clients/support.yaml", "patient agent", "calm agent")
            generation = apply()
            with engine.begin() as connection:  # as if pruned, or from before the records
                connection.execute(
                    delete(schema.generation_changes).where(
                        schema.generation_changes.c.generation == generation
                    )
                )
            snapshot = state.load()
            assert state.last_load[0] == "all"
            assert "calm agent" in snapshot.clients["support"].system_role
            assert state.rebuilt == {"support"}  # compared row by row: only it changed
            state.close()

    asyncio.run(scenario())
