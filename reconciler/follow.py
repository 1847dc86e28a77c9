"""What the daemon follows: a local repository, a remote one, or a directory.

Source stage of the daemon. A follower knows how to read the current revision (``read``), or
just name it and the digest of its files without reading them (``peek``; git only),
whether a file-system event concerns it (``relevant``), and, for a remote repository, how to
fetch. It never decides when: the daemon does, level-based, by calling ``read`` again.

- ``LocalGitFollower`` watches the repository's refs (``HEAD``, ``refs/``, ``packed-refs``)
  with watchdog, so a commit, merge, reset or checkout that moves the followed ref wakes the
  daemon at once; it reads git objects, never the working tree.
- ``RemoteGitFollower`` keeps its own bare clone in the data directory and fetches the followed
  branch with a forced refspec, so force-pushes and rewritten history simply move the ref.
- ``DirectoryFollower`` watches a folder of manifests (local editing).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from reconciler.gitlib import git
from reconciler.sam.diagnostics import mask_url_credentials
from reconciler.source import (
    DirectorySource,
    FileChanges,
    GitCommandFailed,
    GitSource,
    Known,
    Peek,
    RevisionFiles,
    SourceError,
    git_errors,
    is_manifest,
)

FETCH_TIMEOUT_SECONDS = 120


class Follower(Protocol):
    remote: bool

    def describe(self) -> str: ...
    def peek(self) -> Peek | None: ...
    def read(self, known: Known | None = None) -> RevisionFiles:
        """The files at the followed revision; those ``known`` says the caller has parsed may
        be left unread (``GitSource.read``)."""

    def changes(self, since_tree: str) -> FileChanges | None:
        """The files that changed at the followed revision since a git tree
        (``GitSource.changes``); None when it cannot say (then ``read``)."""

    def watch_roots(self) -> list[Path]: ...
    def relevant(self, path: str) -> bool: ...
    def fetch(self) -> None: ...


@dataclass
class LocalGitFollower:
    repo: Path
    ref: str = "HEAD"
    path: str = ""
    remote: bool = False
    _dirs: tuple[Path, Path] | None = field(default=None, repr=False)

    def describe(self) -> str:
        return f"git repository {self.repo} at {self.ref}" + (
            f", {self.path}/" if self.path else ""
        )

    def git_dirs(self) -> tuple[Path, Path]:
        """(git dir, common dir): they differ in a linked worktree."""
        if self._dirs is None:
            source = GitSource(self.repo, ref=self.ref, path=self.path)
            repository = source.open()
            try:
                self._dirs = (
                    Path(repository.git_dir).resolve(),
                    Path(repository.common_dir).resolve(),
                )
            finally:
                repository.close()
        return self._dirs

    def peek(self) -> Peek:
        return GitSource(self.repo, ref=self.ref, path=self.path).peek()

    def read(self, known: Known | None = None) -> RevisionFiles:
        return GitSource(self.repo, ref=self.ref, path=self.path).read(known)

    def changes(self, since_tree: str) -> FileChanges | None:
        return GitSource(self.repo, ref=self.ref, path=self.path).changes(since_tree)

    def watch_roots(self) -> list[Path]:
        git_dir, common = self.git_dirs()
        return [git_dir] if git_dir == common else [git_dir, common]

    def relevant(self, path: str) -> bool:
        resolved = Path(path)
        for root in self.watch_roots():
            if resolved.is_relative_to(root):
                inner = resolved.relative_to(root).as_posix()
                if inner in ("HEAD", "packed-refs") or inner.startswith("refs/"):
                    return not inner.endswith(".lock")
        return False

    def fetch(self) -> None:
        """Nothing to fetch: the working repository is the source."""


@dataclass
class RemoteGitFollower:
    url: str
    branch: str
    clone_dir: Path
    path: str = ""
    remote: bool = True

    def describe(self) -> str:
        return f"{mask_url_credentials(self.url)} branch {self.branch}" + (
            f", {self.path}/" if self.path else ""
        )

    def _ensure_clone(self) -> git.Repo:
        if (self.clone_dir / "HEAD").exists():
            return git.Repo(self.clone_dir)
        self.clone_dir.mkdir(parents=True, exist_ok=True)
        repository = git.Repo.init(self.clone_dir, bare=True)
        repository.create_remote("origin", self.url)
        return repository

    def fetch(self) -> None:
        """Fetch the followed branch; a forced refspec makes force-pushes just move the ref."""
        repository = self._ensure_clone()
        doing = f"cannot fetch {self.branch} from {mask_url_credentials(self.url)}"
        try:
            with git_errors(doing):
                repository.git.fetch(
                    "--prune",
                    "--no-tags",
                    "origin",
                    f"+refs/heads/{self.branch}:refs/heads/{self.branch}",
                    kill_after_timeout=FETCH_TIMEOUT_SECONDS,
                )
        except GitCommandFailed as exc:
            raise SourceError(
                f"{exc} (hint: check the URL, the network and the credentials)"
            ) from exc
        finally:
            repository.close()

    def fetch_into(self, remote_ref: str, private: str, timeout_seconds: float) -> str | None:
        """Fetch ``remote_ref`` into the clone's ``private`` ref (for a preview); its commit,
        or None when the remote has no such ref. Other failures: ``GitCommandFailed``."""
        repository = git.Repo(self.clone_dir)
        try:
            with git_errors(f"cannot fetch {remote_ref} from {mask_url_credentials(self.url)}"):
                repository.git.fetch(
                    "--no-tags",
                    "--no-write-fetch-head",
                    "origin",
                    f"+{remote_ref}:{private}",
                    kill_after_timeout=timeout_seconds,
                )
        except GitCommandFailed as exc:
            if "couldn't find remote ref" in exc.stderr or "not our ref" in exc.stderr:
                return None
            raise
        finally:
            repository.close()
        return self.commit_of(private)

    def drop_ref(self, private: str) -> None:
        """Delete a private ref of the clone, if it is there."""
        repository = git.Repo(self.clone_dir)
        try:
            with contextlib.suppress(SourceError), git_errors("cannot delete a preview ref"):
                repository.git.update_ref("-d", private)
        finally:
            repository.close()

    def commit_of(self, name: str) -> str | None:
        """The SHA of the commit ``name`` names in the clone, None if it names none."""
        return GitSource(self.clone_dir, ref=name).commit_sha()

    def _source(self) -> GitSource:
        if not (self.clone_dir / "HEAD").exists():
            self.fetch()
        return GitSource(self.clone_dir, ref=f"refs/heads/{self.branch}", path=self.path)

    def peek(self) -> Peek:
        return self._source().peek()

    def read(self, known: Known | None = None) -> RevisionFiles:
        return self._source().read(known)

    def changes(self, since_tree: str) -> FileChanges | None:
        return self._source().changes(since_tree)

    def watch_roots(self) -> list[Path]:
        return []

    def relevant(self, path: str) -> bool:
        return False


@dataclass
class DirectoryFollower:
    root: Path
    remote: bool = False

    def describe(self) -> str:
        return f"directory {self.root}"

    def peek(self) -> Peek | None:
        """A folder has no digest cheaper than reading it (its revision is one)."""
        return None

    def read(self, known: Known | None = None) -> RevisionFiles:
        """Every file is read: a folder's blob SHAs come from hashing its files."""
        return DirectorySource(self.root).read()

    def changes(self, since_tree: str) -> FileChanges | None:
        """A folder has no trees to diff."""
        return None

    def watch_roots(self) -> list[Path]:
        return [self.root.resolve()]

    def relevant(self, path: str) -> bool:
        return is_manifest(path) or Path(path).is_dir()

    def fetch(self) -> None:
        """A directory is always current."""


def clone_dir_for(data_dir: Path, url: str, branch: str) -> Path:
    digest = hashlib.sha256(f"{url}\0{branch}".encode()).hexdigest()[:16]
    return data_dir / "repos" / digest


class _Handler(FileSystemEventHandler):
    def __init__(self, follower: Follower, trigger: Callable[[str], None]) -> None:
        self.follower = follower
        self.trigger = trigger

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        for path in (event.src_path, getattr(event, "dest_path", "")):
            text = os.fsdecode(path) if path else ""
            if text and self.follower.relevant(text):
                self.trigger(f"{event.event_type} {text}")
                return


class Watch:
    """A running watchdog observer on a follower's roots (none for remote followers)."""

    def __init__(self, follower: Follower, trigger: Callable[[str], None]) -> None:
        self._observer: threading.Thread | None = None
        roots = follower.watch_roots()
        if roots:
            observer = Observer()
            handler = _Handler(follower, trigger)
            for root in roots:
                observer.schedule(handler, str(root), recursive=True)
            observer.daemon = True
            observer.start()
            self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()  # type: ignore[attr-defined]
            self._observer.join(timeout=5)
