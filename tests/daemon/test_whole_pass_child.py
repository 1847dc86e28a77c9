"""A whole-revision pass in a child process (``reconciler/whole.py``, issue 15: the parse peak
of a large revision never stays in the serving process). The followers below are the real
local-git follower, changed only in what they do once unpickled in the child."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from bench.validate import generate
from reconciler.daemon import Daemon
from reconciler.errors import SourceError, TemporaryError
from reconciler.follow import Follower, LocalGitFollower
from reconciler.leader import leader_lock_for
from reconciler.metrics import ReconcilerMetrics
from reconciler.settings import DaemonSettings
from reconciler.source import Known, RevisionFiles
from reconciler.store.db import open_database, reading
from reconciler.store.read import read_actual, read_state
from reconciler.whole import ChildPassError, RunningChild, pass_whole_in_child
from tests.conftest import MANIFESTS, GitRepo
from tests.daemon.conftest import DaemonProcess, wait_for

IN_A_CHILD = DaemonSettings(whole_pass_child_files=0)
IN_PROCESS = DaemonSettings()


@dataclass
class InChild(LocalGitFollower):
    """Reads like the real follower in the test's process; in the child, does ``what``."""

    what: str = "read"
    gate: str = ""
    parent: int = field(default_factory=os.getpid)

    def read(self, known: Known | None = None) -> RevisionFiles:
        if os.getpid() != self.parent:
            if self.what == "wait":  # until the test opens the gate (it never does)
                deadline = time.monotonic() + 30
                while not Path(self.gate).exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
            elif self.what == "source error":
                raise SourceError("cannot list the files of main: the disk went away")
            elif self.what == "bug":
                raise ValueError("a bug in the child")
        return super().read(known)


def _daemon(engine: Engine, follower: Follower, settings: DaemonSettings) -> Daemon:
    return Daemon(
        engine=engine,
        follower=follower,
        leader=leader_lock_for(engine, "default"),
        metrics=ReconcilerMetrics(CollectorRegistry()),
        settings=settings,
    )


def _rows(engine: Engine) -> dict[object, object]:
    with reading(engine) as connection:
        return dict(read_actual(connection, source="default"))


def _generation(engine: Engine) -> int:
    with reading(engine) as connection:
        return read_state(connection).generation


@pytest.fixture
def examples(git_repo: GitRepo) -> GitRepo:
    shutil.copytree(MANIFESTS, git_repo.root / "manifests")
    git_repo.commit("the examples")
    return git_repo


def test_a_whole_pass_in_a_child_applies_what_the_daemon_would_and_is_remembered(
    engine: Engine, examples: GitRepo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="samops")
    daemon = _daemon(engine, LocalGitFollower(examples.root, path="manifests"), IN_A_CHILD)

    result = daemon.reconcile_once()

    assert result.outcome == "applied" and result.generation == 1
    assert daemon.memory is not None and daemon.memory.revision == result.revision
    child_records = [r for r in caplog.records if r.process != os.getpid()]
    assert "whole-revision pass in a child process" in [r.getMessage() for r in child_records]
    here = open_database(f"sqlite:///{tmp_path / 'in-process.sqlite3'}")
    alone = _daemon(here, LocalGitFollower(examples.root, path="manifests"), IN_PROCESS)
    assert alone.reconcile_once().plan.count("create") == result.plan.count("create") > 10
    assert _rows(engine) == _rows(here)

    role = examples.root / "manifests/clients/support.yaml"
    role.write_text(role.read_text().replace("You are", "You are, briefly,"))
    examples.commit("a one-file change")
    second = daemon.reconcile_once()
    assert second.outcome == "applied" and second.generation == 2
    assert daemon.last_pass_incremental  # the child's memory serves the next pass
    here.dispose()


def test_an_invalid_revision_in_a_child_reports_its_errors_and_changes_nothing(
    engine: Engine, examples: GitRepo
) -> None:
    daemon = _daemon(engine, LocalGitFollower(examples.root, path="manifests"), IN_A_CHILD)
    assert daemon.reconcile_once().outcome == "applied"
    before = _rows(engine)
    support = examples.root / "manifests/clients/support.yaml"
    support.write_text(support.read_text() + "  unknownSetting: 1\n")
    examples.commit("a typo")

    result = daemon.reconcile_once()

    assert result.outcome == "invalid"
    assert any(
        e.location() == "manifests/clients/support.yaml:30:3" and "unknownSetting" in e.message
        for e in result.errors
    ), [e.location() + " " + e.message for e in result.errors]
    assert _generation(engine) == 1 and _rows(engine) == before
    assert daemon.memory is None  # the next pass checks the whole revision again


def _pass_in_thread(
    engine: Engine, follower: Follower, running: RunningChild
) -> tuple[threading.Thread, list[BaseException]]:
    raised: list[BaseException] = []

    def work() -> None:
        try:
            pass_whole_in_child(engine, follower, IN_A_CHILD, running)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    return thread, raised


def test_a_killed_child_fails_the_pass_transiently_and_commits_nothing(
    engine: Engine, examples: GitRepo, tmp_path: Path
) -> None:
    follower = InChild(examples.root, path="manifests", what="wait", gate=str(tmp_path / "gate"))
    running = RunningChild()
    thread, raised = _pass_in_thread(engine, follower, running)
    process = wait_for(lambda: running.process, timeout=30, what="the child")

    process.kill()
    thread.join(timeout=30)

    assert not thread.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], TemporaryError), raised
    assert "signal SIGKILL" in str(raised[0]) and "before it answered" in str(raised[0])
    assert _generation(engine) == 0 and _rows(engine) == {}


def test_a_stopping_daemon_kills_the_child_of_its_pass(
    engine: Engine, examples: GitRepo, tmp_path: Path
) -> None:
    follower = InChild(examples.root, path="manifests", what="wait", gate=str(tmp_path / "gate"))
    daemon = _daemon(engine, follower, IN_A_CHILD)
    running = daemon._child

    async def run_then_stop() -> int:
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        while running.process is None:
            assert not task.done(), task
            await asyncio.sleep(0.01)
        pid = running.process.pid
        stop.set()  # what the server does on a signal: stop, and cancel its root tasks
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=20)
        assert pid is not None
        return pid

    pid = asyncio.run(run_then_stop())

    wait_for(lambda: not _alive(pid), timeout=10, what=f"the child {pid} to end")
    assert _generation(engine) == 0


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.parametrize(
    ("what", "raised", "says"),
    [
        pytest.param("source error", SourceError, "the disk went away", id="samops-error"),
        pytest.param("bug", ChildPassError, "ValueError: a bug in the child", id="bug"),
    ],
)
def test_what_the_child_raises_comes_back_to_the_daemon(
    engine: Engine, examples: GitRepo, what: str, raised: type[Exception], says: str
) -> None:
    follower = InChild(examples.root, path="manifests", what=what)

    with pytest.raises(raised) as caught:
        pass_whole_in_child(engine, follower, IN_A_CHILD, RunningChild())

    assert says in str(caught.value)
    if raised is ChildPassError:  # the child's own traceback, where the bug is
        assert "test_whole_pass_child.py" in str(caught.value)
    assert _generation(engine) == 0


def test_samops_run_passes_a_large_revision_in_a_child(
    start_daemon: Callable[..., DaemonProcess], git_repo: GitRepo
) -> None:
    manifests = git_repo.root / "manifests"
    manifests.mkdir()
    generate(manifests, 500)  # 1,000 files: samops run's threshold
    first = git_repo.commit("500 clients and their plugins")

    daemon = start_daemon("--repo", str(git_repo.root), "--path", "manifests")
    daemon.applied(first, timeout=60)
    client = manifests / "client_7.yaml"
    client.write_text(client.read_text().replace("Be brief", "Be thorough"))
    second = git_repo.commit("one client")
    daemon.applied(second, timeout=30)

    log = daemon.log.read_text()
    assert "whole-revision pass in a child process" in log
    assert "incremental" in log.split("whole-revision pass in a child process", 1)[1]
