"""Daemon: from ``git commit`` returning to the commit being applied, and to it being served.

A real ``samops run`` follows a temporary repository holding the example manifests, with a
scripted upstream (``python -m tests.fakes.upstream``) behind the ``openai`` provider. Each sample
writes a unique marker ``[bench:N]`` into the ``support`` client's system prompt, commits with
the real ``git`` and starts the clock when ``git commit`` returns, then polls (keep-alive
connection, 1 ms period) until

- applied: ``/api/v1/status`` shows the commit as the last applied revision; then until
- served: a chat answer to ``#system`` (the upstream echoes the system prompt it received)
  carries the new marker, i.e. a user would get the new configuration.

Commits are ``PAUSE`` apart, as isolated pushes are (a burst of quick commits is paced on
purpose, see docs/daemon.md). Baseline, measured in the same run on the same kind of database:
the daemon's pass done in-process on the same change (read the commit, validate with a parse
cache, apply), so the ratio is what watching, waking up and serving cost on top.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path

import aiohttp

from bench.common import LABELS, free_port, fresh_database, percentile
from bench.report import Column, Section, ratio
from bench.soakkit import ROOT, git, samops_run, scripted_upstream, wait_ok
from reconciler.apply import apply_revision
from reconciler.sam.revision import ParseCache, validate_files
from reconciler.source import GitSource
from reconciler.store.db import open_database
from serve import eventloop

SUPPORT = "manifests/clients/support.yaml"
ORIGINAL = (ROOT / SUPPORT).read_text()
PROMPT = "You are a friendly support agent"
PAUSE = 0.2  # seconds between one commit being served and the next commit
TIMEOUT = 10.0  # seconds a commit may take to be applied and served
COLUMNS = [
    Column("figure", "figure"),
    Column("median_ms", "median ms"),
    Column("p99_ms", "p99 ms"),
    Column("max_ms", "max ms"),
    Column("median_x", "median x baseline", 2),
    Column("p99_x", "p99 x baseline", 2),
]


def _commit(repo: Path, n: int) -> tuple[str, str, float]:
    """Commit marker ``n``: (its SHA, the marker, ``perf_counter()`` when the commit returned)."""
    marker = f"[bench:{n}]"
    assert PROMPT in ORIGINAL, f"{SUPPORT} no longer says {PROMPT!r}"
    (repo / SUPPORT).write_text(ORIGINAL.replace(PROMPT, f"{PROMPT} {marker}"))
    git(repo, "commit", "--quiet", "-am", f"sample {n}")
    committed = time.perf_counter()  # the clock starts here, not after the rev-parse below
    return git(repo, "rev-parse", "HEAD"), marker, committed


def _repository(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    shutil.copytree(ROOT / "manifests", repo / "manifests")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "example")
    return repo


def run(*, commits: int, kind: str, postgres_url: str) -> Section:
    label = LABELS[kind]
    with tempfile.TemporaryDirectory(prefix="samops-bench-") as folder, ExitStack() as stack:
        root = Path(folder)
        repo = _repository(root)
        baseline_url = stack.enter_context(
            fresh_database(kind, folder=root, name="baseline", postgres_url=postgres_url)
        )
        url = stack.enter_context(
            fresh_database(kind, folder=root, name="daemon", postgres_url=postgres_url)
        )
        baseline = _baseline(repo, baseline_url, commits=min(commits, 20))
        upstream_port, port = free_port(), free_port()
        upstream = scripted_upstream(upstream_port, root / "upstream.log")
        stack.callback(upstream.stop)
        env = {
            "SAMOPS_DATABASE_URL": url,
            "SAMOPS_DATA_DIR": str(root / "data"),
            "OPENAI_API_KEY": "bench",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
        }
        args = ["--repo", str(repo), "--path", "manifests"]
        samops = samops_run(args, port=port, env=env, log=root / "samops.log")
        stack.callback(samops.stop)
        wait_ok(f"http://127.0.0.1:{upstream_port}/v1/models", upstream)
        wait_ok(f"http://127.0.0.1:{port}/readyz", samops)
        applied, served = eventloop.run(_samples(f"http://127.0.0.1:{port}", repo, commits))
    rows = [
        {"figure": "baseline: the same pass in-process", "median_ms": baseline * 1000},
        _row("commit → applied (/api/v1/status)", applied, baseline),
        _row("commit → served (a chat answer has it)", served, baseline),
    ]
    rows[0].update(median_x=1.0)
    return Section(
        f"daemon-{kind}",
        f"Commit to applied and to served, `samops run`, {label}",
        f"{commits} commits to a local repository (the example manifests), each changing the "
        f"support client's system prompt, {PAUSE:g} s after the previous one was served. "
        "Served: a chat answer to `#system` carries the new prompt. Baseline: the daemon's "
        f"pass (read the commit, validate with a parse cache, apply) in-process on {label}, "
        f"median of {min(commits, 20)} such commits.",
        COLUMNS,
        rows,
        ["Goals: commit → applied median < 150 ms, p99 < 300 ms."],
    )


def _row(figure: str, samples: list[float], baseline: float) -> dict[str, object]:
    median, p99 = statistics.median(samples), percentile(samples, 0.99)
    return {
        "figure": figure,
        "median_ms": median * 1000,
        "p99_ms": p99 * 1000,
        "max_ms": max(samples) * 1000,
        "median_x": ratio(median, baseline),
        "p99_x": ratio(p99, baseline),
        "samples_ms": [round(s * 1000, 2) for s in samples],
    }


async def _samples(base: str, repo: Path, commits: int) -> tuple[list[float], list[float]]:
    applied: list[float] = []
    served: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        async def is_applied(sha: str) -> bool:
            async with session.get(f"{base}/api/v1/status") as response:
                document = await response.json()
            return bool(document.get("last_applied_revision") == sha)

        async def is_served(marker: str) -> bool:
            body = {"model": "support", "messages": [{"role": "user", "content": "#system"}]}
            async with session.post(f"{base}/v1/chat/completions", json=body) as response:
                document = await response.json()
            if response.status != 200:
                raise RuntimeError(f"chat answered {response.status}: {document}")
            return marker in str(document["choices"][0]["message"]["content"])

        for n in range(commits):
            sha, marker, committed = _commit(repo, n)
            # One after the other: a chat poller running beside the status poller would keep
            # samops' event loop (and its GIL) busy while the pass runs, and slow it down.
            # Serving loads what was committed, so served is never before applied.
            applied.append(await _first(functools.partial(is_applied, sha), sha) - committed)
            served.append(await _first(functools.partial(is_served, marker), sha) - committed)
            await asyncio.sleep(PAUSE)
    return applied, served


async def _first(check: Callable[[], Awaitable[bool]], sha: str) -> float:
    """``perf_counter()`` when ``check`` first answered true (polled every millisecond)."""
    deadline = time.perf_counter() + TIMEOUT
    while not await check():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"commit {sha[:12]} not applied and served within {TIMEOUT:g} s")
        await asyncio.sleep(0.001)
    return time.perf_counter()


def _baseline(repo: Path, url: str, *, commits: int) -> float:
    """Median time of the daemon's pass over one such change, in-process."""
    engine = open_database(url)
    cache = ParseCache()

    def one_pass() -> None:
        snapshot = GitSource(repo, path="manifests").read()
        revision = validate_files(snapshot.revision, snapshot.files, cache=cache)
        assert apply_revision(engine, revision).ok

    one_pass()
    samples = []
    for n in range(commits):
        _commit(repo, 10_000 + n)
        started = time.perf_counter()
        one_pass()
        samples.append(time.perf_counter() - started)
    engine.dispose()
    return statistics.median(samples)
