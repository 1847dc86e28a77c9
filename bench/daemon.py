"""Daemon: time from ``git commit`` returning to ``/api/v1/status`` showing that revision.

A real ``samops run`` follows a temporary repository holding the example manifests; each
sample edits one client's system prompt, commits with the real ``git``, and polls the status
endpoint (keep-alive connection, 1 ms period) until the commit is the applied revision.
Baseline, measured in the same run on the same change: validating and applying it in-process
(no watcher, no HTTP), so the ratio is what following the repository costs on top.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import free_port, percentile
from reconciler.apply import apply_revision
from reconciler.sam.revision import validate_source
from reconciler.source import GitSource
from reconciler.store.db import open_database

ROOT = Path(__file__).resolve().parents[1]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@samops.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@samops.invalid",
}


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        env={**os.environ, **GIT_ENV},
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def _commit(repo: Path, n: int) -> tuple[str, float]:
    """Commit a change; (its SHA, ``perf_counter()`` when ``git commit`` returned)."""
    path = repo / "manifests/clients/lab.yaml"
    text = path.read_text().split("    defaultSystemRole:")[0]
    rest = path.read_text().split("    defaultTemperature:", 1)[1]
    path.write_text(f"{text}    defaultSystemRole: Sample {n}.\n    defaultTemperature:{rest}")
    _git(repo, "commit", "--quiet", "-am", f"sample {n}")
    committed = time.perf_counter()  # the clock starts here, not after the rev-parse below
    return _git(repo, "rev-parse", "HEAD"), committed


def _applied(connection: http.client.HTTPConnection) -> str | None:
    connection.request("GET", "/api/v1/status")
    response = connection.getresponse()
    revision: str | None = json.loads(response.read())["last_applied_revision"]
    return revision


def run(*, commits: int, database_url: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        repo = root / "repo"
        repo.mkdir()
        _git(repo, "init", "--quiet", "--initial-branch=main")
        shutil.copytree(ROOT / "manifests", repo / "manifests")
        _git(repo, "add", "--all")
        _git(repo, "commit", "--quiet", "-m", "example")
        url = database_url or f"sqlite:///{root / 'samops.sqlite3'}"
        baseline = _baseline(repo, root, commits=min(commits, 20))
        port = free_port()
        env = {**os.environ, "SAMOPS_DATABASE_URL": url, "SAMOPS_DATA_DIR": str(root / "data")}
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "samops"),
                "run",
                "--repo",
                str(repo),
                "--path",
                "manifests",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            connection = _connect(port, _git(repo, "rev-parse", "HEAD"))
            samples = []
            for n in range(commits):
                sha, started = _commit(repo, n)
                deadline = started + 10
                while _applied(connection) != sha:
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"commit {sha[:12]} not applied within 10 s")
                    time.sleep(0.001)
                samples.append(time.perf_counter() - started)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
    median, p99 = statistics.median(samples), percentile(samples, 0.99)
    kind = "PostgreSQL" if url.startswith("postgres") else "SQLite"
    print(f"daemon: commit -> /api/v1/status shows it, {commits} commits, {kind}")
    print(f"  baseline: validate+apply in-process (SQLite) {baseline * 1000:6.1f} ms   1.00x")
    print(
        f"  commit-to-applied median             {median * 1000:8.1f} ms   "
        f"{median / baseline:5.2f}x   (goal < 150 ms)"
    )
    print(
        f"  commit-to-applied p99                {p99 * 1000:8.1f} ms   "
        f"{p99 / baseline:5.2f}x   (goal < 300 ms)"
    )
    return {"baseline_ms": baseline * 1000, "median_ms": median * 1000, "p99_ms": p99 * 1000}


def _connect(port: int, first: str) -> http.client.HTTPConnection:
    deadline = time.perf_counter() + 30
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            if _applied(connection) == first:
                return connection
        except (OSError, http.client.HTTPException, ValueError):
            pass
        if time.perf_counter() > deadline:
            raise RuntimeError("samops run did not apply the first revision within 30 s")
        time.sleep(0.05)


def _baseline(repo: Path, root: Path, *, commits: int) -> float:
    """Median time to validate and apply one such change in-process."""
    engine = open_database(f"sqlite:///{root / 'baseline.sqlite3'}")
    apply_revision(engine, validate_source(GitSource(repo, path="manifests")))
    samples = []
    for n in range(commits):
        _commit(repo, 10_000 + n)
        started = time.perf_counter()
        apply_revision(engine, validate_source(GitSource(repo, path="manifests")))
        samples.append(time.perf_counter() - started)
    engine.dispose()
    return statistics.median(samples)
