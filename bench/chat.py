"""Chat: what samops adds to an upstream call, against the direct call and a Python floor.

A scripted upstream (``python -m tests.fakes.upstream``), a bare aiohttp pass-through proxy
(``bench/floor.py``: the floor for any Python gateway) and a real ``samops run`` (SQLite, the
example manifests plus a client under a budget and rate limits) run as separate processes on
loopback. The load comes from ``wrk`` (``bench/wrk.py``; one C thread, keep-alive), or, when wrk
is not installed, from this process (aiohttp; it then takes CPU from the servers and the
report says so). For each concurrency (1, 4, 16, 64), each measured back to back:

- direct to the upstream, and through the floor (the baselines), and through the floor with
  the ``openai`` SDK as samops calls it (``floor.py --via sdk``: what keeping the SDK costs)
  and as its README shows it (``--via sdk-stock``);
- samops' OpenAI route with everything on: metrics, usage recording, a cost budget and a
  requests and a tokens limit a minute on the client (limits it never reaches);
- the same client's tool round (the model asks for ``calculator``, samops runs it and calls
  again: two upstream calls), and Smarter's route (a session written per turn);
- the OpenAI route without limits (what budgets and rate limits cost).

Each load is preceded by a second of the same load, unmeasured (connections opened on both
sides, the current minute's lease of a rate limit taken: the first turns after a quiet minute
wait for it once, ``serve/limits.py``). Reported: samops' own ``x-samops-overhead-ms`` (time
outside upstream calls) median and p99, latency, throughput, the server's CPU time per request
(``cpu_seconds``: robust where throughput is not), and throughput as ratios: against the
direct call, against the floor, and, for the tool round and the Smarter route, against the
plain route. With ``--workers``
counts, the same for ``samops run --workers N``. Then the streaming scenario
(``bench/chat_streaming.py``) and, with ``--with-litellm``, a LiteLLM proxy on the same
upstream; a plot of throughput against concurrency (``chat-throughput.png``). Last, what
budgets and rate limits cost (``limits_cost``): the client with them and the plain client,
alternated in short rounds at c=1 and c=16, their ratios per round (issue 16's goal).

The machine is shared and has 2 cores for load generator, servers and upstream together;
compare the ratios, which are measured in the same run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench import wrk
from bench.common import free_port, percentile
from bench.report import Column, Section, ratio
from bench.soakkit import PYTHON, ROOT, Child, samops_run, scripted_upstream, wait_ok
from serve import eventloop

PLAIN = {"role": "user", "content": "hello there"}
TOOL = {"role": "user", "content": 'call:calculator{"expression": "6*7"}'}
CONCURRENCY = (1, 4, 16, 64)
OVERHEAD = "x-samops-overhead-ms"
SECONDS = 5.0
"""Seconds of load per scenario with wrk."""
DIRECT, FLOOR = "direct to the upstream", "floor: bare aiohttp pass-through"
FLOOR_SDK = "floor + the openai SDK"
FLOOR_STOCK_SDK = "floor + the openai SDK, stock"
EVERYTHING = "openai route, everything on"
TOOL_ROUND, SMARTER, NO_LIMITS = "+ tool round", "smarter route", "openai route, no limits"
COLUMNS = [
    Column("scenario", "scenario"),
    Column("concurrency", "c"),
    Column("requests", "requests"),
    Column("overhead_median_ms", "overhead median ms", 2),
    Column("overhead_p99_ms", "overhead p99 ms", 2),
    Column("latency_median_ms", "latency median ms", 2),
    Column("latency_p99_ms", "latency p99 ms", 2),
    Column("throughput", "req/s", 0),
    Column("cpu_ms", "server CPU ms/req", 3),
    Column("throughput_x", "x direct", 2),
    Column("floor_x", "x floor", 2),
    Column("plain_x", "x plain route", 2),
]


@dataclass
class Figures:
    """One scenario's load: how many answers in how long, latencies (seconds), overheads
    (milliseconds, the server's own header)."""

    requests: int
    seconds: float
    latency_median: float
    latency_p99: float
    overheads: list[float] = field(default_factory=list)
    cpu_seconds: float | None = None  # the server's processes' CPU time during the load

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


@dataclass(frozen=True, slots=True)
class Servers:
    upstream: str  # base URL of the scripted upstream, ending in /v1
    samops: str  # base URL of samops
    floor: str = ""  # base URL of the floor proxy, ending in /v1
    samops_pid: int = 0
    floor_pid: int = 0
    floor_sdk: str = ""  # base URL of the floor proxy calling through the SDK, ending in /v1
    floor_sdk_pid: int = 0
    floor_stock: str = ""  # the same with the SDK as documented
    floor_stock_pid: int = 0

    @property
    def direct(self) -> str:
        return f"{self.upstream}/chat/completions"

    @property
    def openai(self) -> str:
        return f"{self.samops}/v1/chat/completions"

    @property
    def smarter(self) -> str:
        return f"{self.samops}/api/v1/llm-clients/support_limited/prompt/"

    @property
    def through_floor(self) -> str:
        return f"{self.floor}/chat/completions"

    @property
    def through_floor_sdk(self) -> str:
        return f"{self.floor_sdk}/chat/completions"

    @property
    def through_floor_stock(self) -> str:
        return f"{self.floor_stock}/chat/completions"


def generator() -> str:
    """The load generator this run uses."""
    return "wrk" if wrk.available() else "aiohttp (wrk not installed)"


def load(
    url: str,
    body: dict[str, Any],
    *,
    concurrency: int,
    requests: int = 2000,
    seconds: float = SECONDS,
    header: str = OVERHEAD,
    pid: int = 0,
    warm_up: float = 1.0,
) -> Figures:
    """Load ``url`` with ``body`` from ``concurrency`` connections: for ``seconds`` with wrk,
    else ``requests`` requests from this process; with ``pid``, the CPU time that process
    and its children spent during the measured load."""
    if wrk.available():
        if warm_up:
            # connections opened on both sides, a rate limit's lease for the current minute
            # taken: the figures are the steady state
            wrk.run(url, body, concurrency=concurrency, seconds=warm_up, header=header)
        before = cpu_seconds(pid) if pid else None
        found = wrk.run(url, body, concurrency=concurrency, seconds=seconds, header=header)
        after = cpu_seconds(pid) if pid else None
        return Figures(
            found.requests,
            found.seconds,
            found.p50_ms / 1000,
            found.p99_ms / 1000,
            found.overheads,
            after - before if before is not None and after is not None else None,
        )
    before = cpu_seconds(pid) if pid else None
    figures = eventloop.run(
        _load(url, body, concurrency=concurrency, requests=requests, header=header)
    )
    after = cpu_seconds(pid) if pid else None
    if before is not None and after is not None:
        figures.cpu_seconds = after - before
    return figures


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
        return Figures(
            len(latencies),
            time.perf_counter() - started,
            statistics.median(latencies),
            percentile(latencies, 0.99),
            overheads,
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
    """The scripted upstream, the floor proxy and ``samops run --workers N`` on a copy of the
    example manifests (SQLite)."""
    shutil.copytree(ROOT / "manifests", root / "manifests")
    shutil.rmtree(root / "manifests/budgets")  # the plain routes: no limit of any kind
    support = (root / "manifests/clients/support.yaml").read_text()
    (root / "manifests/clients/support_limited.yaml").write_text(
        support.replace("  name: support\n", LIMITED, 1)
    )
    (root / "manifests/budgets.yaml").write_text(LIMITED_BUDGET)
    upstream_port, samops_port, floor_port = free_port(), free_port(), free_port()
    floor_sdk_port, floor_stock_port = free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    with ExitStack() as stack:
        upstream = scripted_upstream(upstream_port, root / "upstream.log")
        stack.callback(upstream.stop)
        env = {
            "OPENAI_API_KEY": "bench",
            "SAMOPS_DATA_DIR": str(root / "data"),
            "OPENAI_BASE_URL": f"{upstream_url}/v1",
            "SAMOPS_DATABASE_URL": f"sqlite:///{root / 'samops.sqlite3'}",
        }
        args = [str(root / "manifests"), "--workers", str(workers)]
        samops = samops_run(args, port=samops_port, env=env, log=root / "samops.log")
        stack.callback(samops.stop)
        floor_argv = [PYTHON, "-m", "bench.floor", "--port", str(floor_port)]
        floor = Child("floor", [*floor_argv, "--upstream", upstream_url], env={}, log=root / "f")
        stack.callback(floor.stop)
        floors = {}
        for via, port in (("sdk", floor_sdk_port), ("sdk-stock", floor_stock_port)):
            argv = [*floor_argv[:3], "--port", str(port), "--via", via, "--upstream", upstream_url]
            floors[via] = Child(f"floor-{via}", argv, env={}, log=root / f"floor-{via}.log")
            stack.callback(floors[via].stop)
        wait_ok(f"{upstream_url}/v1/models", upstream)
        wait_ok(f"http://127.0.0.1:{samops_port}/readyz", samops)
        wait_ok(f"http://127.0.0.1:{floor_port}/healthz", floor)
        wait_ok(f"http://127.0.0.1:{floor_sdk_port}/healthz", floors["sdk"])
        wait_ok(f"http://127.0.0.1:{floor_stock_port}/healthz", floors["sdk-stock"])
        yield Servers(
            f"{upstream_url}/v1",
            f"http://127.0.0.1:{samops_port}",
            f"http://127.0.0.1:{floor_port}/v1",
            samops.pid,
            floor.pid,
            f"http://127.0.0.1:{floor_sdk_port}/v1",
            floors["sdk"].pid,
            f"http://127.0.0.1:{floor_stock_port}/v1",
            floors["sdk-stock"].pid,
        )


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) of process ``pid`` and its children (``--workers``), from
    /proc; None where there is no /proc. Robust where throughput is not: on a shared machine
    a server's CPU per request moves much less than its requests per second."""
    total, tick, found = 0, os.sysconf("SC_CLK_TCK"), False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # itself, or a child
            total += int(fields[11]) + int(fields[12])
            found = True
    return total / tick if found else None


def requests_at(concurrency: int, requests: int) -> int:
    """Requests per scenario without wrk: a quarter (at least 100) at concurrency 1."""
    return requests if concurrency > 1 else max(100, requests // 4)


@dataclass
class Measured:
    """Every scenario's figures, by (processes, scenario label, concurrency), and the
    streaming scenario's times to the first content (``chat_streaming.py``)."""

    figures: dict[tuple[int, str, int], Figures] = field(default_factory=dict)
    first_content: dict[str, list[float]] = field(default_factory=dict)
    limits: list[Paired] = field(default_factory=list)

    def get(self, processes: int, label: str, concurrency: int) -> Figures | None:
        return self.figures.get((processes, label, concurrency))


def measure(
    *, requests: int, seconds: float, workers: tuple[int, ...], litellm: str | None = None
) -> Measured:
    """Every scenario at every concurrency, per ``samops run --workers`` count; with
    ``litellm`` (its executable), a LiteLLM proxy too, beside the one-process set-up."""
    from bench import chat_streaming, litellm_proxy  # they import this module

    measured = Measured()
    for processes in workers:
        with (
            tempfile.TemporaryDirectory(prefix="samops-bench-") as folder,
            servers(Path(folder), workers=processes) as urls,
            ExitStack() as stack,
        ):
            proxy = None
            if processes == workers[0]:
                measured.first_content = chat_streaming.measure(
                    urls.direct, urls.openai, urls.through_floor_sdk
                )
                if litellm:
                    proxy = stack.enter_context(litellm_proxy.proxy(Path(folder), litellm, urls))
            for concurrency in CONCURRENCY:
                direct = {"model": "gpt-4o-mini", "messages": [PLAIN]}
                limited = {"model": "support_limited", "messages": [PLAIN]}
                plain = {"model": "support", "messages": [PLAIN]}
                ours = urls.samops_pid
                scenarios: list[tuple[str, str, dict[str, Any], str, int]] = [
                    (DIRECT, urls.direct, direct, OVERHEAD, 0),
                    (FLOOR, urls.through_floor, direct, OVERHEAD, urls.floor_pid),
                    (FLOOR_SDK, urls.through_floor_sdk, direct, OVERHEAD, urls.floor_sdk_pid),
                    (
                        FLOOR_STOCK_SDK,
                        urls.through_floor_stock,
                        direct,
                        OVERHEAD,
                        urls.floor_stock_pid,
                    ),
                    (EVERYTHING, urls.openai, limited, OVERHEAD, ours),
                    (TOOL_ROUND, urls.openai, {**limited, "messages": [TOOL]}, OVERHEAD, ours),
                    (SMARTER, urls.smarter, {"messages": [PLAIN]}, OVERHEAD, ours),
                    (NO_LIMITS, urls.openai, plain, OVERHEAD, ours),
                ]
                if proxy is not None:
                    scenarios.append((litellm_proxy.LABEL, proxy, plain, litellm_proxy.OVERHEAD, 0))
                for label, url, body, header, pid in scenarios:
                    figures = load(
                        url,
                        body,
                        concurrency=concurrency,
                        requests=requests_at(concurrency, requests),
                        seconds=seconds,
                        header=header,
                        pid=pid,
                    )
                    measured.figures[processes, label, concurrency] = figures
                    print(
                        f"  {label} ({processes} process{'es' if processes > 1 else ''}) "
                        f"c={concurrency}: {figures.throughput:,.0f} req/s",
                        flush=True,
                    )
            if processes == workers[0]:
                measured.limits = limits_cost(urls, requests=requests)
    return measured


LIMITS_CONCURRENCY = (1, 16)
LIMITS_ROUNDS = 6
LIMITS_SECONDS = 2.0


@dataclass
class Paired:
    """The client with budgets and rate limits and the plain client, alternated in rounds at
    one concurrency (``limits_cost``)."""

    concurrency: int
    limited: list[Figures] = field(default_factory=list)
    plain: list[Figures] = field(default_factory=list)

    def per_round(self, of: Callable[[Figures], float]) -> list[float]:
        """``of`` with limits divided by ``of`` without, per round."""
        return [of(a) / of(b) for a, b in zip(self.limited, self.plain, strict=True)]

    def added_ms(self) -> list[float]:
        """Median overhead with limits minus without, per round (ms)."""
        return [
            statistics.median(a.overheads) - statistics.median(b.overheads)
            for a, b in zip(self.limited, self.plain, strict=True)
            if a.overheads and b.overheads
        ]


def limits_cost(urls: Servers, *, requests: int) -> list[Paired]:
    """What budgets and rate limits cost a turn: ``support_limited`` (a cost budget with both
    of its limits and a requests and a tokens limit a minute, never reached) against
    ``support`` (none), alternated in short rounds, the order swapped each round, so that
    both see the same moments of a shared machine."""
    limited = {"model": "support_limited", "messages": [PLAIN]}
    plain = {"model": "support", "messages": [PLAIN]}
    found = []
    for concurrency in LIMITS_CONCURRENCY:
        pair = Paired(concurrency)
        for n in range(LIMITS_ROUNDS):
            order = [(limited, pair.limited), (plain, pair.plain)]
            for body, into in order if n % 2 == 0 else reversed(order):
                into.append(
                    load(
                        urls.openai,
                        body,
                        concurrency=concurrency,
                        requests=requests_at(concurrency, requests) // 2,
                        seconds=LIMITS_SECONDS,
                        pid=urls.samops_pid,
                        warm_up=0.5 if n == 0 else 0.0,
                    )
                )
        print(
            f"  limits against none c={concurrency}: "
            f"{statistics.median(pair.per_round(lambda f: f.throughput)):.2f}x req/s",
            flush=True,
        )
        found.append(pair)
    return found


def run(
    *,
    requests: int,
    seconds: float,
    workers: tuple[int, ...],
    plot: Path | None = None,
    litellm: tuple[str, str] | None = None,
) -> list[Section]:
    """The chat scenario's sections (and its plot, when ``plot`` is given); ``litellm``:
    the proxy's executable and version, to run beside samops."""
    from bench import chat_plot, chat_streaming  # they import this module

    measured = measure(
        requests=requests, seconds=seconds, workers=workers, litellm=litellm[0] if litellm else None
    )
    sections = [section(measured, workers, seconds=seconds)]
    if measured.limits:
        sections.append(limits_section(measured.limits))
    if measured.first_content:
        sections.append(chat_streaming.section(measured.first_content))
    if plot is not None:
        chat_plot.plot(measured, workers, plot, litellm=f"LiteLLM {litellm[1]}" if litellm else "")
    return sections


def section(measured: Measured, workers: tuple[int, ...], *, seconds: float) -> Section:
    rows: list[dict[str, Any]] = []
    for processes in workers:
        for concurrency in CONCURRENCY:
            for (p, label, c), figures in measured.figures.items():
                if p == processes and c == concurrency:
                    rows.append(row(measured, processes, label, concurrency, figures))
    load_text = (
        f"{seconds:g} s of load per scenario from wrk"
        if wrk.available()
        else "2,000 requests per scenario from an aiohttp load generator in the bench's own "
        "process (wrk is not installed: apt-get install wrk), which takes CPU from the servers"
    )
    return Section(
        "chat",
        "Chat: samops against the direct call and the floor for a Python gateway",
        f"{load_text}; c = concurrent keep-alive connections; load generator, upstream, floor "
        "and samops (SQLite, the example manifests) share the machine. Overhead is samops' own "
        "`x-samops-overhead-ms` (time outside upstream calls). Ratios are throughputs against "
        "the direct call, the floor (a bare aiohttp pass-through proxy), and the plain route "
        "with everything on, at the same concurrency and in the same set-up.",
        COLUMNS,
        rows,
        [
            "`openai route, everything on`: metrics, usage recording, a cost budget and a "
            "requests and a tokens limit a minute on the client (never reached); `+ tool "
            "round`: the same client, two upstream calls; `smarter route`: the same client, a "
            "session written per turn; `no limits`: the plain client, no budget or limit.",
            "`N processes`: `samops run --workers N` (N server processes on one port).",
            *goals(measured, workers[0]),
        ],
    )


def row(
    measured: Measured, processes: int, label: str, concurrency: int, figures: Figures
) -> dict[str, Any]:
    """One table row with its ratios (against the same set-up and concurrency)."""
    direct = measured.get(processes, DIRECT, concurrency)
    floor = measured.get(processes, FLOOR, concurrency)
    plain = measured.get(processes, EVERYTHING, concurrency)
    compared = label not in (DIRECT, FLOOR)
    overheads = figures.overheads
    return {
        "scenario": label if processes == 1 else f"{label}, {processes} processes",
        "concurrency": concurrency,
        "requests": figures.requests,
        "overhead_median_ms": statistics.median(overheads) if overheads else None,
        "overhead_p99_ms": percentile(overheads, 0.99) if overheads else None,
        "latency_median_ms": figures.latency_median * 1000,
        "latency_p99_ms": figures.latency_p99 * 1000,
        "throughput": figures.throughput,
        "cpu_ms": (
            figures.cpu_seconds * 1000 / figures.requests
            if figures.cpu_seconds is not None and figures.requests
            else None
        ),
        "throughput_x": ratio(figures.throughput, direct.throughput) if direct else None,
        "floor_x": ratio(figures.throughput, floor.throughput) if floor and compared else None,
        "plain_x": (
            ratio(figures.throughput, plain.throughput)
            if plain and label in (TOOL_ROUND, SMARTER, NO_LIMITS)
            else None
        ),
    }


LIMITS_COLUMNS = [
    Column("concurrency", "c"),
    Column("rounds", "rounds"),
    Column("overhead_plain_ms", "overhead median ms, none", 2),
    Column("overhead_limited_ms", "overhead median ms, limits", 2),
    Column("added_ms", "added median ms", 3),
    Column("throughput_x", "req/s, limits / none", 2),
    Column("cpu_x", "server CPU per request, limits / none", 2),
]


def limits_section(pairs: list[Paired]) -> Section:
    """What budgets and rate limits cost, with issue 16's goal."""
    rows: list[dict[str, Any]] = []
    for pair in pairs:
        overheads = [
            (statistics.median(a.overheads), statistics.median(b.overheads))
            for a, b in zip(pair.limited, pair.plain, strict=True)
            if a.overheads and b.overheads
        ]
        cpu = (
            pair.per_round(lambda f: (f.cpu_seconds or 0.0) / f.requests)
            if all(f.cpu_seconds for f in pair.limited + pair.plain)
            else []
        )
        rows.append(
            {
                "concurrency": pair.concurrency,
                "rounds": len(pair.limited),
                "overhead_limited_ms": statistics.median(o[0] for o in overheads)
                if overheads
                else None,
                "overhead_plain_ms": statistics.median(o[1] for o in overheads)
                if overheads
                else None,
                "added_ms": statistics.median(pair.added_ms()) if overheads else None,
                "throughput_x": statistics.median(pair.per_round(lambda f: f.throughput)),
                "cpu_x": statistics.median(cpu) if cpu else None,
            }
        )
    worst_added = max((r["added_ms"] for r in rows if r["added_ms"] is not None), default=None)
    worst_x = min(float(r["throughput_x"]) for r in rows)
    return Section(
        "chat-limits",
        "Chat: what budgets and rate limits cost a turn",
        f"One `samops run` process; the client under a cost budget (both of its limits) and a "
        f"requests and a tokens limit a minute, none reached, against the same client without "
        f"them, alternated in {LIMITS_ROUNDS} rounds of {LIMITS_SECONDS:g} s (the order "
        "swapped each round); each figure is the median of the per-round figures.",
        LIMITS_COLUMNS,
        rows,
        [
            "Goal (issue 16): budgets and limits add at most 0.3 ms median to a turn and keep "
            "the throughput within 10 % of the same run without them: "
            + (f"+{worst_added:.3f} ms at most, " if worst_added is not None else "")
            + f"throughput {worst_x:.2f}x at worst."
        ],
    )


def goals(measured: Measured, processes: int) -> list[str]:
    """Issue 18's goals, each with this run's figure."""
    plain16 = measured.get(processes, EVERYTHING, 16)
    floor16 = measured.get(processes, FLOOR, 16)
    plain64 = measured.get(processes, EVERYTHING, 64)
    if not (plain16 and floor16 and plain64):
        return []
    lines = [
        f"Goal: with everything on, one process at c=16 >= 3,000 req/s and >= 45 % of the "
        f"floor: {plain16.throughput:,.0f} req/s, "
        f"{plain16.throughput / floor16.throughput:.0%} of the floor's "
        f"{floor16.throughput:,.0f} req/s.",
        f"Goal: samops' own overhead p99 < 2 ms at c=64: "
        f"{percentile(plain64.overheads, 0.99):.2f} ms."
        if plain64.overheads
        else "",
    ]
    sdk16 = measured.get(processes, FLOOR_SDK, 16)
    if sdk16:
        lines.append(
            f"The floor with the openai SDK at c=16 (no other logic): {sdk16.throughput:,.0f} "
            f"req/s, {sdk16.throughput / floor16.throughput:.0%} of the floor: the most a "
            "gateway that keeps the SDK reaches here; samops with everything on is "
            f"{plain16.throughput / sdk16.throughput:.0%} of it."
        )
    if plain16.cpu_seconds and floor16.cpu_seconds:
        ours = plain16.cpu_seconds * 1000 / plain16.requests
        floors = floor16.cpu_seconds * 1000 / floor16.requests
        sdk = (
            f", the floor with the SDK {sdk16.cpu_seconds * 1000 / sdk16.requests:.3f} ms"
            if sdk16 and sdk16.cpu_seconds
            else ""
        )
        lines.append(
            f"Server CPU per request at c=16: samops {ours:.3f} ms, the floor {floors:.3f} ms"
            f"{sdk} ({ours / floors:.1f}x the floor; 45 % of the floor's throughput needs at "
            "most 2.2x)."
        )
    for label in (TOOL_ROUND, SMARTER):
        found = measured.get(processes, label, 16)
        if found:
            lines.append(
                f"Goal: `{label}` >= 60 % of the plain route at c=16: "
                f"{found.throughput / plain16.throughput:.0%}."
            )
    return [line for line in lines if line]
