"""Reading a revision that is not the followed one: any ref of the followed repository.

Beside the pipeline, for previews (``samops chat --ref``, the preview route): the same
sources, the same validation (``validate_files``, parsed files cached by blob SHA) and, for a
remote, the same follower and clone as the daemon's. A local repository answers any ref; a
remote one fetches the branch, tag or SHA into a private ref of samops' clone, with a timeout,
reads it and deletes the ref; a directory has no revisions.

Every problem is a ``RefError`` whose ``code`` says what went wrong (the server maps codes to
HTTP statuses in ``serve/preview.py``): ``invalid_ref``, ``unknown_ref``,
``invalid_revision``, ``source_unavailable``, ``preview_fetch_failed``,
``preview_fetch_timeout``. Blocking: callers run it in a worker thread.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from reconciler.errors import PermanentError
from reconciler.follow import Follower, LocalGitFollower, RemoteGitFollower
from reconciler.sam.diagnostics import mask_url_credentials
from reconciler.sam.load import LoadOptions
from reconciler.sam.revision import ParseCache, Revision, validate_files
from reconciler.source import GitCommandFailed, GitSource, SourceError

FETCH_TIMEOUT_SECONDS = 30.0
MAX_REF_CHARS = 256
FULL_SHA = re.compile(r"[0-9a-f]{40}")
SHORT_SHA = re.compile(r"[0-9a-f]{4,39}")
REMOTE_REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]*")
PREVIEW_REF_PREFIX = "refs/samops/preview/"


class RefError(PermanentError):
    """A ref cannot be read; ``code`` names the reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class RefReader(Protocol):
    def read(self, ref: str) -> Revision:
        """The validated revision at ``ref`` (valid or not). Blocking."""
        ...


@dataclass
class Validator:
    """Validates revisions like the daemon does; parsed files are cached by blob SHA, so a
    preview costs what differs from the last one (the cache is not thread-safe: a lock)."""

    options: LoadOptions = field(default_factory=LoadOptions)
    cache: ParseCache = field(default_factory=lambda: ParseCache(max_entries=5_000))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def read(self, repo: Path, commit: str, path: str, ref: str) -> Revision:
        try:
            snapshot = GitSource(repo, ref=commit, path=path).read()
        except SourceError as exc:  # the path is missing at that commit
            raise RefError("invalid_revision", f"{ref}: {exc}") from exc
        with self._lock:
            return validate_files(
                snapshot.revision,
                snapshot.files,
                options=self.options,
                cache=self.cache,
                source_diagnostics=snapshot.diagnostics,
            )


def _check_ref(ref: str, pattern: re.Pattern[str] | None = None) -> None:
    """Refs come from HTTP callers: never an option for git, never a refspec."""
    shaped = pattern is None or (pattern.fullmatch(ref) and ".." not in ref)
    if (
        not ref
        or len(ref) > MAX_REF_CHARS
        or ref.startswith("-")
        or not ref.isprintable()
        or not shaped
    ):
        raise RefError("invalid_ref", f"{ref[:80]!r} is not a branch, tag or commit name")


def _unknown_ref(ref: str) -> RefError:
    return RefError(
        "unknown_ref",
        f"the ref {ref!r} is not a commit of the repository (hint: check the name with "
        "'git branch -a' and 'git tag'; a branch must be pushed where samops reads it)",
    )


@dataclass
class LocalRefReader:
    """Any ref of a local repository (the one ``samops run --repo`` follows)."""

    repo: Path
    path: str = ""
    validator: Validator = field(default_factory=Validator)

    def read(self, ref: str) -> Revision:
        _check_ref(ref)
        source = GitSource(self.repo, ref=ref, path=self.path)
        try:
            repository = source.open()
        except SourceError as exc:
            raise RefError("source_unavailable", str(exc)) from exc
        try:
            commit = source.resolve(repository).hexsha
        except SourceError as exc:
            raise _unknown_ref(ref) from exc
        finally:
            repository.close()
        return self.validator.read(self.repo, commit, self.path, ref)


@dataclass
class RemoteRefReader:
    """A branch, tag or full SHA of the remote that ``samops run --url`` follows, fetched into
    a private ref of samops' clone (deleted after reading); a short SHA that the clone already
    holds also works."""

    follower: RemoteGitFollower
    validator: Validator = field(default_factory=Validator)
    fetch_timeout_seconds: float = FETCH_TIMEOUT_SECONDS

    def read(self, ref: str) -> Revision:
        _check_ref(ref, REMOTE_REF)
        if not (self.follower.clone_dir / "HEAD").exists():  # before the daemon's first fetch
            try:
                self.follower.fetch()
            except SourceError as exc:
                raise RefError("preview_fetch_failed", str(exc)) from exc
        private = PREVIEW_REF_PREFIX + uuid.uuid4().hex
        try:
            commit = self._fetch(ref, private)
        finally:
            self.follower.drop_ref(private)
        return self.validator.read(self.follower.clone_dir, commit, self.follower.path, ref)

    def _fetch(self, ref: str, private: str) -> str:
        follower = self.follower
        if FULL_SHA.fullmatch(ref) and (known := follower.commit_of(ref)):
            return known
        if FULL_SHA.fullmatch(ref) or ref.startswith("refs/") or ref == "HEAD":
            wanted = [ref]
        else:
            wanted = [f"refs/heads/{ref}", f"refs/tags/{ref}"]
        for remote_ref in wanted:
            started = time.monotonic()
            try:
                found = follower.fetch_into(remote_ref, private, self.fetch_timeout_seconds)
            except GitCommandFailed as exc:
                raise self._fetch_failed(ref, exc.stderr, time.monotonic() - started) from exc
            if found is not None:
                return found
        if SHORT_SHA.fullmatch(ref) and (known := follower.commit_of(ref)):
            return known
        raise _unknown_ref(ref)

    def _fetch_failed(self, ref: str, stderr: str, seconds: float) -> RefError:
        url = mask_url_credentials(self.follower.url)
        if seconds >= self.fetch_timeout_seconds:
            return RefError(
                "preview_fetch_timeout",
                f"fetching {ref!r} from {url} took over {self.fetch_timeout_seconds:g} s",
            )
        lines = stderr.splitlines()
        reason = mask_url_credentials(lines[-1]) if lines else "git failed"
        return RefError(
            "preview_fetch_failed",
            f"cannot fetch {ref!r} from {url}: {reason} (hint: check the network and the "
            "credentials)",
        )


def ref_reader_for(follower: Follower | None, options: LoadOptions) -> RefReader | None:
    """What reads other refs of what ``follower`` follows (None: a directory, or nothing)."""
    validator = Validator(options)
    if isinstance(follower, LocalGitFollower):
        return LocalRefReader(follower.repo, follower.path, validator)
    if isinstance(follower, RemoteGitFollower):
        return RemoteRefReader(follower, validator)
    return None
