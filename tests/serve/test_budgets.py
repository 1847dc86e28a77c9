"""Budgets enforced on chat turns (issue 16, items 3-4): Smarter's Budget kind on clients,
providers and keys, over two replicas' chat routes on one database (each with its own limiter,
as separate processes have), SQLite and PostgreSQL, driven with aiohttp against the scripted
upstream (which reports usage: each turn here costs 5 prompt + 4 completion tokens)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, text

from reconciler.api import Event
from reconciler.apikeys import digest_of
from reconciler.apply import apply_revision
from reconciler.report import describe
from reconciler.source import DirectorySource, validate_source
from reconciler.store.quotas import Crossing, period_start
from serve.budgets import Budgets
from serve.compiled import BudgetRule, CompiledClient, Snapshot
from serve.limits import Limiter
from serve.sessions import SessionStore
from serve.usage import UsageRecorder
from tests.conftest import rendered
from tests.fakes.upstream import create_scripted_app
from tests.serve.harness import chat_routes, loopback
from tests.serve.outages import Outages

KEY = "samops_budget-test-key-not-a-secret"
TURN_TOKENS = 9  # "You answer." + "hello there friend" in, "echo: hello there friend" out


def manifests(upstream: str) -> str:
    return f"""\
apiVersion: smarter.sh/v1
kind: Provider
metadata:
  name: priced
  description: The scripted upstream at a round price, a tenth of a cent a token.
  annotations:
    - samops.dev/price.gpt-4o-mini: "1000 / 1000"
spec: {{provider: {{base_url: "{upstream}/v1", default_model: gpt-4o-mini}}}}
---
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {{name: capped, description: 100 tokens a day.}}
spec:
  config: {{provider: openai, defaultModel: gpt-4o-mini, defaultSystemRole: You answer.}}
---
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {{name: costly, description: Five cents a day at the priced provider.}}
spec:
  config: {{provider: priced, defaultModel: gpt-4o-mini, defaultSystemRole: You answer.}}
---
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {{name: watched, description: A budget that only warns.}}
spec:
  config: {{provider: openai, defaultModel: gpt-4o-mini, defaultSystemRole: You answer.}}
---
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {{name: lifetime, description: 30 tokens in all.}}
spec:
  config: {{provider: openai, defaultModel: gpt-4o-mini, defaultSystemRole: You answer.}}
---
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {{name: first, description: One of two clients of a budgeted key.}}
spec:
  config: {{provider: openai, defaultModel: gpt-4o-mini, defaultSystemRole: You answer.}}
  apiKey: team_key
---
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {{name: second, description: The other client of the key.}}
spec:
  config: {{provider: openai, defaultModel: gpt-4o-mini, defaultSystemRole: You answer.}}
  apiKey: team_key
---
apiVersion: smarter.sh/v1
kind: SmarterAuthToken
metadata: {{name: team_key, description: A key with a budget of its own.}}
spec: {{config: {{isActive: true, digest: ["{digest_of(KEY)}"]}}}}
---
apiVersion: smarter.sh/v1
kind: Budget
metadata: {{name: daily_tokens, description: Each listed resource may spend 100 tokens a day.}}
spec:
  config:
    unit: tokens
    periodicLimit: 100
    period: day
    message: This assistant has used its tokens for today.
  resources:
    - {{kind: LLMClient, name: capped}}
---
apiVersion: smarter.sh/v1
kind: Budget
metadata: {{name: team_tokens, description: 40 tokens a day for the key on any client.}}
spec:
  config: {{unit: tokens, periodicLimit: 40, period: day}}
  resources:
    - {{kind: SmarterAuthToken, name: team_key}}
---
apiVersion: smarter.sh/v1
kind: Budget
metadata: {{name: daily_cost, description: Five cents a day.}}
spec:
  config: {{unit: cost, periodicLimit: "0.05", period: day}}
  resources:
    - {{kind: LLMClient, name: costly}}
---
apiVersion: smarter.sh/v1
kind: Budget
metadata: {{name: watch_only, description: Tells and never blocks.}}
spec:
  config: {{unit: tokens, periodicLimit: 20, period: day, action: warn, warningThreshold: 50}}
  resources:
    - {{kind: LLMClient, name: watched}}
---
apiVersion: smarter.sh/v1
kind: Budget
metadata: {{name: total_tokens, description: 30 tokens in all for one hour.}}
spec:
  config: {{unit: tokens, absoluteLimit: 30, period: hour, duration: 1}}
  resources:
    - {{kind: LLMClient, name: lifetime}}
"""


class Clock:
    """The limiters' clock: the real time, moved on by the tests."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


class Fleet:
    def __init__(
        self,
        bases: list[str],
        limiters: list[Limiter],
        registry: CollectorRegistry,
        usage: list[UsageRecorder],
    ) -> None:
        self.bases, self.limiters, self.registry, self.usage = bases, limiters, registry, usage

    async def settled(self) -> None:
        """Every replica's settlements written (they go in batches, off the request path)."""
        for _ in range(200):
            if all(limiter.settlements.pending == 0 for limiter in self.limiters):
                await asyncio.sleep(0.05)  # a batch being written is no longer pending
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the settlements were not written")

    def events(self, budget: str, event: str) -> float:
        value = self.registry.get_sample_value(
            "samops_budget_events_total", {"budget": budget, "event": event}
        )
        return value or 0.0


@asynccontextmanager
async def fleet(engine: Engine, tmp_path: Path, clock: Clock) -> AsyncIterator[Fleet]:
    async with AsyncExitStack() as stack:
        upstream = await stack.enter_async_context(loopback(create_scripted_app()))
        folder = tmp_path / "manifests"
        folder.mkdir()
        (folder / "all.yaml").write_text(manifests(upstream))
        revision = validate_source(DirectorySource(folder))
        assert revision.valid, rendered(revision.diagnostics)
        await asyncio.to_thread(apply_revision, engine, revision)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        registry = CollectorRegistry()
        bases, limiters, recorders = [], [], []
        for n in range(2):
            sessions, limiter = SessionStore(engine), Limiter(engine, clock=clock)
            usage = UsageRecorder(engine)
            sessions.start()
            usage.records.start()
            limiter.settlements.start()
            stack.push_async_callback(sessions.close)
            stack.push_async_callback(usage.records.close)
            stack.push_async_callback(limiter.close)
            limiters.append(limiter)
            recorders.append(usage)
            bases.append(
                await stack.enter_async_context(
                    chat_routes(
                        engine,
                        http,
                        sessions,
                        upstream_url=f"{upstream}/v1",
                        data_dir=tmp_path / f"replica-{n}",
                        timeout=5,
                        limiter=limiter,
                        usage=usage,
                        registry=registry if n == 0 else CollectorRegistry(),
                    )
                )
            )
        yield Fleet(bases, limiters, registry, recorders)


async def ask(base: str, client: str, key: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": client, "messages": [{"role": "user", "content": "hello there friend"}]}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/v1/chat/completions", json=body, headers=headers) as answer,
    ):
        return answer.status, await answer.json()


async def in_turn(fleet: Fleet, client: str, count: int, key: str | None = None) -> list[int]:
    """``count`` requests, one after the other, alternating between the replicas."""
    statuses = []
    for n in range(count):
        status, _ = await ask(fleet.bases[n % 2], client, key)
        statuses.append(status)
        await fleet.settled()
    return statuses


def spent_today(engine: Engine, budget: str) -> dict[str, Any]:
    (status,) = describe(engine, "Budget", budget)["status"]["resources"]
    return dict(status)


def test_a_token_budget_admits_turns_while_it_has_room_over_two_replicas(
    engine: Engine, tmp_path: Path
) -> None:
    async def scenario() -> tuple[list[int], Any]:
        async with fleet(engine, tmp_path, Clock()) as replicas:
            statuses = await in_turn(replicas, "capped", 14)
            refused = await ask(replicas.bases[0], "capped")
            return statuses, refused

    statuses, (status, body) = asyncio.run(scenario())

    # 11 turns spend 99 tokens and leave one: the 12th is admitted and takes 108, over the
    # limit by what it spent beyond its reservation; nothing more.
    assert statuses == [200] * 12 + [429] * 2
    assert status == 429
    assert body["error"] == {
        "message": "This assistant has used its tokens for today.",
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }
    shown = spent_today(engine, "daily_tokens")
    assert shown["periodicActual"] == "108" and shown["periodicPercent"] == 108.0
    assert shown["isLocked"] is True and shown["isActive"] is True
    assert shown["lockReason"] == "the daily limit of 100 is reached"
    assert shown["recordLocator"] == "LLMClient/capped" and shown["warning"] is True


def test_a_cost_budget_counts_dollars_at_the_providers_price(
    engine: Engine, tmp_path: Path
) -> None:
    async def scenario() -> list[int]:
        async with fleet(engine, tmp_path, Clock()) as replicas:
            return await in_turn(replicas, "costly", 9)

    # 0.009 dollars a turn: 5 turns spend 0.045, the 6th is admitted with half a cent left
    assert asyncio.run(scenario()) == [200] * 6 + [429] * 3
    shown = spent_today(engine, "daily_cost")
    assert shown["periodicActual"] == "0.054" and shown["isLocked"] is True


def test_a_keys_budget_holds_whichever_client_it_asks(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> list[int]:
        async with fleet(engine, tmp_path, Clock()) as replicas:
            statuses = []
            for n in range(7):
                status, _ = await ask(replicas.bases[n % 2], ("first", "second")[n % 2], KEY)
                statuses.append(status)
                await replicas.settled()
            return statuses

    assert asyncio.run(scenario()) == [200] * 5 + [429] * 2  # 4 x 9 = 36 < 40: a 5th


def test_a_new_period_starts_from_nothing_on_every_replica(engine: Engine, tmp_path: Path) -> None:
    clock = Clock()

    async def scenario() -> tuple[list[int], list[int]]:
        async with fleet(engine, tmp_path, clock) as replicas:
            today = await in_turn(replicas, "capped", 13)
            clock.offset = dt.timedelta(days=1)
            return today, await in_turn(replicas, "capped", 13)

    today, tomorrow = asyncio.run(scenario())
    assert today == tomorrow == [200] * 12 + [429]


def test_an_absolute_limit_holds_across_periods_until_the_budget_expires(
    engine: Engine, tmp_path: Path
) -> None:
    clock = Clock()

    async def scenario() -> list[list[int]]:
        async with fleet(engine, tmp_path, clock) as replicas:
            first = await in_turn(replicas, "lifetime", 5)
            clock.offset = dt.timedelta(minutes=30)  # still within its hour of duration
            later = await in_turn(replicas, "lifetime", 2)
            clock.offset = dt.timedelta(hours=1, minutes=1)  # expired: no longer applies
            return [first, later, await in_turn(replicas, "lifetime", 2)]

    first, later, expired = asyncio.run(scenario())
    # 3 turns spend 27 of 30: a 4th fits (on whichever replica holds the room), a 5th not
    assert (first.count(200), later, expired) == (4, [429, 429], [200, 200])
    shown = spent_today(engine, "total_tokens")
    assert shown["absoluteActual"] == "36" and shown["absolutePercent"] == 120.0  # 4 turns
    assert shown["expiresAt"] is not None


def test_a_budget_that_warns_never_blocks_and_tells_once(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[list[int], float, float]:
        async with fleet(engine, tmp_path, Clock()) as replicas:
            statuses = await in_turn(replicas, "watched", 5)
            return (
                statuses,
                replicas.events("watch_only", "warning"),
                replicas.events("watch_only", "limit_reached"),
            )

    with caplog.at_level(logging.WARNING, logger="samops.budgets"):
        statuses, warnings_on_first, reached_on_first = asyncio.run(scenario())

    assert statuses == [200] * 5  # 45 tokens of a 20-token budget: told, not blocked
    told = [r.getMessage() for r in caplog.records if r.name == "samops.budgets"]
    assert told == [
        "budget watch_only: LLMClient watched has spent 50% of the daily limit",
        "budget watch_only: LLMClient watched reached the daily limit of 20 (warn only)",
    ]
    # each crossing was seen by the one replica whose settlement crossed it
    assert warnings_on_first + reached_on_first <= 2
    shown = spent_today(engine, "watch_only")
    assert shown["periodicActual"] == "45" and shown["isLocked"] is False
    assert shown["lockReason"] == "the daily limit of 20 is reached (warn only: not blocking)"


def test_the_smarter_route_refuses_in_smarters_shape(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> tuple[int, Any]:
        async with fleet(engine, tmp_path, Clock()) as replicas:
            await in_turn(replicas, "capped", 12)
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{replicas.bases[1]}/api/v1/llm-clients/capped/prompt/",
                    json={"messages": [{"role": "user", "content": "hello there friend"}]},
                ) as answer,
            ):
                return answer.status, await answer.json()

    status, body = asyncio.run(scenario())
    assert status == 429
    assert body["error"]["code"] == "insufficient_quota"
    assert body["error"]["description"] == "This assistant has used its tokens for today."


def test_a_cost_budget_on_a_model_without_a_price_refuses_with_what_to_declare(
    engine: Engine, tmp_path: Path
) -> None:
    folder = tmp_path / "priceless"
    folder.mkdir()
    (folder / "all.yaml").write_text(
        """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: novel, description: A model no price table knows.}
spec:
  config: {provider: openai, defaultModel: brand-new-model, defaultSystemRole: You answer.}
---
apiVersion: smarter.sh/v1
kind: Budget
metadata: {name: novel_cost, description: Ten dollars a month.}
spec:
  config: {unit: cost, periodicLimit: 10}
  resources: [{kind: LLMClient, name: novel}]
"""
    )
    revision = validate_source(DirectorySource(folder))
    apply_revision(engine, revision)

    async def scenario() -> tuple[int, Any]:
        async with AsyncExitStack() as stack:
            upstream = await stack.enter_async_context(loopback(create_scripted_app()))
            http = await stack.enter_async_context(aiohttp.ClientSession())
            sessions, limiter = SessionStore(engine), Limiter(engine)
            limiter.settlements.start()
            stack.push_async_callback(limiter.close)
            base = await stack.enter_async_context(
                chat_routes(
                    engine,
                    http,
                    sessions,
                    upstream_url=f"{upstream}/v1",
                    data_dir=tmp_path / "r",
                    limiter=limiter,
                )
            )
            return await ask(base, "novel")

    status, body = asyncio.run(scenario())
    assert status == 429
    assert body["error"]["message"] == (
        "the budget 'novel_cost' counts cost, and the model 'brand-new-model' has no price, so "
        "its spending cannot be counted: declare 'samops.dev/price.brand-new-model' on the "
        "Provider 'openai'"
    )


def test_a_database_outage_admits_only_what_is_held_and_loses_nothing(
    engine: Engine, tmp_path: Path, outages: Outages
) -> None:
    async def scenario() -> tuple[list[int], list[int], Fleet]:
        async with fleet(engine, tmp_path, Clock()) as replicas:
            base = replicas.bases[0]
            before = []
            for _ in range(2):
                before.append((await ask(base, "capped"))[0])
                await replicas.settled()
            with outages.unreachable():
                during = [(await ask(base, "capped"))[0] for _ in range(10)]
            for _ in range(500):  # the usage and the settlements written once it is back
                if all(u.records.pending == 0 for u in replicas.usage):
                    break
                await asyncio.sleep(0.02)
            await replicas.settled()
            return before, during, replicas

    before, during, replicas = asyncio.run(scenario())

    assert before == [200, 200]
    # the process held 7 tokens of its slice: one more turn, then nothing without the database
    assert during[0] == 200 and set(during[1:]) == {429}, during
    admitted = before.count(200) + during.count(200)
    with engine.connect() as connection:
        recorded = connection.execute(
            text("SELECT count(*), sum(total_tokens) FROM chat_usage WHERE client = 'capped'")
        ).one()
    assert (recorded[0], recorded[1]) == (admitted, admitted * TURN_TOKENS)  # none lost
    assert spent_today(engine, "daily_tokens")["periodicActual"] == str(admitted * TURN_TOKENS)
    assert all(u.records.lost == 0 and u.records.dropped == 0 for u in replicas.usage)


def test_crossings_are_judged_against_the_budget_as_last_served(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """A budget raised by a commit (20 -> 100 tokens a day) is told of its crossings against
    its new limit: 25 tokens spent is no longer past the limit, nor past 50 % of it."""
    now = dt.datetime.now(dt.UTC)
    client = cast(CompiledClient, SimpleNamespace(name="c", provider="openai", system_role=""))

    def served(limit: int) -> Snapshot:
        rule = BudgetRule(
            "edited", ("LLMClient", "c"), "tokens", Decimal(limit), "day", Decimal(0), now,
            None, "warn", 50, None,
        )  # fmt: skip
        return Snapshot(1, None, {}, {}, budgets={("LLMClient", "c"): (rule,)})

    async def scenario() -> None:
        limiter = Limiter(engine)
        budgets = Budgets(limiter, CollectorRegistry())
        for limit in (20, 100):  # the budget as first served, then after the commit
            await budgets.admit(served(limit), client, None, "gpt-4o-mini", 40)
        scope = "budget:edited:LLMClient/c:period"
        budgets.crossed(Crossing(scope, period_start("day", now), Decimal(15), Decimal(25)))

    with caplog.at_level(logging.WARNING, logger="samops.budgets"):
        asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records if r.name == "samops.budgets"] == []


def test_crossings_are_told_to_the_outbound_once_each(engine: Engine) -> None:
    """A blocking budget's warning threshold, then its limit: a ``budget_warning`` event, then
    a ``budget_blocked`` one (``reconciler/outbound``); a warn-only limit is a warning."""
    now = dt.datetime.now(dt.UTC)
    client = cast(CompiledClient, SimpleNamespace(name="c", provider="openai", system_role=""))
    told: list[Event] = []

    def served(action: str) -> Snapshot:
        rule = BudgetRule(
            action, ("LLMClient", "c"), "tokens", Decimal(20), "day", Decimal(0), now,
            None, action, 50, None,
        )  # fmt: skip
        return Snapshot(1, None, {}, {}, budgets={("LLMClient", "c"): (rule,)})

    async def scenario() -> None:
        limiter = Limiter(engine)
        budgets = Budgets(limiter, CollectorRegistry())
        budgets.on_event = told.append
        for action in ("block", "warn"):
            hold = await budgets.admit(served(action), client, None, "gpt-4o-mini", 40)
            hold.release(limiter)
            scope = f"budget:{action}:LLMClient/c:period"
            for before, after in ((5, 12), (12, 25)):
                crossing = Crossing(
                    scope, period_start("day", now), Decimal(before), Decimal(after)
                )
                budgets.crossed(crossing)
        await limiter.close()

    asyncio.run(scenario())
    assert [(e.kind, e.details["budget"]) for e in told] == [
        ("budget_warning", "block"),
        ("budget_blocked", "block"),
        ("budget_warning", "warn"),
        ("budget_warning", "warn"),
    ]
    assert told[1].summary == (
        "budget block: LLMClient c reached the daily limit of 20 tokens: turns are refused"
    )
    assert told[3].summary.endswith("(warn only)")
    assert len({e.dedupe for e in told}) == 4
