"""One step of the scale benchmark, alone in its process so that its peak RSS is its own.

``python -m bench.scalestep STEP --repo R --path P [--ref REF] [--warm-ref REF]
[--database-url URL]`` runs one step, times it with ``perf_counter`` (imports and start-up
excluded), and prints one JSON line: ``{"seconds", "outcome", "changes", "peak_rss_kb"}``.
The peak RSS is this process's ``VmHWM`` (``/proc/self/status``): ``ru_maxrss`` as the parent
sees it would also count the parent's own pages from before ``exec``.

- ``parse``: the baseline: read the files of the working tree under P and parse them with
  PyYAML's C loader, nothing else;
- ``validate``: read the commit's files from git and validate them (``samops validate``);
- ``apply``: the first pass of a new daemon on an empty database: read, validate, apply;
- ``reconcile``: a pass of a daemon (``Daemon.reconcile_once``) that has been running: first,
  untimed, it remembers ``--warm-ref`` (already applied: ``reconciler/warmup.py``, what
  the daemon's earlier passes left in memory), then the timed pass over ``--ref``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def _parse(root: Path) -> dict[str, Any]:
    import yaml

    paths = sorted(p for p in root.rglob("*.yaml") if p.is_file())
    started = time.perf_counter()
    for path in paths:
        list(yaml.load_all(path.read_bytes(), Loader=yaml.CSafeLoader))
    return {"seconds": time.perf_counter() - started, "outcome": f"{len(paths):,} files parsed"}


def _pass(args: argparse.Namespace) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from reconciler.daemon import Daemon
    from reconciler.follow import LocalGitFollower
    from reconciler.leader import leader_lock_for
    from reconciler.metrics import ReconcilerMetrics
    from reconciler.settings import WHOLE_PASS_CHILD_FILES, DaemonSettings
    from reconciler.store.db import open_database
    from reconciler.warmup import remember_applied
    from reconciler.whole import start_child_server

    start_child_server()  # as samops run does, before its start-up's other work (whole.py)
    engine = open_database(args.database_url)  # schema migrations are not timed
    follower = LocalGitFollower(args.repo, path=args.path)
    daemon = Daemon(  # its pass, exactly as samops run makes it; the loop is not started
        engine=engine,
        follower=follower,
        leader=leader_lock_for(engine, "default"),
        metrics=ReconcilerMetrics(CollectorRegistry()),
        settings=DaemonSettings(whole_pass_child_files=WHOLE_PASS_CHILD_FILES),
    )

    def one(ref: str) -> dict[str, Any]:
        follower.ref = ref
        result = daemon.reconcile_once()
        if not result.ok:
            raise SystemExit(f"{ref}: {result.outcome}: {result.message or result.errors[:3]}")
        plan = result.plan
        changes = f"+{plan.count('create')} ~{plan.count('update')} -{plan.count('delete')}"
        return {"outcome": result.outcome, "changes": changes}

    if args.warm_ref:  # what the daemon's earlier passes left in its memory
        follower.ref = args.warm_ref
        if not remember_applied(daemon):
            raise SystemExit(f"{args.warm_ref} is not the applied revision: nothing to remember")
    started = time.perf_counter()
    done = one(args.ref)
    done["seconds"] = time.perf_counter() - started
    engine.dispose()
    return done


def _validate(args: argparse.Namespace) -> dict[str, Any]:
    from reconciler.sam.revision import validate_files
    from reconciler.source import GitSource

    started = time.perf_counter()
    snapshot = GitSource(args.repo, ref=args.ref, path=args.path).read()
    revision = validate_files(snapshot.revision, snapshot.files)
    seconds = time.perf_counter() - started
    if not revision.valid:
        raise SystemExit(f"the generated repository is invalid: {revision.errors[:3]}")
    return {"seconds": seconds, "outcome": f"valid, {revision.files:,} files"}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scalestep", description=__doc__)
    parser.add_argument("step", choices=["parse", "validate", "apply", "reconcile"])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--path", default="manifests")
    parser.add_argument("--ref", default="HEAD")
    parser.add_argument("--warm-ref", help="reconcile: the revision applied before --ref")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    if args.step == "parse":
        result = _parse(args.repo / args.path)
    elif args.step == "validate":
        result = _validate(args)
    else:
        result = _pass(args)
    result["peak_rss_kb"] = _peak_rss_kb()
    print(json.dumps(result))


def _peak_rss_kb() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux


if __name__ == "__main__":
    main()
