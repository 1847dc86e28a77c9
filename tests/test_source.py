"""Sources read exactly one revision: git objects at a commit, or a directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.source import (
    DirectorySource,
    GitSource,
    SourceError,
    blob_sha,
    read_blobs,
    validate_source,
)
from tests.conftest import GitRepo

SECRET = """\
apiVersion: smarter.sh/v1
kind: Secret
metadata:
  name: {name}
spec:
  config:
    valueFrom:
      env: {env}
"""


def test_git_source_reads_the_commit_not_the_working_tree(git_repo: GitRepo) -> None:
    git_repo.write("manifests/s.yaml", SECRET.format(name="committed", env="A"))
    first = git_repo.commit("first")
    git_repo.write("manifests/s.yaml", "this: [is not even valid YAML\n")
    git_repo.write("manifests/new.yaml", SECRET.format(name="untracked", env="B"))

    snapshot = GitSource(git_repo.root, ref="HEAD", path="manifests").read()

    assert snapshot.revision == first
    assert [f.path for f in snapshot.files] == ["manifests/s.yaml"]
    assert b"committed" in snapshot.files[0].data
    revision = validate_source(GitSource(git_repo.root, path="manifests"))
    assert revision.valid
    assert [r.name for r in revision.resources] == ["committed"]


def test_git_source_reads_older_revisions_and_branches(git_repo: GitRepo) -> None:
    git_repo.write("s.yaml", SECRET.format(name="one", env="A"))
    first = git_repo.commit("one")
    git_repo.git("checkout", "--quiet", "-b", "feature")
    git_repo.write("s.yaml", SECRET.format(name="two", env="A"))
    git_repo.commit("two")
    git_repo.git("checkout", "--quiet", "main")

    names = {
        ref: validate_source(GitSource(git_repo.root, ref=ref)).resources[0].name
        for ref in (first, "main", "feature")
    }

    assert names == {first: "one", "main": "one", "feature": "two"}


def test_blob_sha_matches_git(git_repo: GitRepo) -> None:
    content = SECRET.format(name="x", env="Y")
    git_repo.write("x.yaml", content)
    git_repo.commit()
    assert blob_sha(content.encode()) == git_repo.git("rev-parse", "HEAD:x.yaml")
    assert GitSource(git_repo.root).read().files[0].blob == blob_sha(content.encode())


def test_git_symlink_leaving_the_path_is_refused(git_repo: GitRepo) -> None:
    git_repo.write("private/creds.yaml", "password: hunter2\n")
    git_repo.write("manifests/ok.yaml", SECRET.format(name="ok", env="A"))
    os.symlink("../private/creds.yaml", git_repo.root / "manifests" / "link.yaml")
    os.symlink("/etc/hostname", git_repo.root / "manifests" / "abs.yaml")
    os.symlink("ok.yaml", git_repo.root / "manifests" / "inside.yaml")
    git_repo.commit()

    snapshot = GitSource(git_repo.root, path="manifests").read()

    assert sorted(d.file for d in snapshot.diagnostics) == [
        "manifests/abs.yaml",
        "manifests/link.yaml",
    ]
    assert all(d.code == "symlink-escape" for d in snapshot.diagnostics)
    assert sorted(f.path for f in snapshot.files) == ["manifests/inside.yaml", "manifests/ok.yaml"]
    assert all(b"hunter2" not in f.data for f in snapshot.files)


def test_git_file_over_the_limit_is_refused_before_reading(git_repo: GitRepo) -> None:
    git_repo.write("big.yaml", "x: " + "a" * 2000 + "\n")
    git_repo.commit()
    snapshot = GitSource(git_repo.root, max_file_bytes=1000).read()
    assert snapshot.files == []
    assert [d.code for d in snapshot.diagnostics] == ["file-too-large"]


@pytest.mark.parametrize(
    ("ref", "path", "message"),
    [
        pytest.param("no-such-branch", "", "the ref 'no-such-branch' is not a commit", id="ref"),
        pytest.param("HEAD", "missing", "the path 'missing' does not exist", id="path"),
        pytest.param("HEAD", "a.yaml", "is a file, not a folder", id="file-as-path"),
    ],
)
def test_git_source_problems_are_sentences(
    git_repo: GitRepo, ref: str, path: str, message: str
) -> None:
    git_repo.write("a.yaml", SECRET.format(name="a", env="A"))
    git_repo.commit()
    with pytest.raises(SourceError, match=message):
        GitSource(git_repo.root, ref=ref, path=path).read()


def test_not_a_repository_is_a_sentence(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is not a git repository"):
        GitSource(tmp_path).read()
    with pytest.raises(SourceError, match="does not exist"):
        GitSource(tmp_path / "nope").read()


def test_directory_source_skips_dot_folders_and_other_files(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.yaml").write_text("ignored: true\n")
    (tmp_path / "notes.txt").write_text("not a manifest")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "s.yml").write_text(SECRET.format(name="s", env="A"))
    snapshot = DirectorySource(tmp_path).read()
    assert [f.path for f in snapshot.files] == ["b/s.yml"]
    assert snapshot.revision.startswith("dir:")


def test_directory_paths_do_not_depend_on_how_the_folder_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "manifests" / "keys").mkdir(parents=True)
    (tmp_path / "manifests" / "keys" / "s.yaml").write_text(SECRET.format(name="s", env="A"))
    os.symlink("/etc/hostname", tmp_path / "manifests" / "keys" / "out.yaml")
    absolute = DirectorySource(tmp_path / "manifests").read()
    monkeypatch.chdir(tmp_path)
    relative = DirectorySource(Path("manifests")).read()
    monkeypatch.chdir(tmp_path / "manifests")
    here = DirectorySource(Path(".")).read()

    assert absolute == relative == here
    assert [f.path for f in absolute.files] == ["keys/s.yaml"]
    assert [d.file for d in absolute.diagnostics] == ["keys/out.yaml"]


def test_git_source_lists_what_changed_since_a_tree(git_repo: GitRepo) -> None:
    """Issue 15: a pass reads the files that changed since the applied tree (``git
    diff-tree``), not the whole tree; where a diff cannot say, it says so (None)."""
    git_repo.write("m/a.yaml", SECRET.format(name="a", env="A"))
    git_repo.write("m/b.yaml", SECRET.format(name="b", env="B"))
    git_repo.write("m/notes.txt", "not a manifest\n")
    first = git_repo.commit("two plugins")
    source = GitSource(git_repo.root, path="m")
    applied = source.read()
    assert applied.tree is not None and not applied.links

    git_repo.write("m/a.yaml", SECRET.format(name="a2", env="A"))
    git_repo.write("m/c.yml", SECRET.format(name="c", env="C"))
    (git_repo.root / "m/b.yaml").unlink()
    git_repo.write("m/notes.txt", "still not a manifest\n")
    git_repo.write("elsewhere.yaml", SECRET.format(name="outside", env="O"))
    second = git_repo.commit("edit, add, remove")
    found = source.changes(applied.tree)
    assert found is not None and found.revision == second
    assert sorted((f.path, f.blob) for f in found.changed) == sorted(
        (f.path, f.blob) for f in source.read().files if f.path != "m/b.yaml"
    )
    assert found.removed == ["m/b.yaml"]
    assert found.tree == source.read().tree and found.digest == source.peek().digest

    again = source.changes(found.tree)
    assert again is not None and not again.changed and not again.removed
    assert source.changes("0" * 40) is None  # an unknown tree: read the whole tree instead
    assert GitSource(git_repo.root, ref=first, path="m").changes(found.tree) is not None

    os.symlink("a.yaml", git_repo.root / "m/link.yaml")
    git_repo.commit("a symlink")
    assert source.changes(found.tree) is None  # its target may change unseen: read the tree
    assert source.read().links


def test_git_source_changes_refuse_a_file_over_the_limit(git_repo: GitRepo) -> None:
    git_repo.write("m/a.yaml", SECRET.format(name="a", env="A"))
    git_repo.commit("one")
    source = GitSource(git_repo.root, path="m", max_file_bytes=2_000)
    tree = source.read().tree
    assert tree is not None
    git_repo.write("m/big.yaml", "# " + "x" * 3_000 + "\n")
    git_repo.commit("big")
    found = source.changes(tree)
    assert found is not None and not found.changed
    assert [d.code for d in found.diagnostics] == ["file-too-large"]


def test_the_files_of_a_revision_come_from_one_git_read_in_order(git_repo: GitRepo) -> None:
    texts = {f"m/{n:03}.yaml": f"n: {n}\n" + "x" * n for n in range(120)}
    texts["m/empty.yaml"] = ""
    for path, text in texts.items():
        git_repo.write(path, text)
    git_repo.commit("many files")

    snapshot = GitSource(git_repo.root, path="m").read()

    assert {f.path: f.data.decode() for f in snapshot.files} == texts
    assert all(f.blob == blob_sha(f.data) for f in snapshot.files)


def test_a_blob_git_does_not_have_is_a_sentence(git_repo: GitRepo) -> None:
    git_repo.write("a.yaml", "a: 1\n")
    git_repo.commit("one")
    present = blob_sha(b"a: 1\n")

    with pytest.raises(SourceError, match=r"git has no blob 0{40} \(hint: a damaged"):
        read_blobs(str(git_repo.root / ".git"), [present, "0" * 40])
