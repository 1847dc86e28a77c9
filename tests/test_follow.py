"""Which file-system events wake the daemon, and how remotes are named in logs."""

from __future__ import annotations

from pathlib import Path

from reconciler.follow import DirectoryFollower, LocalGitFollower, RemoteGitFollower
from tests.conftest import GitRepo


def test_only_ref_changes_of_the_repository_are_relevant(git_repo: GitRepo) -> None:
    git_repo.write("a.yaml", "x: 1\n")
    git_repo.commit()
    follower = LocalGitFollower(git_repo.root)
    git_dir = (git_repo.root / ".git").resolve()
    relevant = {
        "HEAD": True,
        "packed-refs": True,
        "refs/heads/main": True,
        "refs/tags/v1": True,
        "refs/heads/main.lock": False,
        "objects/ab/cdef": False,
        "index": False,
        "logs/HEAD": False,
        "COMMIT_EDITMSG": False,
    }
    assert {p: follower.relevant(str(git_dir / p)) for p in relevant} == relevant
    assert not follower.relevant(str(git_repo.root / "a.yaml"))  # the working tree


def test_directory_follower_cares_about_manifests(tmp_path: Path) -> None:
    follower = DirectoryFollower(tmp_path)
    assert follower.relevant(str(tmp_path / "x.yaml"))
    assert follower.relevant(str(tmp_path / "x.yml"))
    assert not follower.relevant(str(tmp_path / "notes.txt"))


def test_remote_credentials_never_reach_the_log(tmp_path: Path) -> None:
    follower = RemoteGitFollower(
        "https://bot:ghp_secret@git.example/team/bots.git", "main", tmp_path
    )
    assert "ghp_secret" not in follower.describe()
    assert follower.describe() == "https://***@git.example/team/bots.git branch main"
