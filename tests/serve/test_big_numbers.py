"""Numbers a tool cannot hold are tool errors the model sees (issue 12, item 13: ``days: 1e20``
as an integer gave a 500 after the turn ran and was stored; in a SQL plugin an OverflowError
was logged as a crash)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from reconciler.sam.kinds import Parameter, SqlConnectionConfig, SqlData
from serve.tools.errors import ToolError
from serve.tools.plugins import SqlExecutor, checked_arguments, sql_engine
from tests.serve.test_upstream_faults import chat_server

HUGE = 10**20


@pytest.mark.parametrize("smarter", [False, True], ids=["openai-route", "smarter-route"])
def test_an_integer_beyond_64_bits_is_a_tool_error(tmp_path: Path, smarter: bool) -> None:
    arguments = f'{{"dates": ["2024-01-01"], "operation": "add", "days": {HUGE}}}'

    async def scenario() -> Any:
        async with chat_server(tmp_path) as server:
            reply = await server.ask(f"call:date_calculator{arguments}", smarter=smarter)
            after = await server.ask("still fine?", smarter=smarter)
            return reply, after

    reply, after = asyncio.run(scenario())
    assert reply.status == 200, reply.body
    assert after.status == 200
    if smarter:
        (call,) = reply.body["data"]["tool_calls_made"]
        assert call["error"].startswith("the number 100000000000000000000 is beyond")


def test_sql_arguments_beyond_64_bits_are_refused_before_the_database(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "n.sqlite3") as db:
        db.execute("CREATE TABLE t (n INTEGER)")
    parameters = [Parameter(name="n", type="integer", required=True)]
    with pytest.raises(ToolError, match="beyond"):
        checked_arguments(parameters, {"n": str(HUGE)})
    connection = {"dbEngine": "django.db.backends.sqlite3", "database": "n.sqlite3", "timeout": 1}
    engine = sql_engine(SqlConnectionConfig.model_validate(connection), None, tmp_path)
    query = {"sqlQuery": "SELECT n FROM t WHERE n = {n}", "parameters": parameters, "limit": 5}
    tool = SqlExecutor(SqlData.model_validate(query), engine)
    with pytest.raises(ToolError, match="beyond"):
        asyncio.run(tool({"n": HUGE}))
    assert json.loads(asyncio.run(tool({"n": 5})))["rows"] == []
    engine.dispose()
