"""A directory source is watched too; ``samops reconcile`` fetches a remote now; logs can be
JSON lines carrying the revision; SIGTERM stops the process cleanly."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from reconciler.cli import cli
from tests.conftest import MANIFESTS, GitRepo
from tests.daemon.conftest import DaemonProcess, set_role, wait_for


def test_directory_edit_is_applied(
    start_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    folder = Path(shutil.copytree(MANIFESTS, tmp_path / "manifests"))
    daemon = start_daemon(str(folder))
    first = wait_for(lambda: daemon.status()["last_applied_revision"], what="a first apply")
    support = folder / "clients" / "support.yaml"
    support.write_text(support.read_text().replace("Charlie", "Chuck"))

    status = wait_for(
        lambda: (s := daemon.status())["last_applied_revision"] != first and s,
        what="the edit applied",
    )

    assert status["last_applied_revision"].startswith("dir:")
    assert status["last_sync"]["updated"] == 1


def test_reconcile_command_fetches_a_remote_now(
    start_daemon: Callable[..., DaemonProcess],
    remote: tuple[GitRepo, Path],
    database_url: str,
) -> None:
    work, bare = remote
    daemon = start_daemon(
        "--url", str(bare), "--ref", "main", "--path", "manifests", "--poll-interval", "3600"
    )
    daemon.applied(work.git("rev-parse", "HEAD"))
    pushed = set_role(work, "Fetched on request.")
    work.git("push", "--quiet", "origin", "main")

    result = CliRunner().invoke(cli, ["reconcile"], env={"SAMOPS_DATABASE_URL": database_url})

    assert result.exit_code == 0
    daemon.applied(pushed)


def test_json_logs_carry_the_revision_and_sigterm_exits_cleanly(
    start_daemon: Callable[..., DaemonProcess], git_repo: GitRepo
) -> None:
    shutil.copytree(MANIFESTS, git_repo.root / "manifests")
    sha = git_repo.commit("example")
    daemon = start_daemon(
        "--repo", str(git_repo.root), "--path", "manifests", "--log-format", "json"
    )
    daemon.applied(sha)

    assert daemon.stop() == 0

    lines = [
        json.loads(line) for line in daemon.log.read_text().splitlines() if line.startswith("{")
    ]
    reconciled = [line for line in lines if line["message"] == "reconciled"]
    assert reconciled[0]["revision"] == sha
    assert reconciled[0]["outcome"] == "applied"
    assert lines[-1]["message"] == "stopped"
