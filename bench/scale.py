"""Scale: a repository of N LLM clients and N plugins, validated, applied and reconciled.

The repository (``bench.validate.generate``, one file per resource under ``manifests/``) is
committed three times: the generated files (C0), a README outside ``manifests/`` (C1: a new
revision with nothing to change) and one client's system prompt edited (C2). Each step runs
alone in a child process (``bench/scalestep.py``), which reports its peak RSS (``VmHWM``):

- baseline: parse the same files with PyYAML's C loader, nothing else;
- cold validate: read C0 from git and validate it (what ``samops validate --repo`` does);
- cold apply: a new daemon's first pass over C0 on an empty database;
- no-op reconcile: a running daemon's pass over C1 (its manifests are C0's, same git tree:
  recorded as applied without reading them);
- one-file-change reconcile: a running daemon's pass over C2 (one update).

The two reconcile steps first remember the previous, applied revision, untimed, as a running
daemon's earlier passes did (``reconciler/warmup.py``), so the one-file change is a pass by
what changed and their peak RSS is the daemon's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import LABELS, fresh_database
from bench.report import Column, Section, ratio
from bench.soakkit import ROOT, git
from bench.validate import generate

STEP_TIMEOUT = 900.0  # seconds; the 10,000-client apply takes about 20 s here
COLUMNS = [
    Column("step", "step"),
    Column("database", "database"),
    Column("outcome", "outcome"),
    Column("ms", "step ms", 0),
    Column("x", "x baseline", 2),
    Column("process_s", "process s (with start-up)", 1),
    Column("rss_mb", "peak RSS MB", 0),
    Column("rss_x", "RSS x baseline", 2),
]


@dataclass(frozen=True, slots=True)
class Measured:
    seconds: float  # the step itself, timed inside the child
    process_seconds: float  # the whole child, start-up and imports included
    rss_mb: float  # the child's peak resident set size
    outcome: str
    changes: str


def _child(argv: list[str]) -> Measured:
    """Run one step in a process of its own; its figures."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bench.scalestep", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"scale step {argv[0]} failed: " + " / ".join(tail))
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return Measured(
        seconds=float(result["seconds"]),
        process_seconds=elapsed,
        rss_mb=int(result["peak_rss_kb"]) / 1024,
        outcome=str(result["outcome"]),
        changes=str(result.get("changes", "")),
    )


def _repository(root: Path, clients: int) -> tuple[Path, list[str]]:
    """The generated repository and its three commits (C0, C1, C2)."""
    repo = root / "repo"
    (repo / "manifests").mkdir(parents=True)
    generate(repo / "manifests", clients)
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "generated")
    (repo / "README.md").write_text("Generated for the scale benchmark.\n")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "readme")
    client = repo / "manifests" / "client_0.yaml"
    client.write_text(client.read_text().replace("Be brief", "Be thorough"))
    git(repo, "commit", "--quiet", "-am", "one client")
    return repo, git(repo, "rev-list", "--reverse", "HEAD").split()


def run(*, clients: int, kinds: list[str], postgres_url: str) -> Section:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="samops-bench-") as folder:
        root = Path(folder)
        repo, (c0, c1, c2) = _repository(root, clients)
        common = ["--repo", str(repo), "--path", "manifests"]
        print(f"scale: {clients:,} clients + {clients:,} plugins: baseline parse", flush=True)
        baseline = _child(["parse", *common])

        def add(step: str, database: str, measured: Measured) -> None:
            outcome = measured.outcome + (f" ({measured.changes})" if measured.changes else "")
            rows.append(
                {
                    "step": step,
                    "database": database,
                    "outcome": outcome,
                    "ms": measured.seconds * 1000,
                    "x": ratio(measured.seconds, baseline.seconds),
                    "process_s": measured.process_seconds,
                    "rss_mb": measured.rss_mb,
                    "rss_x": ratio(measured.rss_mb, baseline.rss_mb),
                }
            )

        add("baseline: bare YAML parse (C loader)", "–", baseline)
        print("scale: cold validate", flush=True)
        add("cold validate (read from git + validate)", "–", _child(["validate", *common]))
        for kind in kinds:
            label = LABELS[kind]
            with fresh_database(kind, folder=root, name="scale", postgres_url=postgres_url) as url:
                database = [*common, "--database-url", url]
                print(f"scale: {label}: cold apply, no-op and one-file reconciles", flush=True)
                add("cold apply", label, _child(["apply", *database, "--ref", c0]))
                add(
                    "no-op reconcile (new commit, nothing to change)",
                    label,
                    _child(["reconcile", *database, "--warm-ref", c0, "--ref", c1]),
                )
                add(
                    "one-file-change reconcile",
                    label,
                    _child(["reconcile", *database, "--warm-ref", c1, "--ref", c2]),
                )
    return Section(
        "scale",
        f"Scale: {clients:,} LLM clients and {clients:,} plugins",
        f"A generated git repository of {2 * clients:,} files; each step alone in a child "
        "process. Step ms is the step itself, timed in the child; process s adds the "
        "interpreter's start-up and imports; peak RSS is the child's (VmHWM). Baseline: a bare "
        "YAML parse of the same files (PyYAML's C loader) in a child process of its own.",
        COLUMNS,
        rows,
        [
            "The reconcile steps are a running daemon's passes: each process first remembers "
            "the previous, applied revision (untimed, validated in its own process), so their "
            "peak RSS is that warm-up's. samops run passes a whole revision of 1,000 files or "
            "more in a child process (cold apply's peak RSS here is the daemon's, without the "
            "child): what samops run holds is in the scale curve.",
        ],
    )
