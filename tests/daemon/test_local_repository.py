"""``samops run`` follows a local repository: commits apply at once, without a restart."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client.metrics_core import Metric
from sqlalchemy import select

from reconciler.store import schema
from reconciler.store.db import open_database
from tests.conftest import GitRepo
from tests.daemon.conftest import DaemonProcess, set_role, wait_for


def test_commit_is_applied_and_served_without_restart(
    start_daemon: Callable[..., DaemonProcess], repo: GitRepo
) -> None:
    daemon = start_daemon("--repo", str(repo.root), "--path", "manifests")
    first = repo.git("rev-parse", "HEAD")
    daemon.applied(first)
    assert daemon.ready() == {
        "status": "ready",
        "revision": first,
        "served_generation": 1,
        "worker": 0,
    }
    before = time.time()

    second = set_role(repo, "Be very brief.")

    status = daemon.applied(second)
    assert status["generation"] == 2
    assert status["last_sync"]["updated"] == 1
    metrics = daemon.metrics()
    passes = samples(metrics["samops_reconciles"], "samops_reconciles_total", "outcome")
    assert passes["applied"] == 2
    assert passes.get("failed", 0) == 0
    duration = metrics["samops_reconcile_duration_seconds"]
    assert duration.type == "histogram"
    count = samples(duration, "samops_reconcile_duration_seconds_count")[""]
    buckets = samples(duration, "samops_reconcile_duration_seconds_bucket", "le")
    assert count == sum(passes.values()) >= 2
    assert buckets["+Inf"] == count
    assert list(buckets.values()) == sorted(buckets.values())  # cumulative
    assert samples(duration, "samops_reconcile_duration_seconds_sum")[""] > 0
    applied_at = samples(
        metrics["samops_last_applied_timestamp_seconds"], "samops_last_applied_timestamp_seconds"
    )[""]
    assert before <= applied_at <= time.time()
    assert samples(metrics["samops_generation"], "samops_generation")[""] == 2


def samples(family: Metric, name: str, label: str = "") -> dict[str, float]:
    """The values of one sample name of a metric family, by the value of ``label``."""
    return {s.labels.get(label, ""): s.value for s in family.samples if s.name == name}


def test_burst_of_commits_coalesces_and_the_last_wins(
    start_daemon: Callable[..., DaemonProcess], repo: GitRepo, database_url: str
) -> None:
    daemon = start_daemon("--repo", str(repo.root), "--path", "manifests")
    first = repo.git("rev-parse", "HEAD")
    daemon.applied(first)
    last = ""
    for n in range(10):
        last = set_role(repo, f"Role number {n}.")

    daemon.applied(last)

    engine = open_database(database_url)
    with engine.connect() as connection:
        applied = (
            connection.execute(
                select(schema.syncs.c.revision)
                .where(schema.syncs.c.outcome == "applied", schema.syncs.c.revision != first)
                .order_by(schema.syncs.c.id)
            )
            .scalars()
            .all()
        )
        role = connection.execute(
            select(schema.llm_clients.c.default_system_role).where(
                schema.llm_clients.c.name == "support"
            )
        ).scalar_one()
    engine.dispose()
    assert role == "Role number 9."
    assert applied[-1] == last
    assert len(applied) <= 3, f"{len(applied)} applied passes for 10 quick commits"


def test_invalid_commit_keeps_serving_then_the_next_valid_one_applies(
    start_daemon: Callable[..., DaemonProcess], repo: GitRepo
) -> None:
    daemon = start_daemon("--repo", str(repo.root), "--path", "manifests")
    good = repo.git("rev-parse", "HEAD")
    daemon.applied(good)
    assert daemon.ready()["revision"] == good
    support = repo.root / "manifests/clients/support.yaml"
    original = support.read_text()
    support.write_text(original.replace("defaultModel", "defaultModle"))
    bad = repo.commit("typo")

    status = daemon.attempted(bad)

    assert status["last_applied_revision"] == good
    assert status["last_sync"]["outcome"] == "invalid"
    assert status["last_sync"]["errors"][0]["message"] == "unknown key 'defaultModle'"
    assert daemon.request("GET", "/readyz")[1]["revision"] == good

    support.write_text(original.replace("Charlie", "Chuck"))
    fixed = repo.commit("fix")
    status = daemon.applied(fixed)
    outcomes = [s["outcome"] for s in status["history"]]
    assert outcomes[:3] == ["applied", "invalid", "applied"]


def test_reset_and_checkout_move_the_followed_ref(
    start_daemon: Callable[..., DaemonProcess], repo: GitRepo
) -> None:
    daemon = start_daemon("--repo", str(repo.root), "--path", "manifests")
    first = repo.git("rev-parse", "HEAD")
    daemon.applied(first)
    second = set_role(repo, "Second.")
    daemon.applied(second)

    repo.git("reset", "--hard", "--quiet", first)
    daemon.applied(first)

    repo.git("checkout", "--quiet", "-b", "feature")
    third = set_role(repo, "On a branch.")
    daemon.applied(third)
    repo.git("checkout", "--quiet", "main")
    status = daemon.applied(first)
    assert status["generation"] == 5


def test_suspend_holds_commits_until_resume(
    start_daemon: Callable[..., DaemonProcess], repo: GitRepo, database_url: str
) -> None:
    from click.testing import CliRunner

    from reconciler.cli import cli

    def samops(*args: str) -> None:
        result = CliRunner().invoke(cli, list(args), env={"SAMOPS_DATABASE_URL": database_url})
        assert result.exit_code == 0, result.output

    daemon = start_daemon("--repo", str(repo.root), "--path", "manifests")
    first = repo.git("rev-parse", "HEAD")
    daemon.applied(first)
    samops("suspend", "--reason", "incident 42")
    wait_for(lambda: daemon.metric("samops_suspended") == 1, what="suspension seen")
    held = set_role(repo, "Held back.")
    samops("reconcile")
    wait_for(lambda: "suspended: not applying" in daemon.log.read_text(), what="a skipped pass")
    status = daemon.status()
    assert (status["last_applied_revision"], status["suspended"]) == (first, True)
    assert status["suspended_reason"] == "incident 42"

    samops("resume")

    status = daemon.applied(held)
    assert status["suspended"] is False


def test_commit_outside_the_manifests_is_applied_without_reading_them(
    start_daemon: Callable[..., DaemonProcess], repo: GitRepo
) -> None:
    daemon = start_daemon("--repo", str(repo.root), "--path", "manifests", "--log-format", "json")
    daemon.applied(repo.git("rev-parse", "HEAD"))
    repo.write("README.md", "The manifests live in manifests/.\n")

    docs = repo.commit("docs only")

    status = daemon.applied(docs)
    assert status["generation"] == 1
    assert status["last_sync"]["outcome"] == "unchanged"
    notes = [
        line.get("note")
        for line in daemon.log_lines()
        if line.get("message") == "reconciled" and line.get("revision") == docs
    ]
    assert notes == ["its manifests are those of the applied revision; nothing was read"]
