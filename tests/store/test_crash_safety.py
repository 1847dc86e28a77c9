"""Invariant 3: a crash at any point of an apply leaves the database at the old or the new
revision, never in between, and the next apply converges. The apply runs in a child process
that SIGKILLs itself before a chosen SQL statement, at commit, or after commit."""

from __future__ import annotations

import shutil
import subprocess
import sys

from sqlalchemy import Engine

from reconciler.apply import apply_revision
from reconciler.desired import desired_state
from reconciler.sam.revision import Revision
from reconciler.source import GitSource, validate_source
from reconciler.store.read import read_actual, read_state
from tests.conftest import MANIFESTS, PROJECT_ROOT, GitRepo
from tests.test_apply import edit_rename_remove

SAMPLED_STATEMENTS = 14


def revision_at(repo: GitRepo, ref: str) -> Revision:
    return validate_source(GitSource(repo.root, ref=ref, path="manifests"))


def run_child(
    database_url: str, repo: GitRepo, ref: str, point: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.store.crash_child", database_url, str(repo.root), ref, point],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def which_revision(engine: Engine, old: Revision, new: Revision) -> str:
    """'old' or 'new' when rows and state agree on one revision; fails the test otherwise."""
    with engine.connect() as connection:
        rows = {k: (s.file, s.fields) for k, s in read_actual(connection).items()}
        state = read_state(connection)
    for label, revision, generation in (("old", old, 1), ("new", new, 2)):
        expected = {k: (s.file, s.fields) for k, s in desired_state(revision.resources).items()}
        if rows == expected:
            assert state.last_applied_revision == revision.revision, label
            assert state.generation == generation, label
            return label
    raise AssertionError("the database is at neither revision")


def test_sigkill_anywhere_leaves_old_or_new_state(
    engine: Engine, database_url: str, git_repo: GitRepo
) -> None:
    shutil.copytree(MANIFESTS, git_repo.root / "manifests")
    old_sha = git_repo.commit("example")
    edit_rename_remove(git_repo)
    new_sha = git_repo.git("rev-parse", "HEAD")
    old, new = revision_at(git_repo, old_sha), revision_at(git_repo, new_sha)
    apply_revision(engine, old)
    survived = run_child(database_url, git_repo, new_sha, "none")
    assert survived.returncode == 0, survived.stderr
    total = int(survived.stdout.strip())
    assert total > 10

    step = max(1, total // SAMPLED_STATEMENTS)
    points = [f"statement:{n}" for n in range(1, total + 1, step)]
    points += [f"statement:{total}", "commit", "published"]
    outcomes = {}
    for point in points:
        engine.dispose()
        reset = apply_revision(engine, old)
        assert reset.ok
        _reset_generation(engine)
        child = run_child(database_url, git_repo, new_sha, point)
        assert child.returncode == -9, (point, child.stderr)
        outcomes[point] = which_revision(engine, old, new)
        assert apply_revision(engine, new).ok  # restart converges
        assert which_revision(engine, old, new) == "new"

    assert outcomes[points[0]] == "old"
    assert outcomes["commit"] == "old"
    assert outcomes["published"] == "new"


def _reset_generation(engine: Engine) -> None:
    """Keep generations comparable across iterations: old is always generation 1."""
    from sqlalchemy import update

    from reconciler.store import schema

    with engine.begin() as connection:
        connection.execute(update(schema.state).values(generation=1))
