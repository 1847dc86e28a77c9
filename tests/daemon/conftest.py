"""Real ``samops run`` processes on loopback, driven over HTTP, for the daemon's tests."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MANIFESTS, PROJECT_ROOT, GitRepo
from tests.ports import free_port

SAMOPS = Path(sys.executable).parent / "samops"


def wait_for(
    condition: Callable[[], Any], *, timeout: float = 15.0, what: str = "condition"
) -> Any:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class DaemonProcess:
    """``samops run`` in a child process; its log goes to a file shown on failure."""

    def __init__(
        self,
        args: list[str],
        *,
        env: dict[str, str],
        log: Path,
        command: str = "run",
        port: int | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``tls``: the client's context when samops serves HTTPS (its ``--tls-*`` in args)."""
        self.port = port or free_port()
        self.env = env
        self.tls = tls
        self.base = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.log = log
        self.handle = log.open("w")
        self.process = subprocess.Popen(
            [str(SAMOPS), command, *args, "--port", str(self.port), "--log-level", "debug"],
            cwd=PROJECT_ROOT,
            env={**os.environ, **env},
            stdout=self.handle,
            stderr=subprocess.STDOUT,
        )
        wait_for(self.healthy, timeout=30, what=f"samops run on {self.base} ({log})")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        request = urllib.request.Request(  # noqa: S310 - always http://127.0.0.1
            self.base + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.tls) as response:  # noqa: S310
                raw = response.read()
                status = response.status
                kind = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            raw, status, kind = error.read(), error.code, error.headers.get("Content-Type", "")
        return status, json.loads(raw) if "json" in kind else raw.decode()

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(
                f"samops run exited with {self.process.returncode}:\n" + self.log.read_text()
            )
        try:
            return self.request("GET", "/healthz")[0] == 200
        except OSError:
            return False

    def status(self) -> dict[str, Any]:
        code, document = self.request("GET", "/api/v1/status")
        assert code == 200, document
        return dict(document)

    def applied(self, revision: str, timeout: float = 15.0) -> dict[str, Any]:
        return self._status_when("last_applied_revision", revision, timeout, "applied")

    def attempted(self, revision: str, timeout: float = 15.0) -> dict[str, Any]:
        return self._status_when("last_attempted_revision", revision, timeout, "attempted")

    def _status_when(self, key: str, revision: str, timeout: float, verb: str) -> dict[str, Any]:
        found: dict[str, Any] = wait_for(
            lambda: (s := self.status())[key] == revision and s,
            timeout=timeout,
            what=f"revision {revision[:12]} {verb}",
        )
        return found

    def ready(self, timeout: float = 15.0) -> dict[str, Any]:
        """``/readyz``'s answer once it is 200: a revision is applied *and* served (the status
        says applied as soon as the transaction commits; serving it follows)."""
        found: dict[str, Any] = wait_for(
            lambda: (r := self.request("GET", "/readyz"))[0] == 200 and r[1],
            timeout=timeout,
            what=f"{self.base}/readyz answering 200",
        )
        return found

    def metrics(self) -> dict[str, Metric]:
        """``/metrics`` parsed: families by name (a counter's family is named without
        ``_total``; its samples keep it)."""
        _, text = self.request("GET", "/metrics")
        return {family.name: family for family in text_string_to_metric_families(str(text))}

    def log_lines(self) -> list[dict[str, Any]]:
        """The log as JSON objects (start with ``--log-format json``)."""
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def metric(self, name: str) -> float | None:
        _, text = self.request("GET", "/metrics")
        for line in str(text).splitlines():
            if line.startswith((name + " ", name + "{")):
                return float(line.rsplit(" ", 1)[1])
        return None

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.handle.close()
        return self.process.returncode

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.handle.close()


@pytest.fixture
def start_daemon(tmp_path: Path, database_url: str) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(
        *args: str, env: dict[str, str] | None = None, tls: ssl.SSLContext | None = None
    ) -> DaemonProcess:
        name = f"daemon-{len(started)}"
        process = DaemonProcess(
            list(args),
            env={
                "SAMOPS_DATA_DIR": str(tmp_path / name),
                "SAMOPS_DATABASE_URL": database_url,
                **(env or {}),
            },
            log=tmp_path / f"{name}.log",
            tls=tls,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def demo_data_dir(tmp_path: Path) -> Path:
    """A data directory holding the demo's database, as ``make run`` builds it."""
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "stackademy.sqlite3") as db:
        db.executescript((MANIFESTS / "data/stackademy.sql").read_text())
    return data


# --- repositories -----------------------------------------------------------------------------

SUPPORT = (MANIFESTS / "clients/support.yaml").read_text()


def write_role(repo: GitRepo, role: str) -> None:
    """Give the example support client another system prompt, in the working tree."""
    text = re.sub(
        r"    defaultSystemRole: >\n(      .*\n)+", f"    defaultSystemRole: {role}\n", SUPPORT
    )
    assert text != SUPPORT
    (repo.root / "manifests/clients/support.yaml").write_text(text)


def set_role(repo: GitRepo, role: str) -> str:
    """Commit the example support client with another system prompt; returns the commit."""
    write_role(repo, role)
    return repo.commit(f"role: {role}")


@pytest.fixture
def repo(git_repo: GitRepo) -> GitRepo:
    """A local repository holding the example manifests."""
    shutil.copytree(MANIFESTS, git_repo.root / "manifests")
    git_repo.commit("example manifests")
    return git_repo


@pytest.fixture
def remote(tmp_path: Path) -> tuple[GitRepo, Path]:
    """A bare repository used as the remote, and a working clone that pushes to it."""
    bare = tmp_path / "remote.git"
    work = GitRepo(tmp_path / "work")
    work.git("init", "--quiet", "--bare", str(bare))
    shutil.copytree(MANIFESTS, work.root / "manifests")
    work.commit("example")
    work.git("remote", "add", "origin", str(bare))
    work.git("push", "--quiet", "origin", "main")
    return work, bare
