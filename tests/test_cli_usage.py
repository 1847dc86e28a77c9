"""``samops usage``: the chat_usage rows summed by client, key and model, over a window."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from reconciler.cli import cli
from serve.chat import TokenUsage
from serve.prices import price_of
from serve.usage import UsageRecord, UsageRecorder


def run(database_url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["usage", *args], env={"SAMOPS_DATABASE_URL": database_url}, catch_exceptions=False
    )
    return result.exit_code, result.output


def turn(
    client: str, key: str | None, model: str, counts: tuple[int, int] | None, **at: int
) -> UsageRecord:
    """A recorded turn of ``counts`` tokens (None: the upstream did not say), ``at`` ago."""
    usage = TokenUsage()
    usage.add({"prompt_tokens": counts[0], "completion_tokens": counts[1]} if counts else None)
    record = UsageRecord.of(
        usage,
        price_of(model, {}),
        client=client,
        route="openai",
        key_name=key,
        session_key=None,
        provider="openai",
        model=model,
        ok=True,
        seconds=0.2,
        generation=1,
    )
    return dataclasses.replace(record, at=dt.datetime.now(dt.UTC) - dt.timedelta(**at))


@pytest.fixture
def recorded(engine: Engine, database_url: str) -> str:
    turns = [
        turn("support", None, "gpt-4o-mini", (1000, 2000), minutes=5),
        turn("support", None, "gpt-4o-mini", (3000, 1000), hours=2),
        turn("support", "advisor_key", "gpt-4o-mini", (10, 20), minutes=1),
        turn("lab", None, "llama3.2", (50, 50), minutes=1),  # no price
        turn("lab", None, "llama3.2", None, minutes=1),  # the upstream did not say
        turn("support", None, "gpt-4o-mini", (99, 99), days=3),  # outside 24h
    ]

    async def write() -> None:
        recorder = UsageRecorder(engine)
        for t in turns:
            recorder.record(t)
        recorder.records.start()
        await recorder.records.close()

    asyncio.run(write())
    return database_url


def test_usage_sums_by_client_key_and_model_over_the_window(recorded: str) -> None:
    code, output = run(recorded, "-o", "json")

    assert code == 0, output
    summary = json.loads(output)
    rows = {(r["client"], r["key_name"], r["model"]): r for r in summary["rows"]}
    assert set(rows) == {
        ("lab", None, "llama3.2"),
        ("support", None, "gpt-4o-mini"),
        ("support", "advisor_key", "gpt-4o-mini"),
    }
    support = rows[("support", None, "gpt-4o-mini")]
    assert (support["turns"], support["prompt_tokens"], support["completion_tokens"]) == (
        2,
        4000,
        3000,
    )
    assert Decimal(support["cost_usd"]) == Decimal("0.002400")  # 4000 x 0.15 + 3000 x 0.60
    lab = rows[("lab", None, "llama3.2")]
    assert (lab["turns"], lab["tokens_unknown"], lab["cost_unknown"], lab["total_tokens"]) == (
        2,
        1,
        2,
        100,
    )
    assert summary["totals"]["turns"] == 5


def test_usage_filters_and_shows_a_table_with_unknowns_marked(recorded: str) -> None:
    code, table = run(recorded, "--since", "7d")
    assert code == 0, table
    lines = table.splitlines()
    assert lines[0].split() == [
        "CLIENT", "KEY", "MODEL", "TURNS", "FAILED", "PROMPT", "COMPLETION", "TOTAL", "COST"
    ]  # fmt: skip
    assert any(line.split()[:4] == ["support", "-", "gpt-4o-mini", "3"] for line in lines)
    assert any(line.startswith("lab") and "100*" in line for line in lines)
    assert "some turns' tokens or price are unknown" in table

    code, output = run(recorded, "--key", "advisor_key", "-o", "json")
    assert code == 0
    assert [r["key_name"] for r in json.loads(output)["rows"]] == ["advisor_key"]

    code, output = run(recorded, "--client", "nobody")
    assert (code, output.startswith("no chat turns since ")) == (0, True)


@pytest.mark.parametrize(
    ("since", "says"),
    [
        pytest.param(
            "yesterday",
            "'yesterday' is not a time span or a date (hint: 24h, 30m, 7d",
            id="not-a-span",
        ),
        pytest.param("999999w", "'999999w' reaches back before the year 1", id="too-far"),
    ],
)
def test_a_window_that_is_not_one_is_a_usage_error(recorded: str, since: str, says: str) -> None:
    code, output = run(recorded, "--since", since)

    assert code == 2
    assert says in output
    assert "Traceback" not in output
