"""A new revision whose manifests are those of the applied revision (same git tree at the same
path: a commit elsewhere in a monorepo) is recorded as applied without reading its files, on
SQLite and PostgreSQL; any other revision is read and applied as usual."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import Engine, select

from reconciler.apply import apply_if_files_unchanged, apply_revision
from reconciler.follow import DirectoryFollower
from reconciler.source import DirectorySource, GitSource, validate_source
from reconciler.store import schema
from reconciler.store.db import reading
from reconciler.store.read import read_state
from tests.conftest import MANIFESTS, GitRepo


@pytest.fixture
def applied(engine: Engine, git_repo: GitRepo) -> GitRepo:
    """The example manifests committed under manifests/ and applied, with their digest."""
    shutil.copytree(MANIFESTS, git_repo.root / "manifests")
    git_repo.commit("example manifests")
    apply_at_head(engine, git_repo)
    return git_repo


def apply_at_head(engine: Engine, repo: GitRepo, path: str = "manifests") -> str:
    result = apply_revision(engine, validate_source(GitSource(repo.root, path=path)))
    assert result.ok, result.errors
    return result.outcome


def state(engine: Engine) -> tuple[str | None, int, str | None]:
    with reading(engine) as connection:
        row = read_state(connection)
        outcomes = connection.execute(select(schema.syncs.c.outcome)).scalars().all()
    return row.last_applied_revision, row.generation, outcomes[-1] if outcomes else None


def test_a_commit_outside_the_manifests_is_recorded_without_reading_them(
    engine: Engine, applied: GitRepo
) -> None:
    _, generation, _ = state(engine)
    applied.write("README.md", "docs only\n")
    head = applied.commit("docs")

    result = apply_if_files_unchanged(engine, GitSource(applied.root, path="manifests").peek())

    assert result is not None
    assert (result.outcome, result.revision, result.generation) == ("unchanged", head, generation)
    assert "nothing was read" in result.message
    assert state(engine) == (head, generation, "unchanged")
    again = apply_if_files_unchanged(engine, GitSource(applied.root, path="manifests").peek())
    assert again is not None and again.outcome == "up-to-date"


def test_a_changed_manifest_is_read_and_applied(engine: Engine, applied: GitRepo) -> None:
    support = applied.root / "manifests/clients/support.yaml"
    support.write_text(support.read_text().replace("friendly", "patient"))
    applied.commit("prompt")

    assert (
        apply_if_files_unchanged(engine, GitSource(applied.root, path="manifests").peek()) is None
    )
    assert apply_at_head(engine, applied) == "applied"


def test_the_same_files_under_another_path_are_read_again(engine: Engine, applied: GitRepo) -> None:
    shutil.copytree(applied.root / "manifests", applied.root / "deploy")
    applied.commit("a copy")

    peek = GitSource(applied.root, path="deploy").peek()

    assert peek.digest != GitSource(applied.root, path="manifests").peek().digest
    assert apply_if_files_unchanged(engine, peek) is None  # the recorded file paths differ


def test_returning_to_the_applied_files_after_an_invalid_commit_is_unchanged(
    engine: Engine, applied: GitRepo
) -> None:
    support = applied.root / "manifests/clients/support.yaml"
    good = support.read_text()
    support.write_text(good + "  unknownField: 1\n")
    bad = applied.commit("broken")
    invalid = apply_revision(engine, validate_source(GitSource(applied.root, path="manifests")))
    assert (invalid.outcome, invalid.revision) == ("invalid", bad)
    support.write_text(good)
    fixed = applied.commit("revert")

    result = apply_if_files_unchanged(engine, GitSource(applied.root, path="manifests").peek())

    assert result is not None and (result.outcome, result.revision) == ("unchanged", fixed)


def test_an_apply_from_a_folder_forgets_the_digest(engine: Engine, applied: GitRepo) -> None:
    support = applied.root / "manifests/clients/support.yaml"
    support.write_text(support.read_text().replace("friendly", "patient"))
    folder = apply_revision(engine, validate_source(DirectorySource(applied.root / "manifests")))
    assert folder.outcome == "applied"
    applied.write("README.md", "docs\n")
    applied.commit("the prompt, and docs")

    assert (
        apply_if_files_unchanged(engine, GitSource(applied.root, path="manifests").peek()) is None
    )


def test_a_folder_has_no_digest_to_compare() -> None:
    assert DirectoryFollower(MANIFESTS).peek() is None
