"""Fault drills: one dependency of a running ``samops run`` breaks while the soak's load goes on.

Run by ``bench/soak.py`` (``--drills``, on in ``make soak``), one after the other, each bounded
in time, each ending with PASS, FAIL or SKIP and the observations behind it:

- upstream: a second scripted upstream, behind the ``faulty`` client, answers 500, 503 and
  429, fails twice then recovers (``#flaky``), answers slowly, and finally stops and starts
  again. samops must answer 502 with its JSON error (never a 200 with an error inside), absorb
  the flaky failures with retries, keep answering other requests during a slow one, and
  recover when the upstream does. A 504 needs the provider's 60 s timeout to pass, too long
  for a bounded drill: ``tests/serve/test_upstream_faults.py`` checks it with a short timeout.
- database: the PostgreSQL cluster is stopped (``pg_ctlcluster ... stop -m fast``), kept down
  a few seconds, and started again, while the load runs. Chat must keep answering from the
  last good state, ``/readyz`` must say ``database_unavailable``, and a commit landing after
  the restart must be applied and served by the same process. Skipped on SQLite.
- git remote: a second ``samops run --url <bare repository>`` (polling every second) loses
  its remote (the bare repository is moved away). Fetch failures must be counted in
  ``samops_git_fetch_failures_total`` while chat keeps answering; when the remote is back,
  the next push must be applied and served.

Running inside the soak, rather than as separate commands, means each fault meets the
commit stream and the chat load it would meet in production, and the soak's must-be-zero
counts cover the drills' windows too.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench import soakkit
from bench.common import free_port
from bench.soakkit import (
    MARKER,
    Answer,
    chat,
    get,
    git,
    metric,
    run_blocking,
    samops_run,
    wait_ok,
)


@dataclass
class DrillResult:
    name: str
    outcome: str = "PASS"  # PASS, FAIL or SKIP
    observed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    outage: tuple[float, float] | None = None  # when the database was down (time.time())

    def check(self, ok: bool, text: str) -> bool:
        """Record an observation that must hold; one that does not fails the drill."""
        self.observed.append(text if ok else f"NOT OK: {text}")
        if not ok:
            self.outcome = "FAIL"
        return ok

    def note(self, text: str) -> None:
        self.observed.append(text)

    def skip(self, reason: str) -> DrillResult:
        self.outcome = "SKIP"
        self.observed.append(reason)
        return self


@dataclass
class DrillContext:
    """What the drills get from the soak."""

    session: aiohttp.ClientSession
    base: str  # the soak's samops
    samops: soakkit.Child
    folder: Path  # a temporary folder the drills may write to
    repo: Path  # the repository the soak's samops follows
    upstream_url: str  # the scripted upstream behind the openai provider
    faulty: soakkit.Child | None  # the scripted upstream behind the `faulty` client
    database: str  # "postgresql" or "sqlite"
    database_note: str
    commits: list[soakkit.Commit]  # appended to by the soak as it commits
    applied: Callable[[], tuple[str | None, int]]  # (revision, generation) last seen applied
    load_outcomes: Callable[[float, float], tuple[int, int]]
    """(answered, errors) of the soak's own requests sent between two times."""
    outage_seconds: float = 3.0


def _ms(answer: Answer) -> str:
    return f"{(answer.done - answer.sent) * 1000:.0f} ms"


def _said(answer: Answer) -> str:
    return f"{answer.status} {answer.code or 'ok'}"


async def _until(
    probe: Callable[[], Awaitable[bool]], *, timeout: float, period: float = 0.2
) -> float | None:
    """Await ``probe()`` until it is true: the seconds it took, or None after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await probe():
            return time.monotonic() - started
        await asyncio.sleep(period)
    return None


def _load_check(result: DrillResult, context: DrillContext, since: float, what: str) -> None:
    answered, errors = context.load_outcomes(since, time.time())
    result.check(
        answered > 0 and errors == 0,
        f"the soak's load {what}: {answered} answered, {errors} errors",
    )


# --- upstream -----------------------------------------------------------------------------------


async def upstream_drill(context: DrillContext) -> DrillResult:
    result = DrillResult("upstream 500/429/slow/down")
    faulty, session, base = context.faulty, context.session, context.base
    if faulty is None:
        return result.skip("no faulty upstream was started")
    since = time.time()
    before = await chat(session, base, "faulty", "before")
    result.check(
        before.status == 200 and before.content == "echo: before", f"baseline {_said(before)}"
    )
    for directive in ("#status=500", "#status=503", "#status=429"):
        for smarter in (False, True):
            answer = await chat(session, base, "faulty", f"fail {directive}", smarter=smarter)
            route = "smarter" if smarter else "openai"
            result.check(
                answer.status == 502 and answer.code == "upstream_error" and answer.well_formed,
                f"{directive} on the {route} route: {_said(answer)} (JSON error) in {_ms(answer)}",
            )
    flaky = await chat(session, base, "faulty", f"wobbly #flaky=2 {uuid.uuid4().hex[:8]}")
    result.check(
        flaky.status == 200 and flaky.content.startswith("echo: wobbly"),
        f"#flaky=2 absorbed by the SDK's retries: {_said(flaky)} in {_ms(flaky)}",
    )
    slow_task = asyncio.create_task(chat(session, base, "faulty", "slowly #delay=1500"))
    await asyncio.sleep(0.1)
    quick = [await chat(session, base, "faulty", "quick") for _ in range(10)]
    slow = await slow_task
    worst = max(a.done - a.sent for a in quick)
    result.check(
        slow.status == 200 and slow.done - slow.sent >= 1.5,
        f"#delay=1500: {_said(slow)} after {_ms(slow)}",
    )
    result.check(
        all(a.status == 200 for a in quick) and worst < 0.5,
        f"10 requests during the slow one: {sum(a.status == 200 for a in quick)} x 200, "
        f"slowest {worst * 1000:.0f} ms",
    )
    faulty.stop()
    down = await chat(session, base, "faulty", "while down")
    result.check(
        down.status in (502, 504) and down.code.startswith("upstream_") and down.well_formed,
        f"upstream stopped: {_said(down)} (JSON error) in {_ms(down)}",
    )
    if down.code == "upstream_timeout":
        result.note(
            "  (a refused connection reads as upstream_timeout: the SDK's aiohttp transport"
            " raises ConnectTimeout for it; upstream_unreachable would say what happened)"
        )
    faulty.restart()

    async def answers() -> bool:
        return (await chat(session, base, "faulty", "back?")).status == 200

    back = await _until(answers, timeout=15)
    result.check(back is not None, f"upstream started again: 200 after {back or 15:.1f} s")
    _load_check(result, context, since, "(other clients) meanwhile")
    result.note("504 upstream_timeout: the 60 s provider timeout is out of a bounded drill's reach")
    return result


# --- database -----------------------------------------------------------------------------------


def _error_code(status: int, document: object) -> str:
    if status == 200:
        return "ok"
    if isinstance(document, dict) and isinstance(document.get("error"), dict):
        return str(document["error"].get("code"))
    return "no answer" if status == 0 else "?"


def _cluster() -> tuple[str, str] | None:
    """(version, name) of the local PostgreSQL cluster, when pg_ctlcluster can drive it."""
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        return None
    for version in sorted(os.listdir("/etc/postgresql"), reverse=True):
        if (Path("/etc/postgresql") / version / "main").is_dir():
            return version, "main"
    return None


async def _pg(action: str, cluster: tuple[str, str]) -> tuple[int, str]:
    extra = ["-m", "fast"] if action == "stop" else []
    argv = ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action, *extra]
    return await run_blocking(argv, timeout=60)


async def database_drill(context: DrillContext) -> DrillResult:
    result = DrillResult("database restart")
    if context.database != "postgresql":
        return result.skip(f"the soak runs on SQLite ({context.database_note}); no drill")
    cluster = _cluster()
    if cluster is None:
        return result.skip("pg_ctlcluster or /etc/postgresql/*/main not found on this host")
    session, base, pid = context.session, context.base, context.samops.pid
    _, generation = context.applied()
    since = time.time()
    code, output = await _pg("stop", cluster)
    if not result.check(
        code == 0, f"pg_ctlcluster {' '.join(cluster)} stop: exit {code} {output}".strip()
    ):
        await _pg("start", cluster)
        return result
    readiness: dict[str, int] = {}
    statuses: dict[str, int] = {}  # /api/v1/status: reported, not judged
    during: list[Answer] = []
    try:
        deadline = time.monotonic() + context.outage_seconds
        while time.monotonic() < deadline:
            for path, seen in (("/readyz", readiness), ("/api/v1/status", statuses)):
                status, document = await get(session, base + path)
                said = f"{status} {_error_code(status, document)}"
                seen[said] = seen.get(said, 0) + 1
            during.append(await chat(session, base, "support", "#system"))
            await asyncio.sleep(0.2)
    finally:
        code, output = await _pg("start", cluster)
    restarted = time.time()
    result.outage = (since, restarted)
    result.check(code == 0, f"pg_ctlcluster start: exit {code}, down {restarted - since:.1f} s")
    result.check(
        any(k.startswith("503 database_unavailable") for k in readiness),
        "/readyz during the outage: "
        + ", ".join(f"{k} x{n}" for k, n in sorted(readiness.items())),
    )
    result.note(
        "/api/v1/status during the outage: "
        + ", ".join(f"{k} x{n}" for k, n in sorted(statuses.items()))
    )
    served = {a.generation or 0 for a in during if a.status == 200}
    result.check(
        bool(during)
        and all(a.status == 200 for a in during)
        and len(served) == 1
        and min(served) >= generation,
        f"chat during the outage: {sum(a.status == 200 for a in during)}/{len(during)} x 200, "
        f"all from generation {sorted(served)} (applied before the stop: {generation})",
    )
    _load_check(result, context, since, "during the outage")

    async def new_commit_served() -> bool:
        answer = await chat(session, base, "support", "#system")
        found = MARKER.search(answer.content)
        later = [c for c in context.commits if c.committed_at > restarted]
        return bool(found and later and found[1] in {c.marker for c in later})

    took = await _until(new_commit_served, timeout=30)
    result.check(
        took is not None,
        f"a commit made after the restart is applied and served "
        f"{time.time() - restarted:.1f} s after the restart",
    )
    status, _ = await get(session, f"{base}/readyz")
    result.check(status == 200, f"/readyz after: {status}")
    result.check(
        context.samops.alive() and context.samops.pid == pid,
        f"samops kept running (pid {pid}), never restarted",
    )
    return result


# --- git remote ---------------------------------------------------------------------------------


async def remote_drill(context: DrillContext) -> DrillResult:
    result = DrillResult("git remote unreachable")
    folder = context.folder / "drill-remote"
    folder.mkdir()
    bare, moved, work = folder / "remote.git", folder / "moved.git", folder / "work"
    await asyncio.to_thread(git, folder, "clone", "--quiet", "--bare", str(context.repo), str(bare))
    await asyncio.to_thread(git, folder, "clone", "--quiet", str(bare), str(work))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    child = samops_run(
        ["--url", str(bare), "--ref", "main", "--path", "manifests", "--poll-interval", "1"],
        port=port,
        env={
            "SAMOPS_DATA_DIR": str(folder / "data"),
            "SAMOPS_DATABASE_URL": f"sqlite:///{folder / 'samops.sqlite3'}",
            "OPENAI_API_KEY": "soak",
            "OPENAI_BASE_URL": context.upstream_url,
        },
        log=folder / "samops.log",
    )
    try:
        await asyncio.to_thread(wait_ok, f"{base}/readyz", child)
        return await _remote_outage(context, result, base, bare, moved, work)
    finally:
        child.stop()
        if moved.exists() and not bare.exists():
            moved.rename(bare)


async def _remote_outage(
    context: DrillContext, result: DrillResult, base: str, bare: Path, moved: Path, work: Path
) -> DrillResult:
    session = context.session

    async def failures() -> float:
        _, text = await get(session, f"{base}/metrics")
        return metric(str(text), "samops_git_fetch_failures_total") or 0.0

    before = await failures()
    first = await chat(session, base, "support", "#system")
    bare.rename(moved)
    since = time.time()
    during: list[Answer] = []
    counted = before
    while time.time() - since < 20 and (counted < before + 2 or time.time() - since < 3):
        during.append(await chat(session, base, "support", "#system"))
        counted = await failures()
        await asyncio.sleep(0.3)
    result.check(
        counted >= before + 2,
        f"samops_git_fetch_failures_total {before:g} -> {counted:g} in {time.time() - since:.1f} s",
    )
    markers = {tuple(MARKER.findall(a.content)) for a in during}
    result.check(
        bool(during)
        and all(a.status == 200 for a in during)
        and markers == {tuple(MARKER.findall(first.content))},
        f"chat while the remote is away: {sum(a.status == 200 for a in during)}/{len(during)}"
        f" x 200, all from the last fetched revision",
    )
    moved.rename(bare)
    support = work / "manifests/clients/support.yaml"
    support.write_text(MARKER.sub("[soak:remote-back]", support.read_text()))
    await asyncio.to_thread(git, work, "commit", "--quiet", "-am", "back online")
    await asyncio.to_thread(git, work, "push", "--quiet", "origin", "HEAD:main")
    pushed = time.time()

    async def served() -> bool:
        answer = await chat(session, base, "support", "#system")
        return "[soak:remote-back]" in answer.content

    took = await _until(served, timeout=30)
    result.check(
        took is not None,
        f"remote back: the next push applied and served {time.time() - pushed:.1f} s after it",
    )
    _load_check(result, context, since, "on the main server meanwhile")
    return result


DRILLS = (upstream_drill, database_drill, remote_drill)
DRILL_SECONDS = 60.0  # each drill takes 5 to 15 s when things work


async def run_drills(context: DrillContext) -> list[DrillResult]:
    results = []
    for drill in DRILLS:
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(drill(context), timeout=DRILL_SECONDS)
        except Exception as exc:  # a drill that breaks is a failed drill, not a dead soak
            result = DrillResult(drill.__name__.removesuffix("_drill"))
            result.check(False, f"the drill stopped: {type(exc).__name__}: {exc}")
        result.seconds = time.monotonic() - started
        print(f"  drill {result.outcome}: {result.name} ({result.seconds:.1f} s)", flush=True)
        results.append(result)
    return results
