"""Chat: what samops adds to an upstream call, and how many requests per second it carries.

A scripted upstream (``python -m tests.fakes.upstream``) and a real ``samops run`` (SQLite, the
example manifests) run as separate processes on loopback; this process is the load generator
(aiohttp, keep-alive, N concurrent workers). Baseline, measured in the same run: the same
requests sent to the upstream directly. Reported per scenario (concurrency 1, 16, 64; a plain
answer, or one tool round = two upstream calls; OpenAI route or Smarter route):

- overhead: the server's own ``x-samops-overhead-ms`` (time spent outside upstream calls),
  median and p99;
- latency median/p99, the latency added to the direct call, and throughput, with ratios
  against the direct baseline.

The machine is shared and has 2 cores for load generator, server and upstream together, so
throughput is a floor, not a ceiling. ``servers`` and ``load`` are shared with
``bench/litellm.py``, which puts a LiteLLM proxy beside samops on the same upstream.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import free_port, percentile
from bench.report import Column, Section, ratio
from bench.soakkit import ROOT, samops_run, scripted_upstream, wait_ok
from serve import eventloop

PLAIN = {"role": "user", "content": "hello there"}
TOOL = {"role": "user", "content": 'call:calculator{"expression": "6*7"}'}
CONCURRENCY = (1, 16, 64)
OVERHEAD = "x-samops-overhead-ms"
COLUMNS = [
    Column("scenario", "scenario"),
    Column("concurrency", "c"),
    Column("requests", "requests"),
    Column("overhead_median_ms", "overhead median ms", 2),
    Column("overhead_p99_ms", "overhead p99 ms", 2),
    Column("latency_median_ms", "latency median ms", 2),
    Column("latency_p99_ms", "latency p99 ms", 2),
    Column("added_latency_median_ms", "added ms (vs direct)", 2),
    Column("latency_x", "latency x direct", 2),
    Column("throughput", "req/s", 0),
    Column("throughput_x", "req/s x direct", 2),
]


@dataclass
class Figures:
    latencies: list[float]
    overheads: list[float]
    seconds: float

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds


@dataclass(frozen=True, slots=True)
class Servers:
    upstream: str  # base URL of the scripted upstream, ending in /v1
    samops: str  # base URL of samops

    @property
    def direct(self) -> str:
        return f"{self.upstream}/chat/completions"

    @property
    def openai(self) -> str:
        return f"{self.samops}/v1/chat/completions"

    @property
    def smarter(self) -> str:
        return f"{self.samops}/api/v1/llm-clients/support/prompt/"


async def _load(
    url: str, body: dict[str, Any], *, concurrency: int, requests: int, header: str
) -> Figures:
    latencies: list[float] = []
    overheads: list[float] = []
    remaining = requests
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                async with session.post(url, json=body) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url} answered {response.status}")
                    overhead = response.headers.get(header)
                latencies.append(time.perf_counter() - started)
                if overhead is not None:
                    overheads.append(float(overhead))

        for _ in range(min(concurrency, 8)):  # warm the connections and the server up
            async with session.post(url, json=body) as response:
                await response.read()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return Figures(latencies, overheads, time.perf_counter() - started)


def load(
    url: str, body: dict[str, Any], *, concurrency: int, requests: int, header: str = OVERHEAD
) -> Figures:
    """Send ``requests`` requests from ``concurrency`` workers; ``header`` is the overhead."""
    return eventloop.run(
        _load(url, body, concurrency=concurrency, requests=requests, header=header)
    )


LIMITED = """  name: support_limited
  annotations:
    - samops.dev/requests-per-minute: "1000000000"
    - samops.dev/tokens-per-minute: "1000000000"
"""
"""The support client's metadata as a client under rate limits it never reaches."""
LIMITED_BUDGET = """\
apiVersion: smarter.sh/v1
kind: Budget
metadata: {name: support_limited_budget, description: A budget the bench never reaches.}
spec:
  config: {unit: cost, periodicLimit: 1000000000, absoluteLimit: 1000000000, period: day}
  resources: [{kind: LLMClient, name: support_limited}]
"""
"""A budget on that client (both of its limits counted) that it never reaches."""


@contextmanager
def servers(root: Path, *, workers: int = 1) -> Iterator[Servers]:
    """A scripted upstream and ``samops run --workers N`` on a copy of the example manifests
    (SQLite)."""
    shutil.copytree(ROOT / "manifests", root / "manifests")
    shutil.rmtree(root / "manifests/budgets")  # the plain routes: no limit of any kind
    support = (root / "manifests/clients/support.yaml").read_text()
    (root / "manifests/clients/support_limited.yaml").write_text(
        support.replace("  name: support\n", LIMITED, 1)
    )
    (root / "manifests/budgets.yaml").write_text(LIMITED_BUDGET)
    upstream_port, samops_port = free_port(), free_port()
    with ExitStack() as stack:
        upstream = scripted_upstream(upstream_port, root / "upstream.log")
        stack.callback(upstream.stop)
        env = {
            "OPENAI_API_KEY": "bench",
            "SAMOPS_DATA_DIR": str(root / "data"),
            "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
            "SAMOPS_DATABASE_URL": f"sqlite:///{root / 'samops.sqlite3'}",
        }
        args = [str(root / "manifests"), "--workers", str(workers)]
        samops = samops_run(args, port=samops_port, env=env, log=root / "samops.log")
        stack.callback(samops.stop)
        wait_ok(f"http://127.0.0.1:{upstream_port}/v1/models", upstream)
        wait_ok(f"http://127.0.0.1:{samops_port}/readyz", samops)
        yield Servers(f"http://127.0.0.1:{upstream_port}/v1", f"http://127.0.0.1:{samops_port}")


def requests_at(concurrency: int, requests: int) -> int:
    """Requests per scenario: a quarter (at least 100) at concurrency 1, where it is slow."""
    return requests if concurrency > 1 else max(100, requests // 4)


def run(*, requests: int, workers: tuple[int, ...] = (1, 2)) -> Section:
    rows: list[dict[str, Any]] = []
    for processes in workers:
        rows.extend(_scenarios(requests, processes))
    return Section(
        "chat",
        "Chat: samops vs calling the scripted upstream directly",
        f"{requests:,} requests per scenario ({requests_at(1, requests):,} at c=1), c = "
        "concurrent keep-alive workers; load generator, samops (SQLite, the example manifests) "
        "and the scripted upstream share the machine. Overhead is samops' own "
        "`x-samops-overhead-ms` (time outside upstream calls). Baseline: the same plain request "
        "sent to the upstream directly at the same concurrency, measured again for each "
        "samops set-up.",
        COLUMNS,
        rows,
        [
            "A tool round is two upstream calls (the model asks for `calculator`, samops runs "
            "it and calls again), so its latency ratio counts both.",
            "`N workers`: `samops run --workers N`, N server processes on one port.",
            "`+ budget + rate limits`: the support client under a requests and a tokens "
            "limit a minute and a cost budget (a daily and an absolute limit) it never "
            "reaches: their cost (issue 16's goal: at most 0.3 ms more overhead median than "
            "the openai route, throughput within 10 %).",
            "Goals: overhead median < 1 ms and p99 < 5 ms; 1,500 req/s at c=16.",
        ],
    )


def _scenarios(requests: int, processes: int) -> list[dict[str, Any]]:
    """Every concurrency and route against ``samops run --workers processes``."""
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="samops-bench-") as folder,
        servers(Path(folder), workers=processes) as urls,
    ):
        for concurrency in CONCURRENCY:
            count = requests_at(concurrency, requests)
            direct = {"model": "gpt-4o-mini", "messages": [PLAIN]}
            base = load(urls.direct, direct, concurrency=concurrency, requests=count)
            rows.append(row("direct to the upstream", concurrency, base, base))
            for label, url, body in (
                ("openai route", urls.openai, {"model": "support", "messages": [PLAIN]}),
                (
                    "openai route + tool round",
                    urls.openai,
                    {"model": "support", "messages": [TOOL]},
                ),
                ("smarter route", urls.smarter, {"messages": [PLAIN]}),
                (
                    "openai route + budget + rate limits",
                    urls.openai,
                    {"model": "support_limited", "messages": [PLAIN]},
                ),
            ):
                figures = load(url, body, concurrency=concurrency, requests=count)
                shown = label if processes == 1 else f"{label}, {processes} workers"
                rows.append(row(shown, concurrency, figures, base))
    return rows


def row(label: str, concurrency: int, figures: Figures, base: Figures) -> dict[str, Any]:
    """One table row; ratios are against ``base`` (the direct call at the same concurrency)."""
    median = statistics.median(figures.latencies)
    base_median = statistics.median(base.latencies)
    values = {
        "scenario": label,
        "concurrency": concurrency,
        "requests": len(figures.latencies),
        "overhead_median_ms": statistics.median(figures.overheads) if figures.overheads else None,
        "overhead_p99_ms": percentile(figures.overheads, 0.99) if figures.overheads else None,
        "latency_median_ms": median * 1000,
        "latency_p99_ms": percentile(figures.latencies, 0.99) * 1000,
        "added_latency_median_ms": (median - base_median) * 1000,
        "latency_x": ratio(median, base_median),
        "throughput": figures.throughput,
        "throughput_x": ratio(figures.throughput, base.throughput),
    }
    print(
        f"  {label} c={concurrency}: {figures.throughput:,.0f} req/s, latency median "
        f"{median * 1000:.2f} ms (+{(median - base_median) * 1000:.2f} ms vs direct)",
        flush=True,
    )
    return values
