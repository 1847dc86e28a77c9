"""``samops reconcile``, ``suspend`` and ``resume`` say whether a daemon follows the database:
a request nobody will act on says so, and that it waits for one."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

import pytest

from tests.conftest import GitRepo
from tests.daemon.conftest import SAMOPS, DaemonProcess, wait_for

WAITS = "no daemon follows this database (source 'default') right now: the request waits"
ACTS = "a daemon follows this database (source 'default')"


def samops(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SAMOPS), *args],
        env={**os.environ, "SAMOPS_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", ["reconcile", "suspend", "resume"])
def test_request_says_whether_a_daemon_follows(
    database_url: str,
    repo: GitRepo,
    start_daemon: Callable[..., DaemonProcess],
    command: str,
) -> None:
    assert samops(database_url, "db", "upgrade").returncode == 0
    alone = samops(database_url, command)
    assert alone.returncode == 0, alone.stderr
    assert WAITS in alone.stdout

    daemon = start_daemon("--repo", str(repo.root), "--path", "manifests")
    followed = wait_for(  # the daemon leads from its first control check
        lambda: (
            (done := samops(database_url, command)).returncode == 0 and ACTS in done.stdout and done
        ),
        what=f"samops {command} to see the daemon",
    )
    assert WAITS not in followed.stdout

    daemon.stop()
    assert WAITS in samops(database_url, command).stdout
