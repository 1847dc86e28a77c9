"""The loop acts on what kind of failure a pass met (``reconciler/errors.py``): a temporary
one is retried on a backoff; a permanent one and a bug in samops are not retried on a timer
(before, every exception was wrapped as transient, so a bug retried forever).

The follower is the real one of a local repository, failing on its read the way each kind of
failure would surface there.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from reconciler.daemon import Daemon
from reconciler.errors import DatabaseRefused, SourceError
from reconciler.follow import LocalGitFollower
from reconciler.leader import leader_lock_for
from reconciler.metrics import ReconcilerMetrics
from reconciler.source import Known, RevisionFiles
from reconciler.store.status import status_document
from tests.conftest import MANIFESTS, GitRepo


@dataclass
class FailingFollower(LocalGitFollower):
    failure: Exception | None = None

    def read(self, known: Known | None = None) -> RevisionFiles:
        if self.failure is not None:
            raise self.failure
        return super().read(known)


@pytest.mark.parametrize(
    ("failure", "retried", "level", "text"),
    [
        pytest.param(SourceError("the disk is busy"), True, "WARNING", "retrying", id="temporary"),
        pytest.param(
            DatabaseRefused("the database refused the change: a constraint"),
            False,
            "ERROR",
            "waiting for a new revision",
            id="permanent",
        ),
        pytest.param(KeyError("secret-looking-value"), False, "ERROR", "internal error", id="bug"),
    ],
)
def test_only_temporary_failures_are_retried_on_a_backoff(
    engine: Engine,
    git_repo: GitRepo,
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
    retried: bool,
    level: str,
    text: str,
) -> None:
    shutil.copytree(MANIFESTS, git_repo.root / "manifests")
    git_repo.commit("example")
    follower = FailingFollower(git_repo.root, path="manifests", failure=failure)
    daemon = Daemon(
        engine=engine,
        follower=follower,
        leader=leader_lock_for(engine, "default"),
        metrics=ReconcilerMetrics(CollectorRegistry()),
    )
    daemon.pacer.woke(0.0)

    with caplog.at_level(logging.INFO, logger="samops.daemon"):
        asyncio.run(daemon._pass())

    assert (daemon.pacer.backoff > 0) is retried
    assert (daemon.pacer.due() is not None) is retried
    record = next(r for r in caplog.records if "reconcile failed" in r.getMessage())
    assert record.levelname == level and text in record.getMessage()
    assert "secret-looking-value" not in str(status_document(engine, history=5))

    follower.failure = None  # the next trigger applies as usual
    daemon.pacer.woke(1.0)
    asyncio.run(daemon._pass())
    assert status_document(engine, history=5)["history"][0]["outcome"] == "applied"
