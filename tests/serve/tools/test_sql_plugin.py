"""The SQL tool against real databases: bound parameters, read-only, row limit, timeout."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from reconciler.sam.kinds import SqlConnectionConfig, SqlData
from serve.tools.errors import ToolError
from serve.tools.plugins import SqlExecutor, sql_engine

ROWS = [(1, "CS101", 300), (2, "CS201", 450), (3, "CS301", 900), (4, "CS310", 600)]
QUERY = "SELECT code FROM courses WHERE {max_cost} IS NULL OR cost <= {max_cost} ORDER BY cost"
PARAMETERS = [{"name": "max_cost", "type": "number", "required": False}]


@pytest.fixture(params=["sqlite", "postgresql"])
def connection(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A SqlConnection's canonical fields, pointing at a database holding ``courses``."""
    base = {
        "timeout": 1,
        "poolSize": 2,
        "maxOverflow": 0,
        "username": None,
        "port": None,
        "hostname": None,
    }
    if request.param == "sqlite":
        with sqlite3.connect(tmp_path / "courses.sqlite3") as db:
            db.execute("CREATE TABLE courses (id INTEGER, code TEXT, cost REAL)")
            db.executemany("INSERT INTO courses VALUES (?, ?, ?)", ROWS)
        yield {**base, "dbEngine": "django.db.backends.sqlite3", "database": "courses.sqlite3"}
        return
    yield postgres_connection(request.getfixturevalue("postgres_url"), base)


def postgres_connection(postgres_url: str, base: dict[str, Any]) -> dict[str, Any]:
    engine = create_engine(postgres_url)
    with engine.begin() as db:
        db.exec_driver_sql("CREATE TABLE courses (id INTEGER, code TEXT, cost NUMERIC)")
        for row in ROWS:
            db.exec_driver_sql("INSERT INTO courses VALUES (%s, %s, %s)", row)
    engine.dispose()
    url = make_url(postgres_url)
    return {
        **base,
        "dbEngine": "django.db.backends.postgresql",
        "hostname": url.host,
        "port": url.port,
        "username": url.username,
        "database": url.database,
    }


def run(executor: SqlExecutor, **arguments: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(asyncio.run(executor(arguments)))
    return result


def executor(
    connection: dict[str, Any], tmp_path: Path, query: str = QUERY, limit: int = 100
) -> SqlExecutor:
    engine = sql_engine(SqlConnectionConfig.model_validate(connection), None, tmp_path)
    data = SqlData.model_validate({"parameters": PARAMETERS, "sqlQuery": query, "limit": limit})
    return SqlExecutor(data, engine)


def test_placeholders_are_bound_parameters(connection: dict[str, Any], tmp_path: Path) -> None:
    tool = executor(connection, tmp_path)
    assert run(tool, max_cost=500)["rows"] == [["CS101"], ["CS201"]]
    assert len(run(tool)["rows"]) == 4
    with pytest.raises(ToolError, match="must be of type number"):
        run(tool, max_cost="0 OR 1=1")


def test_row_limit_truncates(connection: dict[str, Any], tmp_path: Path) -> None:
    result = run(executor(connection, tmp_path, limit=2))
    assert result == {"columns": ["code"], "rows": [["CS101"], ["CS201"]], "truncated": True}


def test_queries_cannot_write(connection: dict[str, Any], tmp_path: Path) -> None:
    tool = executor(connection, tmp_path, query="UPDATE courses SET cost = 0 WHERE {max_cost} = 1")
    with pytest.raises(ToolError, match=r"the query failed: .*read.?only"):
        run(tool, max_cost=1)
    assert run(executor(connection, tmp_path), max_cost=1)["rows"] == []  # nothing changed


def test_slow_query_hits_the_connection_timeout(postgres_url: str, tmp_path: Path) -> None:
    connection = postgres_connection(
        postgres_url,
        {
            "timeout": 1,
            "poolSize": 1,
            "maxOverflow": 0,
            "username": None,
            "port": None,
            "hostname": None,
        },
    )
    tool = executor(connection, tmp_path, query="SELECT pg_sleep(5), {max_cost}")
    with pytest.raises(ToolError, match="statement timeout"):
        run(tool, max_cost=1)
