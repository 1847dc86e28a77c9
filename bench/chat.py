"""Chat: what samops adds to an upstream call, and how many requests per second it carries.

A scripted upstream (``python -m serve.scripted``) and a real ``samops run`` (SQLite, the
example manifests) run as separate processes on loopback; this process is the load generator
(aiohttp, keep-alive, N concurrent workers). Baseline, measured in the same run: the same
requests sent to the upstream directly. Reported per scenario (concurrency 1, 16, 64; a plain
answer, or one tool round = two upstream calls; OpenAI route or Smarter route):

- overhead: the server's own ``x-samops-overhead-ms`` (time spent outside upstream calls),
  median and p99;
- latency median/p99 and throughput, with ratios against the direct baseline.

The machine is shared and has 2 cores for load generator, server and upstream together, so
throughput is a floor, not a ceiling.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import free_port, percentile
from serve import eventloop

ROOT = Path(__file__).resolve().parents[1]
PLAIN = {"role": "user", "content": "hello there"}
TOOL = {"role": "user", "content": 'call:calculator{"expression": "6*7"}'}


@dataclass
class Figures:
    latencies: list[float]
    overheads: list[float]
    seconds: float

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds


async def _load(url: str, body: dict[str, Any], *, concurrency: int, requests: int) -> Figures:
    latencies: list[float] = []
    overheads: list[float] = []
    remaining = requests
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                async with session.post(url, json=body) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url} answered {response.status}")
                    overhead = response.headers.get("x-samops-overhead-ms")
                latencies.append(time.perf_counter() - started)
                if overhead is not None:
                    overheads.append(float(overhead))

        for _ in range(min(concurrency, 8)):  # warm the connections and the server up
            async with session.post(url, json=body) as response:
                await response.read()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return Figures(latencies, overheads, time.perf_counter() - started)


def _wait(url: str) -> None:
    import urllib.request

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not become ready")


def run(*, requests: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        shutil.copytree(ROOT / "manifests", root / "manifests")
        upstream_port, samops_port = free_port(), free_port()
        python = sys.executable
        upstream = subprocess.Popen(
            [python, "-m", "serve.scripted", "--host", "127.0.0.1", "--port", str(upstream_port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        env = {
            **os.environ,
            "OPENAI_API_KEY": "bench",
            "SAMOPS_DATA_DIR": str(root / "data"),
            "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
            "SAMOPS_DATABASE_URL": f"sqlite:///{root / 'samops.sqlite3'}",
        }
        server = subprocess.Popen(
            [
                str(Path(python).parent / "samops"),
                "run",
                str(root / "manifests"),
                "--port",
                str(samops_port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait(f"http://127.0.0.1:{samops_port}/readyz")
            direct = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"
            ours = f"http://127.0.0.1:{samops_port}/v1/chat/completions"
            smarter = f"http://127.0.0.1:{samops_port}/api/v1/llm-clients/support/prompt/"
            print(
                f"chat: samops vs the scripted upstream directly, {requests} requests per "
                "scenario (c = concurrency)"
            )
            print(
                f"  {'scenario':<28} {'overhead med/p99 ms':>20} {'latency med/p99 ms':>20}"
                f" {'req/s':>8} {'vs direct':>32}"
            )
            for concurrency in (1, 16, 64):
                count = requests if concurrency > 1 else max(100, requests // 4)
                base = eventloop.run(
                    _load(
                        direct,
                        {"model": "gpt-4o-mini", "messages": [PLAIN]},
                        concurrency=concurrency,
                        requests=count,
                    )
                )
                _line(f"direct upstream c={concurrency}", base, base)
                for label, url, body in (
                    ("openai route", ours, {"model": "support", "messages": [PLAIN]}),
                    ("openai route + tool round", ours, {"model": "support", "messages": [TOOL]}),
                    ("smarter route", smarter, {"messages": [PLAIN]}),
                ):
                    figures = eventloop.run(
                        _load(url, body, concurrency=concurrency, requests=count)
                    )
                    results[f"{label} c={concurrency}"] = _line(
                        f"{label} c={concurrency}", figures, base
                    )
        finally:
            for process in (server, upstream):
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=15)
    return results


def _line(label: str, figures: Figures, base: Figures) -> dict[str, float]:
    overhead = (
        f"{statistics.median(figures.overheads):.2f}/{percentile(figures.overheads, 0.99):.2f}"
        if figures.overheads
        else "-"
    )
    median = statistics.median(figures.latencies)
    latency = f"{median * 1000:.2f}/{percentile(figures.latencies, 0.99) * 1000:.2f}"
    added = (median - statistics.median(base.latencies)) * 1000
    ratio = (
        f"+{added:.2f} ms, {median / statistics.median(base.latencies):.2f}x lat, "
        f"{figures.throughput / base.throughput:.2f}x req/s"
    )
    print(f"  {label:<28} {overhead:>20} {latency:>20} {figures.throughput:>8.0f} {ratio:>32}")
    return {
        "overhead_median_ms": statistics.median(figures.overheads) if figures.overheads else 0.0,
        "overhead_p99_ms": percentile(figures.overheads, 0.99) if figures.overheads else 0.0,
        "latency_median_ms": median * 1000,
        "latency_p99_ms": percentile(figures.latencies, 0.99) * 1000,
        "added_latency_median_ms": added,
        "throughput": figures.throughput,
    }


if __name__ == "__main__":
    print(json.dumps(run(requests=int(sys.argv[1]) if len(sys.argv) > 1 else 1000)))
