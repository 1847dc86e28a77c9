"""High availability and database faults: one leader applies (a PostgreSQL advisory lock, or
a file lock beside a SQLite database), a standby takes over when it dies, and a database
outage (on PostgreSQL) is retried while the server keeps answering."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, select, text
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


def test_database_outage_is_retried_while_the_server_answers(
    repo: GitRepo, postgres_url: str, postgres_admin: Engine, tmp_path: Path
) -> None:
    daemon = DaemonProcess(
        ["--repo", str(repo.root), "--path", "manifests"],
        env={"SAMOPS_DATA_DIR": str(tmp_path / "data"), "SAMOPS_DATABASE_URL": postgres_url},
        log=tmp_path / "daemon.log",
    )
    name = make_url(postgres_url).database
    try:
        daemon.applied(repo.git("rev-parse", "HEAD"))
        with postgres_admin.connect() as admin:
            admin.exec_driver_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            admin.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
        try:
            commit = set_role(repo, "During the outage.")
            wait_for(
                lambda: (
                    "reconcile failed; retrying" in daemon.log.read_text()
                    or "database unavailable" in daemon.log.read_text()
                ),
                what="the failure to be logged",
            )
            assert daemon.request("GET", "/healthz")[0] == 200
            code, answer = daemon.request("GET", "/readyz")
            assert (code, answer["error"]["code"]) == (503, "database_unavailable")
        finally:
            with postgres_admin.connect() as admin:
                admin.exec_driver_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        daemon.applied(commit, timeout=30)
        wait_for(lambda: daemon.request("GET", "/readyz")[0] == 200, what="ready again")
    finally:
        daemon.stop()
