"""Scale curve: what a user of ``samops run`` waits for, at N = 11, 100, 1,000 and 10,000.

For each size, a generated git repository of N LLM clients and N static plugins, one file each
(``bench.validate.generate``), plus one key (``curve-key``) that ``client_0`` requires. For
each database, a fresh one, then, through real processes on loopback:

- **cold apply**: ``samops run`` starts on the empty database; the time from spawning the
  process to the status showing the revision applied, and to a chat answer from ``client_1``;
- **one-file commit → served**: ``COMMITS`` commits, each editing ``client_1``'s system prompt
  with a unique marker; the clock starts when ``git commit`` returns and stops when a chat
  answer to ``#system`` (the scripted upstream echoes the system prompt) carries the marker;
- **replica**: a ``samops serve --workers 2`` replica on the same database; the same commits,
  until the replica's answer carries the marker (PostgreSQL: LISTEN/NOTIFY; SQLite: its
  poll), and the replica's own time to load each new generation (``samops_snapshot_load_seconds``);
- **key revocation → refused**: ``curve-key`` deactivated by a commit, until a request with
  that key to ``client_0`` is refused (401); reactivated by the next commit;
- **RSS**: ``VmRSS`` and ``VmHWM`` of the serving process, ``VmRSS`` of the replica and of its
  ``--workers`` process, after the commits.

Ratios: every commit figure against the same figure at the smallest size in the same run (the
issue's "within 2x of the N = 11 figure"); RSS against the smallest size's. A plot of the curve
goes beside the report (``scale-curve.png``; docs/bench.md shows a copy).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import LABELS, free_port, fresh_database, percentile
from bench.report import Column, Section, ratio
from bench.soakkit import SAMOPS, Child, git, samops_run, scripted_upstream, wait_ok
from bench.validate import generate
from reconciler.apikeys import digest_of
from serve import eventloop

SIZES = (11, 100, 1_000, 10_000)
COMMITS = 10
REVOCATIONS = 3
KEY = "samops_curve-bench-key-not-a-secret"
PROMPT = "You are assistant number 1."
TIMEOUT = 120.0  # seconds one commit may take to be served (the 10,000 figure was ~9 s)
START_TIMEOUT = 900.0  # seconds for the cold apply of the largest size
QUIET = ("--log-level", "warning")
REPLICA = (*QUIET, "--workers", "2")
"""The replica runs a ``--workers`` process beside it: its RSS is measured too."""
COLUMNS = [
    Column("size", "N clients"),
    Column("database", "database"),
    Column("figure", "figure"),
    Column("median", "median"),
    Column("p99", "p99"),
    Column("x_smallest", "x smallest N", 2),
]
KEY_FILE = """\
apiVersion: smarter.sh/v1
kind: SmarterAuthToken
metadata: {{name: curve-key, description: The key client_0 requires}}
spec:
  config:
    isActive: {active}
    digest: [{digest}]
"""


@dataclass(slots=True)
class Figures:
    """One size on one database."""

    size: int
    kind: str
    start_to_applied_ms: float = 0.0
    start_to_served_ms: float = 0.0
    served_ms: list[float] = field(default_factory=list)
    replica_ms: list[float] = field(default_factory=list)
    replica_load_ms: list[float] = field(default_factory=list)
    revoked_ms: list[float] = field(default_factory=list)
    rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    replica_rss_mb: float = 0.0
    worker_rss_mb: float = 0.0

    def values(self) -> dict[str, list[float]]:
        """Every figure as samples (a single figure is one sample), by its label."""
        return {
            "cold apply: process start → applied (ms)": [self.start_to_applied_ms],
            "cold start: process start → first answer (ms)": [self.start_to_served_ms],
            "one-file commit → served (ms)": self.served_ms,
            "one-file commit → served by a replica (ms)": self.replica_ms,
            "replica: load of a new generation (ms)": self.replica_load_ms,
            "key revoked by a commit → refused (ms)": self.revoked_ms,
            "serving process RSS (MB)": [self.rss_mb],
            "serving process peak RSS (MB)": [self.peak_rss_mb],
            "replica RSS (MB)": [self.replica_rss_mb],
            "replica's --workers process RSS (MB)": [self.worker_rss_mb],
        }


def _repository(root: Path, size: int) -> Path:
    repo = root / f"repo-{size}"
    manifests = repo / "manifests"
    manifests.mkdir(parents=True)
    generate(manifests, size)
    client = manifests / "client_0.yaml"
    client.write_text(client.read_text() + "  apiKey: curve-key\n")
    (manifests / "curve-key.yaml").write_text(_key_file(active=True))
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", f"{size} clients")
    return repo


def _key_file(*, active: bool) -> str:
    return KEY_FILE.format(active=str(active).lower(), digest=digest_of(KEY))


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024
    return found.get("VmRSS", 0.0), found.get("VmHWM", 0.0)


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (a replica's ``--workers``)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def run(
    *,
    sizes: Iterable[int] = SIZES,
    kinds: list[str],
    postgres_url: str,
    commits: int = COMMITS,
    plot: Path | None = None,
) -> list[Section]:
    """The curve's section; its plot in ``plot`` (a PNG) when given and matplotlib is there."""
    measured: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="samops-curve-") as folder, ExitStack() as stack:
        root = Path(folder)
        upstream_port = free_port()
        upstream = scripted_upstream(upstream_port, root / "upstream.log")
        stack.callback(upstream.stop)
        wait_ok(f"http://127.0.0.1:{upstream_port}/v1/models", upstream)
        for size in sorted(sizes):
            print(f"curve: generating {size:,} clients + {size:,} plugins", flush=True)
            repo = _repository(root, size)
            for kind in kinds:
                print(f"curve: {size:,} on {LABELS[kind]}", flush=True)
                with fresh_database(
                    kind, folder=root, name=f"curve{size}", postgres_url=postgres_url
                ) as url:
                    figures = Figures(size, kind)
                    _measure(figures, repo, url, root, upstream_port, commits)
                    measured.append(figures)
    if plot is not None:
        _plot(measured, plot)
    return [_section(measured, commits)]


def _measure(
    figures: Figures, repo: Path, url: str, root: Path, upstream_port: int, commits: int
) -> None:
    tag = f"{figures.size}-{figures.kind}"
    env = {
        "SAMOPS_DATABASE_URL": url,
        "SAMOPS_DATA_DIR": str(root / f"data-{tag}"),
        "OPENAI_API_KEY": "bench",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
    }
    port, replica_port = free_port(), free_port()
    with ExitStack() as stack:
        spawned = time.perf_counter()
        samops = samops_run(
            ["--repo", str(repo), "--path", "manifests"],
            port=port,
            env=env,
            log=root / f"samops-{tag}.log",
        )
        stack.callback(samops.stop, 60.0)
        wait_ok(f"http://127.0.0.1:{port}/healthz", samops, timeout=START_TIMEOUT)
        base = f"http://127.0.0.1:{port}"
        applied, served = eventloop.run(_cold_start(base, samops))
        figures.start_to_applied_ms = (applied - spawned) * 1000
        figures.start_to_served_ms = (served - spawned) * 1000
        replica = Child(
            "replica",
            [SAMOPS, "serve", "--host", "127.0.0.1", "--port", str(replica_port), *REPLICA],
            env=env,
            log=root / f"replica-{tag}.log",
        )
        stack.callback(replica.stop, 60.0)
        wait_ok(f"http://127.0.0.1:{replica_port}/readyz", replica, timeout=START_TIMEOUT)
        eventloop.run(_commits(figures, repo, base, f"http://127.0.0.1:{replica_port}", commits))
        figures.rss_mb, figures.peak_rss_mb = _rss_mb(samops.pid)
        figures.replica_rss_mb, _ = _rss_mb(replica.pid)
        figures.worker_rss_mb = max((_rss_mb(pid)[0] for pid in _children(replica.pid)), default=0)


async def _chat(
    session: aiohttp.ClientSession, base: str, model: str, key: str | None = None
) -> tuple[int, str]:
    body = {"model": model, "messages": [{"role": "user", "content": "#system"}]}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with session.post(f"{base}/v1/chat/completions", json=body, headers=headers) as answer:
        document = await answer.json()
    if answer.status != 200:
        return answer.status, ""
    return 200, str(document["choices"][0]["message"]["content"])


async def _cold_start(base: str, samops: Child) -> tuple[float, float]:
    """``perf_counter()`` when the status first shows an applied revision, then when
    ``client_1`` first answers with its prompt: polled every 50 ms, not faster, so that the
    polling does not slow the pass it waits for."""
    deadline = time.perf_counter() + START_TIMEOUT
    applied: float | None = None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        while time.perf_counter() < deadline:
            if not samops.alive():
                raise RuntimeError(f"samops exited early:\n{samops.tail()}")
            if applied is None:
                async with session.get(f"{base}/api/v1/status") as answer:
                    document = await answer.json()
                if document.get("last_applied_revision"):
                    applied = time.perf_counter()
            if applied is not None:
                status, content = await _chat(session, base, "client_1")
                if status == 200 and PROMPT in content:
                    return applied, time.perf_counter()
            await asyncio.sleep(0.05)
    raise RuntimeError(f"client_1 not served within {START_TIMEOUT:g} s:\n{samops.tail()}")


async def _load_seconds(session: aiohttp.ClientSession, base: str) -> float:
    """The replica's last snapshot load, from its metrics."""
    async with session.get(f"{base}/metrics") as answer:
        text = await answer.text()
    for line in text.splitlines():
        if line.startswith("samops_snapshot_last_load_seconds "):
            return float(line.split()[1])
    raise RuntimeError("the replica's /metrics has no samops_snapshot_last_load_seconds")


async def _commits(figures: Figures, repo: Path, base: str, replica: str, commits: int) -> None:
    client = repo / "manifests" / "client_1.yaml"
    original = client.read_text()
    key_file = repo / "manifests" / "curve-key.yaml"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def carries(where: str, marker: str) -> bool:
            return marker in (await _chat(session, where, "client_1"))[1]

        def served_at(where: str, marker: str) -> Callable[[], Awaitable[bool]]:
            return lambda: carries(where, marker)

        async def key_status(want: int) -> bool:
            return (await _chat(session, base, "client_0", KEY))[0] == want

        for n in range(commits):
            marker = f"[curve:{n}]"
            client.write_text(original.replace(PROMPT, f"{PROMPT} {marker}"))
            committed = _commit(repo, f"prompt {n}")
            figures.served_ms.append(await _until(served_at(base, marker), committed))
            figures.replica_ms.append(await _until(served_at(replica, marker), committed))
            figures.replica_load_ms.append(await _load_seconds(session, replica) * 1000)
            await asyncio.sleep(0.2)
        for n in range(REVOCATIONS):
            key_file.write_text(_key_file(active=False))
            committed = _commit(repo, f"revoke {n}")
            figures.revoked_ms.append(await _until(lambda: key_status(401), committed))
            key_file.write_text(_key_file(active=True))
            committed = _commit(repo, f"restore {n}")
            await _until(lambda: key_status(200), committed)
            await asyncio.sleep(0.2)


def _commit(repo: Path, message: str) -> float:
    git(repo, "commit", "--quiet", "-am", message)
    return time.perf_counter()  # the clock starts when `git commit` returned


async def _until(check: Callable[[], Awaitable[bool]], since: float) -> float:
    """Milliseconds from ``since`` until ``check`` first holds (polled every millisecond)."""
    deadline = since + TIMEOUT
    while not await check():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"not served within {TIMEOUT:g} s")
        await asyncio.sleep(0.001)
    return (time.perf_counter() - since) * 1000


def _section(measured: list[Figures], commits: int) -> Section:
    rows: list[dict[str, Any]] = []
    smallest = {f.kind: f for f in measured if f.size == min(m.size for m in measured)}
    for figures in sorted(measured, key=lambda f: (f.kind, f.size)):
        base = smallest[figures.kind].values()
        for label, samples in figures.values().items():
            if not samples:
                continue
            median = statistics.median(samples)
            rows.append(
                {
                    "size": figures.size,
                    "database": LABELS[figures.kind],
                    "figure": label,
                    "median": median,
                    "p99": percentile(samples, 0.99) if len(samples) > 1 else None,
                    "x_smallest": ratio(median, statistics.median(base[label]))
                    if base[label]
                    else None,
                    "samples": [round(s, 2) for s in samples],
                }
            )
    return Section(
        "curve",
        "Scale curve: one-file commit → served, cold apply and memory by repository size",
        f"Generated repositories of N LLM clients and N static plugins (one file each) and a "
        f"key, followed by a real `samops run` and a `samops serve` replica. {commits} "
        "one-file commits per size and database (a client's system prompt), "
        f"{REVOCATIONS} key revocations. Medians; x smallest N: the same figure at the "
        "smallest size in this run. The replica follows SQLite by polling every 0.2 s, "
        "PostgreSQL by LISTEN/NOTIFY.",
        COLUMNS,
        rows,
        [
            "Goals at N = 10,000 (issue 15): commit → served ≤ 150 ms and within 2x of "
            "N = 11; cold apply ≤ 10 s (SQLite), ≤ 15 s (PostgreSQL); RSS ≤ 300 MB; "
            "replica load ≤ 50 ms.",
        ],
    )


PLOTTED = (
    "one-file commit → served (ms)",
    "one-file commit → served by a replica (ms)",
    "key revoked by a commit → refused (ms)",
    "cold apply: process start → applied (ms)",
)


def _plot(measured: list[Figures], path: Path) -> None:
    """The curve as a picture (docs/bench.md shows it); nothing when matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    kinds = sorted({f.kind for f in measured})
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5), squeeze=False)
    for kind in kinds:
        rows = sorted((f for f in measured if f.kind == kind), key=lambda f: f.size)
        sizes = [f.size for f in rows]
        for label in PLOTTED:
            axis = axes[0][1] if label.startswith("cold") else axes[0][0]
            values = [statistics.median(f.values()[label]) for f in rows]
            axis.plot(sizes, values, marker="o", label=f"{label} ({LABELS[kind]})")
        axes[0][2].plot(
            sizes, [f.rss_mb for f in rows], marker="o", label=f"serving RSS ({LABELS[kind]})"
        )
        axes[0][2].plot(
            sizes,
            [f.replica_rss_mb for f in rows],
            marker="s",
            linestyle="--",
            label=f"replica RSS ({LABELS[kind]})",
        )
    titles = ("commit → served, median (ms)", "cold apply: start → applied (ms)", "memory (MB)")
    for axis, title in zip(axes[0], titles, strict=True):
        axis.set_xscale("log")
        axis.set_yscale("log" if "ms" in title else "linear")
        axis.set_xlabel("LLM clients (and as many plugins)")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    axes[0][0].axhline(150, color="grey", linestyle=":", linewidth=1)
    axes[0][2].axhline(300, color="grey", linestyle=":", linewidth=1)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
