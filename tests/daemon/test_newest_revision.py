"""A pass applies the newest commit of the followed ref, not a stale one (issue 12, item 7: a
key removal committed while a slow revision was validated waited for that revision to apply)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from reconciler.daemon import Daemon
from reconciler.follow import LocalGitFollower
from reconciler.leader import leader_lock_for
from reconciler.metrics import ReconcilerMetrics
from reconciler.source import Known, RevisionFiles
from reconciler.store.status import status_document
from tests.conftest import MANIFESTS, GitRepo

KEY = "manifests/keys/stackademy-advisor-key.yaml"


@dataclass
class CommitWhileReading(LocalGitFollower):
    """The real follower of a local repository, with a commit landing just after its first
    read: the moment a revocation lands while a pass validates."""

    repo_driver: GitRepo | None = None
    landed: list[str] = field(default_factory=list)

    def read(self, known: Known | None = None) -> RevisionFiles:
        snapshot = super().read(known)
        if self.repo_driver is not None and not self.landed:
            (self.repo_driver.root / KEY).unlink()  # the key is revoked: its file removed
            self.landed.append(self.repo_driver.commit("revoke the advisor's key"))
        return snapshot


def test_a_commit_landing_during_a_pass_is_applied_instead_of_the_stale_one(
    engine: Engine, git_repo: GitRepo
) -> None:
    shutil.copytree(MANIFESTS, git_repo.root / "manifests")
    git_repo.commit("example")
    text = (git_repo.root / "manifests/clients/stackademy.yaml").read_text()
    (git_repo.root / "manifests/clients/stackademy.yaml").write_text(
        text.replace("  apiKey: stackademy_advisor_key\n", "")
    )
    stale = git_repo.commit("the client no longer needs the key")
    follower = CommitWhileReading(git_repo.root, path="manifests", repo_driver=git_repo)
    daemon = Daemon(
        engine=engine,
        follower=follower,
        leader=leader_lock_for(engine, "default"),
        metrics=ReconcilerMetrics(CollectorRegistry()),
    )

    result = daemon.reconcile_once()

    assert follower.landed
    assert result.outcome == "applied"
    assert result.revision == follower.landed[0] != stale
    status = status_document(engine, history=10)
    assert [s["revision"] for s in status["history"]] == [follower.landed[0]]
    assert status["resources"]["SmarterAuthToken"] == 0
