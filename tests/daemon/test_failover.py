"""High availability and database faults: one leader applies (a PostgreSQL advisory lock, or
a file lock beside a SQLite database), a standby takes over when it dies, and a database
outage (on PostgreSQL) is retried while the server keeps answering."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.engine import make_url

from reconciler.store import schema
from reconciler.store.db import open_database
from tests.conftest import GitRepo
from tests.daemon.conftest import DaemonProcess, set_role, wait_for


def leaders(daemons: list[DaemonProcess]) -> list[DaemonProcess]:
    return [d for d in daemons if d.metric("samops_leader") == 1]


def test_standby_takes_over_and_applies_the_next_commit_once(
    start_daemon: Callable[..., DaemonProcess], repo: GitRepo, database_url: str
) -> None:
    args = ("--repo", str(repo.root), "--path", "manifests")
    daemons = [start_daemon(*args), start_daemon(*args)]
    daemons[0].applied(repo.git("rev-parse", "HEAD"))
    found: list[DaemonProcess] = wait_for(
        lambda: len(found := leaders(daemons)) == 1 and found, what="exactly one leader"
    )
    leader = found[0]
    standby = next(d for d in daemons if d is not leader)
    assert standby.metric("samops_leader") == 0

    leader.kill()
    commit = set_role(repo, "After failover.")

    standby.applied(commit, timeout=20)
    assert standby.metric("samops_leader") == 1
    engine = open_database(database_url)
    with engine.connect() as connection:
        rows = (
            connection.execute(
                select(schema.syncs.c.outcome).where(schema.syncs.c.revision == commit)
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert rows == ["applied"]


OUTAGE_SECONDS = 6
"""How long the database stays away once the outage is noticed: the input's shape, nothing
asserts about it. Long enough for an escalating backoff to have grown past the 10 s bound."""


def postgres_daemon(repo: GitRepo, url: str, tmp_path: Path) -> DaemonProcess:
    return DaemonProcess(
        ["--repo", str(repo.root), "--path", "manifests", "--log-format", "json"],
        env={"SAMOPS_DATA_DIR": str(tmp_path / "data"), "SAMOPS_DATABASE_URL": url},
        log=tmp_path / "daemon.log",
    )


def drop_connections(admin: Connection, name: str | None) -> None:
    admin.execute(
        text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = :name AND pid <> pg_backend_pid()"
        ),
        {"name": name},
    )


@contextmanager
def database_outage(admin: Engine, url: str) -> Iterator[None]:
    """The daemon's PostgreSQL database refuses connections (its own are dropped)."""
    name = make_url(url).database
    with admin.connect() as connection:
        connection.exec_driver_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        drop_connections(connection, name)
    try:
        yield
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')


def messages(daemon: DaemonProcess, level: str, text: str) -> list[dict[str, Any]]:
    return [
        line
        for line in daemon.log_lines()
        if line["level"] == level and line["message"].startswith(text)
    ]


def test_commit_during_a_database_outage_applies_as_soon_as_it_ends(
    repo: GitRepo, postgres_url: str, postgres_admin: Engine, tmp_path: Path
) -> None:
    daemon = postgres_daemon(repo, postgres_url, tmp_path)
    try:
        daemon.applied(repo.git("rev-parse", "HEAD"))
        with database_outage(postgres_admin, postgres_url):
            commit = set_role(repo, "During the outage.")
            wait_for(
                lambda: messages(daemon, "warning", "database unavailable"),
                what="the outage to be logged",
            )
            assert daemon.request("GET", "/healthz")[0] == 200
            code, answer = daemon.request("GET", "/readyz")
            assert (code, answer["error"]["code"]) == (503, "database_unavailable")
            time.sleep(OUTAGE_SECONDS)

        daemon.applied(commit, timeout=10)

        wait_for(lambda: daemon.request("GET", "/readyz")[0] == 200, what="ready again")
        warnings = messages(daemon, "warning", "database unavailable")
        failed_checks = max(line["failed_checks"] for line in warnings)
        assert len(warnings) < failed_checks  # not one warning per failed check
        assert len(messages(daemon, "info", "database reachable again")) == 1
        assert not messages(daemon, "warning", "reconcile failed")  # no pass was tried in vain
    finally:
        daemon.stop()


def test_failed_pass_is_logged_with_its_revision_and_retried(
    repo: GitRepo, postgres_url: str, postgres_admin: Engine, tmp_path: Path
) -> None:
    """Reads work but writes fail (the database turned read-only): the revision was read
    when the pass failed, so its log line names it."""
    name = make_url(postgres_url).database
    daemon = postgres_daemon(repo, postgres_url, tmp_path)
    try:
        daemon.applied(repo.git("rev-parse", "HEAD"))
        with postgres_admin.connect() as admin:
            admin.exec_driver_sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
            drop_connections(admin, name)
        commit = set_role(repo, "Written once writable.")
        failed = wait_for(
            lambda: messages(daemon, "warning", "reconcile failed; retrying"),
            what="a failed pass",
        )
        assert failed[0]["revision"] == commit
        assert failed[0]["retry_in_s"] > 0
        with postgres_admin.connect() as admin:
            admin.exec_driver_sql(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
            drop_connections(admin, name)

        daemon.applied(commit, timeout=20)

        passes = daemon.metrics()["samops_reconciles"].samples
        assert {s.labels["outcome"] for s in passes if s.value} >= {"applied", "failed"}
    finally:
        daemon.stop()
