"""What sources give: files of a revision with their blob SHAs, what changed between two
trees, and the sentences for what a source refuses.

The vocabulary of ``reconciler/source.py`` (which reads git trees and folders), shared with the
followers, the daemon's memory of the applied revision (``incremental.py``) and validation.
GitPython's command errors become ``SourceError``s here (``git_errors``), at one choke point.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.errors import SourceError
from reconciler.gitlib import git
from reconciler.sam.diagnostics import Diagnostic, Severity, mask_url_credentials

MANIFEST_SUFFIXES = (".yaml", ".yml")
MANIFEST_SUFFIXES_BYTES = tuple(s.encode() for s in MANIFEST_SUFFIXES)
SYMLINK_MODE = 0o120000
SYMLINK_MODE_BYTES = b"%o" % SYMLINK_MODE
MAX_SYMLINK_HOPS = 8


class GitCommandFailed(SourceError):
    """A git command failed; ``stderr`` is its last line, credentials in URLs masked."""

    def __init__(self, message: str, stderr: str, status: int | str | None) -> None:
        super().__init__(message)
        self.stderr, self.status = stderr, status


NO_GIT = (
    "git is not installed or not on PATH (hint: install git; samops runs it to read repositories)"
)


@functools.cache  # a success is remembered; a failure is looked for again next time
def require_git() -> None:
    """Raise ``GitCommandFailed`` when there is no git executable to run (GitPython's reads of
    a repository run it too)."""
    if shutil.which(str(git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git")) is None:
        raise GitCommandFailed(NO_GIT, NO_GIT, None)


@contextmanager
def git_errors(doing: str) -> Iterator[None]:
    """Run git commands: GitPython's exceptions become a ``GitCommandFailed`` whose sentence
    starts with ``doing`` (``"cannot fetch main from https://host/repo"``)."""
    try:
        yield
    except git.GitCommandNotFound as exc:
        raise GitCommandFailed(f"{doing}: {NO_GIT}", NO_GIT, None) from exc
    except git.GitCommandError as exc:
        stderr = (exc.stderr or "").strip()
        lines = stderr.splitlines()
        reason = mask_url_credentials(lines[-1]) if lines else f"git exited {exc.status}"
        raise GitCommandFailed(f"{doing}: {reason}", stderr, str(exc.status)) from exc


BLOBS_TIMEOUT_SECONDS = 300.0
"""Longest wait for git to hand over the blobs of one revision (20,000 files: a second)."""


def read_blobs(git_dir: str, shas: list[str]) -> list[bytes]:
    """The contents of ``shas``, in order, from one ``git cat-file --batch``: one process
    and one pipe for the whole revision, where a read per blob costs a round trip each
    (about a tenth of a cold apply at 20,000 files, measured)."""
    if not shas:
        return []
    try:
        done = subprocess.run(
            ["git", "--git-dir", git_dir, "cat-file", "--batch"],
            input="".join(f"{sha}\n" for sha in shas).encode(),
            capture_output=True,
            timeout=BLOBS_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SourceError(
            f"git did not hand over the files within {BLOBS_TIMEOUT_SECONDS:g} s"
        ) from exc
    except FileNotFoundError as exc:
        raise GitCommandFailed(f"cannot read the files: {NO_GIT}", NO_GIT, None) from exc
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"]
        raise GitCommandFailed(f"cannot read the files: {reason[-1]}", reason[-1], done.returncode)
    out, at, found = done.stdout, 0, []
    for sha in shas:
        end = out.index(b"\n", at)
        header = out[at:end].split()
        if len(header) != 3 or header[1] != b"blob":  # "<sha> missing"
            raise SourceError(f"git has no blob {sha} (hint: a damaged or shallow clone)")
        size = int(header[2])
        found.append(out[end + 1 : end + 1 + size])
        at = end + 1 + size + 1
    return found


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One manifest file of a revision. ``path`` is relative to the source's root, in POSIX
    form: what messages show and what the database records as a resource's ``file``."""

    path: str
    blob: str
    data: bytes


@dataclass(frozen=True, slots=True)
class UnreadFile:
    """A file of a git revision listed but not read, because the reader already has its parse
    (``GitSource.read``'s ``known``). ``data`` reads it from git after all, should the reader
    need it (its parse cache dropped the entry meanwhile)."""

    path: str
    blob: str
    repo: Path

    @property
    def data(self) -> bytes:
        repository = git.Repo(self.repo)
        try:
            with git_errors(f"reading {self.path}"):
                return bytes(repository.odb.stream(bytes.fromhex(self.blob)).read())
        finally:
            repository.close()


Known = Callable[[str, str], bool]
"""``known(path, blob)``: whether a reader already has this file's parse (``GitSource.read``)."""


@dataclass(slots=True)
class RevisionFiles:
    """The files of one revision, plus problems found while listing them."""

    revision: str
    files: list[SourceFile | UnreadFile] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    digest: str | None = None
    """What the files were read from, when it is known before reading them (git: the tree
    at the path, and the path): two revisions with one digest have the same files."""
    tree: str | None = None
    """The git tree at the path (None for a folder): what ``GitSource.changes`` diffs from."""
    links: bool = False
    """Whether a manifest is a symlink: a change to its target changes it, unseen by a diff."""


@dataclass(slots=True)
class FileChanges:
    """The manifest files that differ between an earlier tree and a revision of a git source
    (``GitSource.changes``): the added and modified ones, read, and the removed paths."""

    revision: str
    digest: str
    tree: str
    repo: Path
    """The repository, to read a file that did not change should it be needed."""
    changed: list[SourceFile] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Peek:
    """A revision and its digest (see ``RevisionFiles.digest``), found without reading files."""

    revision: str
    digest: str


def tree_digest(path: str, tree_sha: str) -> str:
    """The digest of the files under ``path`` in a git tree (the path counts: the database
    records each resource's file path)."""
    return "git:" + hashlib.sha256(f"{path}\0{tree_sha}".encode()).hexdigest()[:32]


def blob_sha(data: bytes) -> str:
    """The SHA git gives this content as a blob, so directory and git sources agree."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def is_manifest(name: str) -> bool:
    return name.endswith(MANIFEST_SUFFIXES)


def too_large(path: str, size: int, limit: int) -> Diagnostic:
    return Diagnostic(
        Severity.ERROR,
        "file-too-large",
        f"the file is {size:,} bytes, over the limit of {limit:,} bytes",
        file=path,
        hint="split it into several files",
    )


def escaping_link(path: str, target: str) -> Diagnostic:
    return Diagnostic(
        Severity.ERROR,
        "symlink-escape",
        f"this symlink points outside the manifest source (to {target!r})",
        file=path,
        hint="manifests must live inside the repository path; copy "
        "the file instead of linking to it",
    )


def is_utf8(name: str) -> bool:
    """False for a name the file system gave as bytes that are not UTF-8 (Python keeps them as
    lone surrogates, which nothing downstream can encode: digests, the database, logs)."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def undecodable_name(name: str) -> Diagnostic:
    shown = os.fsencode(name).decode("utf-8", "backslashreplace")
    return Diagnostic(
        Severity.ERROR,
        "file-name-not-utf8",
        "this file name is not valid UTF-8, so it cannot be recorded or reported as it is",
        file=shown,
        hint="rename the file (git stores names as UTF-8; so must a manifest folder)",
    )
