"""``make soak``: a real ``samops run`` answers chat while a commit lands every second.

samops follows a temporary git repository (a copy of ``manifests/``); a scripted upstream
(``python -m tests.fakes.upstream``) answers for the ``openai`` provider; this process is the load
generator and the committer, everything on 127.0.0.1. The commits cycle through three kinds,
and every one of them also writes a unique marker ``[soak:mNNNN]`` into the ``support``
client's system prompt, so an answer to ``#system`` (the upstream echoes the system prompt)
names the one commit whose configuration produced it:

- prompt: the support client's prompt is reworded;
- key: a new key for ``stackademy_advisor`` replaces the old digest (the old key is revoked);
- plugin: a static plugin (``directive: always``, its own marker in its system role) is
  attached to support, or the one attached is removed.

A few workers at a bounded rate ask support for ``#system`` (OpenAI and Smarter routes) and
``stackademy_advisor`` with the current key and with recently revoked keys. Afterwards each
answer's ``x-samops-generation`` is mapped to the revision applied at that generation (the
``syncs`` table) and checked against that commit: the support prompt's marker and plugin, or
whether the advisor's key was accepted. Reported, and written to
``bench/reports/soak-<timestamp>.json``:

- requests and errors (non-2xx, except 401s for keys a commit had revoked): must be 0;
- answers whose configuration matches no applied generation: must be 0;
- answers accepted with a key whose revocation was applied more than 1 s before the request
  was sent: must be 0;
- commit → applied (the sync's end) and commit → served (first answer from it or later);
- RSS of the samops process, sampled from /proc every second.

The exit status is 1 when a must-be-zero count is not zero or a drill fails
(``bench/drills.py``; ``--no-drills`` leaves them out).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool

from bench.common import free_port, percentile
from bench.drills import DrillContext, DrillResult, run_drills
from bench.soakkit import (
    MARKER,
    PLUGIN_MARKER,
    ROOT,
    Answer,
    Child,
    Commit,
    chat,
    get,
    git,
    postgres_database,
    samops_run,
    scripted_upstream,
    wait_ok,
)
from reconciler.apikeys import digest_of, generate_key
from reconciler.store import schema
from serve import eventloop

POSTGRES_ADMIN_URL = os.environ.get(
    "SOAK_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REPORTS = ROOT / "bench/reports"
KINDS = ("prompt", "key", "plugin")
WORDINGS = (
    "You are a friendly support agent for the Willy Wonka Chocolate Factory.",
    "You are a cheerful helper at the Willy Wonka Chocolate Factory; be brief.",
    "You answer questions about Wonka sweets, coupons and opening hours, politely.",
)
MIX = ("support", "advisor", "support-smarter", "revoked", "support", "advisor")
"""What each worker asks, in turn (``revoked`` falls back to ``advisor`` before any rotation)."""
REVOKED_KEPT = 3  # workers keep using this many of the latest revoked keys
SUPPORT = (ROOT / "manifests/clients/support.yaml").read_text()
KEY_FILE = "manifests/keys/stackademy-advisor-key.yaml"
FAULTY_PROVIDER = """\
apiVersion: smarter.sh/v1
kind: Provider
metadata:
  name: faulty
  description: A second scripted upstream that the soak's upstream drill breaks and mends.
  version: 0.1.0
spec:
  provider:
    name: Faulty (scripted)
    base_url: http://127.0.0.1:{port}/v1
    default_model: gpt-4o-mini
"""
FAULTY_CLIENT = """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata:
  name: faulty
  description: A public client on the faulty provider, for the upstream drill.
  version: 0.1.0
spec:
  config:
    provider: faulty
    defaultModel: gpt-4o-mini
    defaultSystemRole: You are the upstream drill's client.
"""
PLUGIN = """\
apiVersion: smarter.sh/v1
kind: Plugin
metadata:
  name: {name}
  pluginClass: static
  description: Attached to support by one soak commit, removed by a later one.
  version: 0.1.0
spec:
  selector:
    directive: always
  prompt:
    provider: openai
    systemRole: "[soak-plugin:{name}] Mention the soak when it helps."
  data:
    staticData:
      soak: {name}
"""


# --- the followed repository ------------------------------------------------------------------


class ManifestRepo:
    """The repository samops follows, and the cycle of commits made to it."""

    def __init__(self, root: Path, *, faulty_port: int | None) -> None:
        self.root = root
        self.keys = [generate_key()]  # key id -> key; the last one is current
        self.revoked_by: dict[int, int] = {}  # key id -> index of the commit revoking it
        self.commits: list[Commit] = []
        self.by_sha: dict[str, Commit] = {}
        self.plugin: str | None = None
        self.wording = 0
        root.mkdir(parents=True)
        git(root, "init", "--quiet", "--initial-branch=main")
        shutil.copytree(ROOT / "manifests", root / "manifests")
        if faulty_port is not None:
            (root / "manifests/providers/faulty.yaml").write_text(
                FAULTY_PROVIDER.format(port=faulty_port)
            )
            (root / "manifests/clients/faulty.yaml").write_text(FAULTY_CLIENT)
        self._commit("initial")

    def step(self) -> Commit:
        """The next commit of the cycle. Blocking (git): it runs in a worker thread while
        the event loop reads ``keys``, ``commits`` and ``revoked_by``, so those only ever
        grow by appends or are replaced whole, and a revocation is published after its
        commit is."""
        index = len(self.commits)
        kind = KINDS[(index - 1) % len(KINDS)]
        revoked = None
        if kind == "prompt":
            self.wording += 1
        elif kind == "key":
            revoked = len(self.keys) - 1
            self.keys.append(generate_key())
        elif self.plugin is None:
            self.plugin = f"soak_plugin_{index:04d}"
            plugin = PLUGIN.format(name=self.plugin)
            (self.root / f"manifests/plugins/{self.plugin}.yaml").write_text(plugin)
        else:
            (self.root / f"manifests/plugins/{self.plugin}.yaml").unlink()
            self.plugin = None
        commit = self._commit(kind)
        if revoked is not None:
            self.revoked_by = {**self.revoked_by, revoked: index}
        return commit

    def _commit(self, kind: str) -> Commit:
        index = len(self.commits)
        marker = f"m{index:04d}"
        role = f'    defaultSystemRole: "[soak:{marker}] {WORDINGS[self.wording % 3]}"\n'
        text = re.sub(r"    defaultSystemRole: >\n(      .*\n)+", lambda _: role, SUPPORT)
        plugins = ["everlasting_gobstopper", *([self.plugin] if self.plugin else [])]
        listed = "  plugins:\n" + "".join(f"    - {p}\n" for p in plugins)
        text = re.sub(r"  plugins:\n(    - .*\n)+", lambda _: listed, text)
        (self.root / "manifests/clients/support.yaml").write_text(text)
        key_file = self.root / KEY_FILE
        digest = f"    digest:\n    - {digest_of(self.keys[-1])}\n"
        key_file.write_text(
            re.sub(r"    digest:\n(    - .*\n)+", lambda _: digest, key_file.read_text())
        )
        git(self.root, "add", "--all")
        git(self.root, "commit", "--quiet", "-m", f"soak {index}: {kind}")
        committed_at = time.time()
        sha = git(self.root, "rev-parse", "HEAD")
        commit = Commit(index, sha, kind, marker, self.plugin, len(self.keys) - 1, committed_at)
        self.commits.append(commit)
        self.by_sha[sha] = commit
        return commit


# --- the run ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    seconds: float
    workers: int
    rate: float  # requests per second, all workers together
    commit_interval: float
    drills: bool
    database: str  # auto, sqlite, postgresql
    outage_seconds: float


@dataclass(frozen=True, slots=True)
class Sample:
    kind: str
    key_id: int | None
    answer: Answer


@dataclass
class Live:
    """What the soak learns while it runs."""

    started: float = field(default_factory=time.time)
    samples: list[Sample] = field(default_factory=list)
    applied_sha: str | None = None
    applied_generation: int = 0
    serving_sha: str | None = None  # applied, and the server answers from it (or later)
    status_failures: int = 0
    rss_kib: list[tuple[float, int]] = field(default_factory=list)
    drills: list[DrillResult] = field(default_factory=list)


class Soak:
    def __init__(
        self, settings: Settings, repo: ManifestRepo, samops: Child, base: str, live: Live
    ) -> None:
        self.settings, self.repo, self.samops, self.base, self.live = (
            settings,
            repo,
            samops,
            base,
            live,
        )
        self.stop_load = asyncio.Event()
        self.stop_commits = asyncio.Event()

    def current_key(self) -> int:
        """The key of the revision being served: a key applied but not served yet would be
        refused for a reason that is no fault of samops."""
        commit = self.repo.by_sha.get(self.live.serving_sha or "")
        return commit.key_id if commit else 0

    async def worker(self, session: aiohttp.ClientSession, number: int) -> None:
        loop = asyncio.get_running_loop()
        interval = self.settings.workers / self.settings.rate
        next_at = loop.time() + interval * number / self.settings.workers
        turn = number
        while not self.stop_load.is_set():
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_at = loop.time()  # late: no burst to catch up
            next_at += interval
            kind = MIX[turn % len(MIX)]
            turn += 1
            await self.ask(session, kind)

    async def ask(self, session: aiohttp.ClientSession, kind: str) -> None:
        key_id: int | None = None
        revoked = sorted(self.repo.revoked_by)[-REVOKED_KEPT:]
        if kind == "revoked" and revoked:
            key_id = random.choice(revoked)  # noqa: S311 - not cryptography
        elif kind in ("advisor", "revoked"):
            kind, key_id = "advisor", self.current_key()
        if key_id is not None:
            answer = await chat(
                session, self.base, "stackademy_advisor", "#system", key=self.repo.keys[key_id]
            )
        else:
            smarter = kind == "support-smarter"
            answer = await chat(session, self.base, "support", "#system", smarter=smarter)
        self.live.samples.append(Sample(kind, key_id, answer))

    async def follow_status(self, session: aiohttp.ClientSession) -> None:
        while not self.stop_load.is_set():
            code, document = await get(session, f"{self.base}/api/v1/status")
            if code == 200 and isinstance(document, dict):
                sha, generation = document["last_applied_revision"], int(document["generation"])
                self.live.applied_sha, self.live.applied_generation = sha, generation
                code, ready = await get(session, f"{self.base}/readyz")
                if code == 200 and int(ready["served_generation"]) >= generation:
                    self.live.serving_sha = sha
            else:
                self.live.status_failures += 1
            await asyncio.sleep(0.1)

    async def sample_rss(self) -> None:
        path = Path(f"/proc/{self.samops.pid}/status")
        while not self.stop_load.is_set():
            try:
                found = re.search(r"VmRSS:\s+(\d+) kB", path.read_text())
            except OSError:
                found = None
            if found:
                self.live.rss_kib.append((time.time() - self.live.started, int(found[1])))
            await asyncio.sleep(1.0)

    async def commit(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.settings.commit_interval
        while not self.stop_commits.is_set():
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += self.settings.commit_interval
            await asyncio.to_thread(self.repo.step)

    def load_outcomes(self, since: float, until: float) -> tuple[int, int]:
        window = [s for s in self.live.samples if since <= s.answer.sent <= until]
        errors = sum(is_error(s, self.repo) for s in window)
        return sum(200 <= s.answer.status < 300 for s in window), errors

    async def run(
        self, drill_context: Callable[[aiohttp.ClientSession], DrillContext] | None
    ) -> None:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.settings.workers + 8)
        ) as session:
            tasks: list[asyncio.Task[Any]] = [
                asyncio.create_task(self.follow_status(session)),
                asyncio.create_task(self.sample_rss()),
                asyncio.create_task(self.commit()),
                *(
                    asyncio.create_task(self.worker(session, n))
                    for n in range(self.settings.workers)
                ),
            ]
            drilling = None
            try:
                if drill_context is not None:
                    await asyncio.sleep(min(5.0, self.settings.seconds / 4))
                    drilling = asyncio.create_task(run_drills(drill_context(session)))
                await asyncio.sleep(
                    max(0.0, self.live.started + self.settings.seconds - time.time())
                )
                if drilling is not None:
                    self.live.drills = await drilling  # bounded by each drill's own timeout
                self.stop_commits.set()
                await self.settle(session)
            finally:
                self.stop_commits.set()
                self.stop_load.set()
                if drilling is not None:
                    tasks.append(drilling)  # cancelled if the soak stops early
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def settle(self, session: aiohttp.ClientSession) -> None:
        """Let the last commit be applied and answered from (10 s at most)."""
        last = self.repo.commits[-1]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            answer = await chat(session, self.base, "support", "#system")
            if f"[soak:{last.marker}]" in answer.content:
                await asyncio.sleep(0.2)  # a few more answers from it
                return
            await asyncio.sleep(0.05)


# --- analysis -----------------------------------------------------------------------------------


def is_error(sample: Sample, repo: ManifestRepo) -> bool:
    """Non-2xx, except a 401 for a key that a commit had revoked when the answer came."""
    answer = sample.answer
    if 200 <= answer.status < 300:
        return not answer.well_formed
    if answer.status == 401 and sample.key_id is not None:
        revoking = repo.revoked_by.get(sample.key_id)
        return revoking is None or repo.commits[revoking].committed_at > answer.done
    return True


def applied_generations(database_url: str, repo: ManifestRepo) -> dict[int, tuple[Commit, float]]:
    """Generation -> (the commit applied at it, when its sync finished), from ``syncs``."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(
                    schema.syncs.c.generation, schema.syncs.c.revision, schema.syncs.c.finished_at
                )
                .where(schema.syncs.c.outcome == "applied")
                .order_by(schema.syncs.c.id)
            ).all()
    finally:
        engine.dispose()
    found = {}
    for generation, revision, finished in rows:
        when = finished if finished.tzinfo else finished.replace(tzinfo=dt.UTC)
        commit = repo.by_sha.get(revision)
        if commit is not None:
            found[int(generation)] = (commit, when.timestamp())
    return found


def turns_not_stored(database_url: str, samples: list[Sample]) -> tuple[int, int]:
    """(Smarter-route turns answered 200, those whose session is not in the database after
    samops' clean shutdown): each soak turn starts its own session, so a missing session is a
    turn lost by session writes."""
    answered = {s.answer.session for s in samples if s.answer.status == 200 and s.answer.session}
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            stored = set(connection.execute(select(schema.chat_sessions.c.session_key)).scalars())
    finally:
        engine.dispose()
    return len(answered), len(answered - stored)


def mismatch(sample: Sample, generations: dict[int, tuple[Commit, float]]) -> str | None:
    """Why the answer does not match the commit applied at its generation (None: it does)."""
    answer = sample.answer
    if sample.kind.startswith("support"):
        if not 200 <= answer.status < 300:
            return None
    elif answer.status not in (200, 401):
        return None
    known = generations.get(answer.generation or -1)
    if known is None:
        return f"generation {answer.generation} was never applied"
    commit = known[0]
    if sample.kind.startswith("support"):
        markers = MARKER.findall(answer.content)
        plugins = PLUGIN_MARKER.findall(answer.content)
        expected = [commit.plugin] if commit.plugin else []
        if markers != [commit.marker] or plugins != expected:
            expected_config = f"{commit.marker}/{commit.plugin}"
            return f"generation {answer.generation} is {expected_config}: {answer.content[:80]!r}"
        return None
    accepted = answer.status == 200
    if accepted != (sample.key_id == commit.key_id):
        return f"key {sample.key_id} {'accepted' if accepted else 'refused'} at {commit.marker}"
    return None


def stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "median_ms": round(statistics.median(values) * 1000, 1),
        "p99_ms": round(percentile(values, 0.99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


def analyse(
    live: Live, repo: ManifestRepo, generations: dict[int, tuple[Commit, float]]
) -> dict[str, Any]:
    """The report's figures; commit timings leave out commits made while the database drill
    kept PostgreSQL down (reported apart: they wait for the database by design)."""
    samples = live.samples
    ok = [s for s in samples if 200 <= s.answer.status < 300]
    errors = [s for s in samples if is_error(s, repo)]
    expected_401 = [s for s in samples if s.answer.status == 401 and not is_error(s, repo)]
    mismatches = [(s, why) for s in samples if (why := mismatch(s, generations))]
    applied_at: dict[int, float] = {}  # commit index -> when a revision at or after it applied
    for commit, finished in sorted(generations.values(), key=lambda pair: pair[1]):
        for index in range(commit.index + 1):
            applied_at.setdefault(index, finished)
    late_accepts = []
    for s in ok:
        revoking = repo.revoked_by.get(s.key_id) if s.key_id is not None else None
        if (
            revoking is not None
            and revoking in applied_at
            and s.answer.sent > applied_at[revoking] + 1.0
        ):
            late_accepts.append(s)
    served_at: dict[int, float] = {}
    for s in samples:
        known = generations.get(s.answer.generation or -1)
        if known and s.answer.status in (200, 401):
            for index in range(known[0].index + 1):
                if s.answer.done < served_at.get(index, float("inf")):
                    served_at[index] = s.answer.done
    commits = repo.commits[1:]
    outages = [d.outage for d in live.drills if d.outage is not None]
    down = [
        c for c in commits if any(start - 1.0 <= c.committed_at <= end for start, end in outages)
    ]
    up = [c for c in commits if c not in down]
    to_applied = [applied_at[c.index] - c.committed_at for c in up if c.index in applied_at]
    to_served = [served_at[c.index] - c.committed_at for c in up if c.index in served_at]
    outage_served = [served_at[c.index] - c.committed_at for c in down if c.index in served_at]
    rss = [kib / 1024 for _, kib in live.rss_kib]
    return {
        "requests": len(samples),
        "answered_2xx": len(ok),
        "expected_401_revoked_keys": len(expected_401),
        "errors": len(errors),
        "error_examples": [f"{s.kind} {s.answer.status} {s.answer.code}" for s in errors[:10]],
        "config_mismatches": len(mismatches),
        "mismatch_examples": [why for _, why in mismatches[:10]],
        "checked_support_answers": sum(1 for s in ok if s.kind.startswith("support")),
        "checked_key_decisions": sum(1 for s in samples if s.kind in ("advisor", "revoked")),
        "revoked_key_accepted_after_1s": len(late_accepts),
        "commits": len(commits),
        "commits_by_kind": {k: sum(c.kind == k for c in commits) for k in KINDS},
        "generations_applied": len(generations),
        "commit_to_applied": stats(to_applied),
        "commit_to_served": stats(to_served),
        "commits_during_database_outage": len(down),
        "commit_to_served_during_database_outage": stats(outage_served),
        "commits_never_served": len(commits) - len(to_served) - len(outage_served),
        "status_poll_failures": live.status_failures,
        "rss_mb": {
            "min": round(min(rss), 1) if rss else None,
            "max": round(max(rss), 1) if rss else None,
            "last": round(rss[-1], 1) if rss else None,
            "series": [[round(t, 1), round(kib / 1024, 1)] for t, kib in live.rss_kib],
        },
    }


# --- output -------------------------------------------------------------------------------------


def print_report(
    report: dict[str, Any], figures: dict[str, Any], drills: list[DrillResult]
) -> None:
    def row(label: str, value: object, note: str = "") -> None:
        print(f"  {label:<38} {value!s:>12}  {note}")

    def timing(name: str) -> str:
        t = figures[name]
        if not t.get("count"):
            return "-"
        return f"{t['median_ms']:.0f} / {t['p99_ms']:.0f} / {t['max_ms']:.0f} ms"

    print(f"\nsoak: {report['settings']['seconds']:g} s, {report['database']}")
    row(
        "requests",
        figures["requests"],
        f"2xx {figures['answered_2xx']}, "
        f"expected 401 (revoked keys) {figures['expected_401_revoked_keys']}",
    )
    row("errors", figures["errors"], "must be 0  " + "; ".join(figures["error_examples"][:3]))
    row(
        "answers matching no applied generation",
        figures["config_mismatches"],
        f"must be 0  (checked {figures['checked_support_answers']} prompts, "
        f"{figures['checked_key_decisions']} key decisions)",
    )
    row(
        "revoked key accepted > 1 s after apply",
        figures["revoked_key_accepted_after_1s"],
        "must be 0",
    )
    row(
        "Smarter turns not stored at shutdown",
        figures["smarter_turns_not_stored"],
        f"must be 0  (checked {figures['smarter_turns_checked']}, database outage included)",
    )
    kinds = ", ".join(f"{k} {n}" for k, n in figures["commits_by_kind"].items())
    row(
        "commits",
        figures["commits"],
        f"{kinds}; {figures['generations_applied']} generations applied",
    )
    row("commit -> applied  median/p99/max", "", timing("commit_to_applied"))
    row("commit -> served   median/p99/max", "", timing("commit_to_served"))
    if figures["commits_during_database_outage"]:
        row(
            "  commits while the database was down",
            figures["commits_during_database_outage"],
            f"served {timing('commit_to_served_during_database_outage')} after commit",
        )
    rss = figures["rss_mb"]
    row("samops RSS MB  min/max/last", "", f"{rss['min']} / {rss['max']} / {rss['last']}")
    series = rss["series"]
    step = max(1, len(series) // 12)
    print("  RSS series (s: MB)  " + "  ".join(f"{t:.0f}:{mb:.0f}" for t, mb in series[::step]))
    for drill in drills:
        print(f"  drill {drill.outcome}: {drill.name} ({drill.seconds:.1f} s)")
        for line in drill.observed:
            print(f"      {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=float(os.environ.get("SOAK_SECONDS", "120")),
        help="length of the load (default 120, or $SOAK_SECONDS)",
    )
    parser.add_argument("--workers", type=int, default=4, help="concurrent chat workers")
    parser.add_argument("--rate", type=float, default=60.0, help="requests per second in all")
    parser.add_argument("--commit-interval", type=float, default=1.0, help="seconds")
    parser.add_argument(
        "--drills",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the fault drills inside the soak (bench/drills.py)",
    )
    parser.add_argument(
        "--database",
        choices=["auto", "sqlite", "postgresql"],
        default="auto",
        help="auto: a fresh PostgreSQL database when drills run and it is reachable, else SQLite",
    )
    parser.add_argument(
        "--outage-seconds",
        type=float,
        default=3.0,
        help="how long the database drill keeps it down",
    )
    args = parser.parse_args(argv)
    settings = Settings(
        seconds=args.seconds,
        workers=args.workers,
        rate=args.rate,
        commit_interval=args.commit_interval,
        drills=args.drills,
        database=args.database,
        outage_seconds=args.outage_seconds,
    )
    return run(settings)


def run(settings: Settings) -> int:
    with tempfile.TemporaryDirectory(prefix="samops-soak-") as name, ExitStack() as stack:
        folder = Path(name)
        database_url, note, kind = choose_database(settings, stack, folder)
        print(
            f"soak: {note}; {settings.workers} workers at {settings.rate:g} req/s; "
            f"a commit every {settings.commit_interval:g} s for {settings.seconds:g} s"
            + ("; drills on" if settings.drills else ""),
            flush=True,
        )
        children: list[Child] = []

        def stop_children() -> None:
            for child in reversed(children):
                child.stop()

        stack.callback(stop_children)
        upstream_port, samops_port = free_port(), free_port()
        upstream = scripted_upstream(upstream_port, folder / "upstream.log")
        children.append(upstream)
        faulty = None
        faulty_port = free_port() if settings.drills else None
        if faulty_port is not None:
            faulty = scripted_upstream(faulty_port, folder / "faulty.log")
            children.append(faulty)
        repo = ManifestRepo(folder / "repo", faulty_port=faulty_port)
        upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
        samops = samops_run(
            ["--repo", str(repo.root), "--path", "manifests"],
            port=samops_port,
            env={
                "SAMOPS_DATA_DIR": str(folder / "data"),
                "SAMOPS_DATABASE_URL": database_url,
                "OPENAI_API_KEY": "soak",
                "OPENAI_BASE_URL": upstream_url,
                "STACKADEMY_API_TOKEN": "soak-token",
                "SAMOPS_SECRETS_ENV": "STACKADEMY_API_TOKEN",
            },
            log=folder / "samops.log",
        )
        children.append(samops)
        base = f"http://127.0.0.1:{samops_port}"
        for child, url in ((upstream, f"{upstream_url}/models"), (samops, f"{base}/readyz")):
            wait_ok(url, child)
        if faulty is not None:
            wait_ok(f"http://127.0.0.1:{faulty_port}/v1/models", faulty)
        live = Live()
        soak = Soak(settings, repo, samops, base, live)

        def drill_context(session: aiohttp.ClientSession) -> DrillContext:
            return DrillContext(
                session=session,
                base=base,
                samops=samops,
                folder=folder,
                repo=repo.root,
                upstream_url=upstream_url,
                faulty=faulty,
                database=kind,
                database_note=note,
                commits=repo.commits,
                applied=lambda: (live.applied_sha, live.applied_generation),
                load_outcomes=soak.load_outcomes,
                outage_seconds=settings.outage_seconds,
            )

        eventloop.run(soak.run(drill_context if settings.drills else None))
        alive = samops.alive()
        samops.stop()  # a clean shutdown writes every queued chat turn
        generations = applied_generations(database_url, repo)
        figures = analyse(live, repo, generations)
        checked, lost = turns_not_stored(database_url, live.samples)
        figures["smarter_turns_checked"], figures["smarter_turns_not_stored"] = checked, lost
        logged = log_summary(samops.log.read_text(errors="replace").splitlines())
    report: dict[str, Any] = {
        "settings": asdict(settings),
        "database": note,
        "started": dt.datetime.fromtimestamp(live.started, dt.UTC).isoformat(),
        "duration_s": round(time.time() - live.started, 1),
        "figures": figures,
        "samops_alive_at_end": alive,
        "samops_log": logged,
        "drills": [asdict(d) for d in live.drills],
    }
    print_report(report, figures, live.drills)
    for what, count in list(logged.items())[:6]:
        print(f"  samops log: {count} x {what}")
    REPORTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = REPORTS / f"soak-{stamp}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    failed = [
        name
        for name, bad in (
            ("errors", figures["errors"]),
            ("config_mismatches", figures["config_mismatches"]),
            ("revoked_key_accepted_after_1s", figures["revoked_key_accepted_after_1s"]),
            ("smarter_turns_not_stored", figures["smarter_turns_not_stored"]),
            ("samops_exited", not alive),
            ("drills", sum(d.outcome == "FAIL" for d in live.drills)),
        )
        if bad
    ]
    print(f"  report: {path.relative_to(ROOT)}")
    print("soak: " + (f"FAILED ({', '.join(failed)})" if failed else "passed"))
    return 1 if failed else 0


def log_summary(lines: list[str]) -> dict[str, int]:
    """samops' warnings and errors, counted by level and message (fields left out)."""
    counts: dict[str, int] = {}
    for line in lines:
        found = re.match(r"\S+ (WARNING|ERROR|CRITICAL)\s+(.*?)(?: \w+=.*)?$", line)
        if found:
            what = f"{found[1]} {found[2][:90]}"
            counts[what] = counts.get(what, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def choose_database(settings: Settings, stack: ExitStack, folder: Path) -> tuple[str, str, str]:
    """(URL, description, kind): a fresh PostgreSQL database, or a SQLite file."""
    sqlite = f"sqlite:///{folder / 'samops.sqlite3'}"
    wanted = settings.database
    if wanted == "sqlite" or (wanted == "auto" and not settings.drills):
        return sqlite, "SQLite", "sqlite"
    url, note = stack.enter_context(postgres_database(POSTGRES_ADMIN_URL))
    if url is not None:
        return url, note, "postgresql"
    if wanted == "postgresql":
        sys.exit(f"soak: {note}")
    print(f"soak: {note}; running on SQLite, the database drill will be skipped", flush=True)
    return sqlite, f"SQLite ({note})", "sqlite"


if __name__ == "__main__":
    sys.exit(main())
