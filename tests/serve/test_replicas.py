"""Serve-only replicas on a shared PostgreSQL database follow the reconciler's generations:
a commit reaches every replica within a second of being applied (one replica runs two worker
processes)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import GitRepo
from tests.daemon.conftest import DaemonProcess, set_role, wait_for

ASK_SYSTEM = json.dumps(
    {"model": "support", "messages": [{"role": "user", "content": "#system"}]}
).encode()


@pytest.fixture
def fleet(repo: GitRepo, postgres_url: str, tmp_path: Path) -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    env = {"SAMOPS_DATABASE_URL": postgres_url}
    try:
        started.append(
            DaemonProcess(
                ["--repo", str(repo.root), "--path", "manifests"],
                env={**env, "SAMOPS_DATA_DIR": str(tmp_path / "r")},
                log=tmp_path / "reconciler.log",
            )
        )
        started[0].applied(repo.git("rev-parse", "HEAD"))
        for n, args in enumerate(([], ["--workers", "2"])):  # the second: two processes
            started.append(
                DaemonProcess(
                    args,
                    env={**env, "SAMOPS_DATA_DIR": str(tmp_path / f"{n}")},
                    log=tmp_path / f"replica-{n}.log",
                    command="serve",
                )
            )
        yield started
    finally:
        for process in started:
            assert process.stop() == 0


def answer(process: DaemonProcess) -> tuple[str, str]:
    code, body = process.request(
        "POST", "/v1/chat/completions", ASK_SYSTEM, {"Content-Type": "application/json"}
    )
    assert code == 200, body
    return body["choices"][0]["message"]["content"], str(process.metric("samops_served_generation"))


def ready(process: DaemonProcess) -> bool:
    return process.request("GET", "/readyz")[0] == 200


def serves_generation(process: DaemonProcess, generation: int) -> bool:
    return process.metric("samops_served_generation") == generation


def serves(process: DaemonProcess, text: str) -> bool:
    return text in answer(process)[0]


def test_commit_reaches_both_replicas(fleet: list[DaemonProcess], repo: GitRepo) -> None:
    reconciler, *replicas = fleet
    for replica in replicas:
        wait_for(partial(ready, replica), what="replica ready")
        assert "friendly support agent" in answer(replica)[0]

    commit = set_role(repo, "You are the replicated assistant.")
    reconciler.applied(commit)
    applied_at = time.monotonic()

    for replica in replicas:
        wait_for(
            partial(serves, replica, "replicated assistant"),
            timeout=5,
            what="the new prompt on a replica",
        )
        assert time.monotonic() - applied_at < 1.0
        # with workers, the lowest generation any of them serves
        wait_for(partial(serves_generation, replica, 2), what="every process")
