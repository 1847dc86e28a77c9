"""The example repository in manifests/ is coherent: it validates, covers every kind, and its
SQL plugin's query runs, with bound parameters, on the demo database built from its SQL."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from reconciler.sam.kinds import KINDS, LLMClient, SqlPlugin
from reconciler.sam.revision import Revision
from reconciler.source import DirectorySource, validate_source
from tests.conftest import MANIFESTS


def _revision() -> Revision:
    return validate_source(DirectorySource(MANIFESTS))


def test_example_repository_is_valid_without_warnings() -> None:
    revision = _revision()
    assert revision.valid and not revision.warnings, revision.diagnostics


def test_example_repository_uses_every_kind_and_both_kinds_of_client() -> None:
    resources = _revision().resources
    assert {r.kind for r in resources} == set(KINDS)
    clients = [r.model for r in resources if isinstance(r.model, LLMClient)]
    assert any(c.spec.api_key is None for c in clients)
    assert any(c.spec.api_key is not None for c in clients)


@pytest.mark.parametrize(
    ("arguments", "expected_codes"),
    [
        pytest.param({"description": "AI", "max_cost": 1000}, ["CS310", "CS301"], id="ai"),
        pytest.param({"description": None, "max_cost": 350}, ["CS101"], id="cheap"),
        pytest.param(
            {"description": "'; DROP TABLE courses; --", "max_cost": None},
            [],
            id="injection-is-just-a-value",
        ),
    ],
)
def test_demo_sql_plugin_runs_on_the_demo_database(
    tmp_path: Path, arguments: dict[str, object], expected_codes: list[str]
) -> None:
    database = tmp_path / "stackademy.sqlite3"
    with sqlite3.connect(database) as connection:
        connection.executescript((MANIFESTS / "data" / "stackademy.sql").read_text())
    plugin = next(r.model for r in _revision().resources if isinstance(r.model, SqlPlugin))
    query = re.sub(r"\{(\w+)\}", r":\1", plugin.spec.sql_data.sql_query)

    with sqlite3.connect(database) as connection:
        rows = connection.execute(query, arguments).fetchall()
        remaining = connection.execute("SELECT count(*) FROM courses").fetchone()[0]

    assert [row[0] for row in rows] == expected_codes
    assert remaining == 7
