"""Sources: the manifest files of one revision, read from git objects or from a directory.

First stage of the pipeline. A ``GitSource`` reads the tree of a commit through git's object
database (never the working tree, so uncommitted edits cannot leak into production); a
``DirectorySource`` reads a plain folder, for local editing. Both return ``SourceFile``s
carrying the git blob SHA of their content, so later stages can cache by content, and a path
relative to the source's root (the repository, or the directory given), so the same files give
the same paths (and revision) whatever the working directory or the spelling of the folder.

Both refuse what a hostile repository could use to read outside itself: symlinks whose target
leaves the source root, and files over the size limit (checked before reading them).

GitPython's exceptions are translated here, at one choke point (``git_errors`` and the
``GitSource`` methods), into ``SourceError`` (``reconciler/errors.py``) with a sentence a user
can act on; the followers and the preview run their git commands through ``git_errors``.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from dataclasses import dataclass
from pathlib import Path

from gitdb.exc import BadName, BadObject

from reconciler.errors import SourceError
from reconciler.gitlib import git
from reconciler.progress import Progress
from reconciler.sam.diagnostics import Diagnostic, Severity
from reconciler.sam.load import LoadOptions
from reconciler.sam.revision import ParseCache, Revision, validate_files
from reconciler.sam.yamlread import ReadLimits
from reconciler.source_files import (
    MANIFEST_SUFFIXES,
    MANIFEST_SUFFIXES_BYTES,
    MAX_SYMLINK_HOPS,
    SYMLINK_MODE,
    SYMLINK_MODE_BYTES,
    FileChanges,
    GitCommandFailed,
    Known,
    Peek,
    RevisionFiles,
    SourceFile,
    UnreadFile,
    blob_sha,
    escaping_link,
    git_errors,
    is_manifest,
    is_utf8,
    read_blobs,
    require_git,
    too_large,
    tree_digest,
    undecodable_name,
)

__all__ = [
    "MANIFEST_SUFFIXES",
    "FileChanges",
    "GitCommandFailed",
    "Known",
    "Peek",
    "RevisionFiles",
    "SourceError",
    "SourceFile",
    "UnreadFile",
    "blob_sha",
    "git_errors",
    "is_manifest",
    "read_blobs",
    "tree_digest",
]


@dataclass(frozen=True, slots=True)
class DirectorySource:
    """Every ``.yaml``/``.yml`` file under ``root`` (dot-directories skipped), with paths
    relative to ``root``."""

    root: Path
    max_file_bytes: int = 1024 * 1024

    def read(self) -> RevisionFiles:
        root = self.root
        if not root.is_dir():
            raise SourceError(f"{root} is not a directory")
        real_root = root.resolve()
        snapshot = RevisionFiles(revision="")
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if is_manifest(name):
                    self._read_file(Path(dirpath) / name, real_root, snapshot)
            for name in dirnames:  # a symlinked directory is refused, not silently skipped
                if (Path(dirpath) / name).is_symlink():
                    self._check_link(Path(dirpath) / name, real_root, snapshot)
        digest = hashlib.sha256()
        for f in snapshot.files:
            digest.update(f"{f.path}\0{f.blob}\n".encode())
        for d in snapshot.diagnostics:  # a file refused unread is a change of the revision too
            digest.update(f"!{d.code}\0{d.file}\n".encode())
        snapshot.revision = "dir:" + digest.hexdigest()[:16]
        return snapshot

    def _check_link(self, path: Path, real_root: Path, snapshot: RevisionFiles) -> bool:
        target = path.resolve()
        if not target.is_relative_to(real_root):
            snapshot.diagnostics.append(escaping_link(self._shown(path), os.readlink(path)))
            return False
        return True

    def _shown(self, path: Path) -> str:
        """``path`` (found by walking ``root``) relative to ``root``, like a git path."""
        return path.relative_to(self.root).as_posix()

    def _read_file(self, path: Path, real_root: Path, snapshot: RevisionFiles) -> None:
        shown = self._shown(path)
        if not is_utf8(shown):
            snapshot.diagnostics.append(undecodable_name(shown))
            return
        if path.is_symlink() and not self._check_link(path, real_root, snapshot):
            return
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):
                return  # FIFOs, devices, dangling links: not manifests
            if info.st_size > self.max_file_bytes:
                snapshot.diagnostics.append(too_large(shown, info.st_size, self.max_file_bytes))
                return
            with path.open("rb") as handle:
                data = handle.read(self.max_file_bytes + 1)
        except OSError as exc:
            snapshot.diagnostics.append(
                Diagnostic(
                    Severity.ERROR,
                    "unreadable",
                    f"cannot read this file: {exc.strerror}",
                    file=shown,
                )
            )
            return
        if len(data) > self.max_file_bytes:  # grew between stat and read
            snapshot.diagnostics.append(too_large(shown, len(data), self.max_file_bytes))
            return
        snapshot.files.append(SourceFile(shown, blob_sha(data), data))


@dataclass(frozen=True, slots=True)
class FileSource:
    """One manifest file, checked alone (``samops validate FILE``): read as a directory source
    of its folder that holds only it (same limits; its path relative to that folder)."""

    path: Path
    max_file_bytes: int = 1024 * 1024

    def read(self) -> RevisionFiles:
        if not self.path.is_file():
            raise SourceError(f"{self.path} is not a file")
        folder = DirectorySource(self.path.parent, self.max_file_bytes)
        snapshot = RevisionFiles(revision="")
        folder._read_file(self.path, self.path.parent.resolve(), snapshot)
        blob = snapshot.files[0].blob if snapshot.files else "unread"
        snapshot.revision = "file:" + blob[:16]
        return snapshot


@dataclass(frozen=True, slots=True)
class GitSource:
    """Manifest files under ``path`` in the commit ``ref`` of the repository at ``repo``."""

    repo: Path
    ref: str = "HEAD"
    path: str = ""
    max_file_bytes: int = 1024 * 1024

    def open(self) -> git.Repo:
        require_git()
        try:
            return git.Repo(self.repo)
        except git.NoSuchPathError as exc:
            raise SourceError(f"{self.repo} does not exist") from exc
        except git.InvalidGitRepositoryError as exc:
            raise SourceError(
                f"{self.repo} is not a git repository (hint: give a directory as PATH to read "
                "files without git)"
            ) from exc

    def resolve(self, repository: git.Repo) -> git.Commit:
        try:
            return repository.commit(self.ref)
        except (BadName, BadObject, ValueError, git.GitCommandError) as exc:
            raise SourceError(
                f"the ref {self.ref!r} is not a commit in {self.repo} (hint: check "
                "'git branch -a' and 'git tag')"
            ) from exc

    def commit_sha(self) -> str | None:
        """The SHA of the commit ``ref`` names, None when it names none."""
        repository = self.open()
        try:
            return self.resolve(repository).hexsha
        except SourceError:
            return None
        finally:
            repository.close()

    def _tree(self, repository: git.Repo) -> tuple[git.Commit, git.Tree, str]:
        """The commit, the tree at ``path`` in it, and the path without slashes."""
        commit = self.resolve(repository)
        base = self.path.strip("/")
        try:
            tree = commit.tree / base if base else commit.tree
        except KeyError as exc:
            raise SourceError(
                f"the path {base!r} does not exist at {self.ref} ({commit.hexsha[:12]})"
            ) from exc
        if not isinstance(tree, git.Tree):
            raise SourceError(f"the path {base!r} at {self.ref} is a file, not a folder")
        return commit, tree, base

    def peek(self) -> Peek:
        """The revision and its digest, without reading a file (milliseconds at any size)."""
        repository = self.open()
        try:
            commit, tree, base = self._tree(repository)
            return Peek(commit.hexsha, tree_digest(base, tree.hexsha))
        finally:
            repository.close()

    def read(self, known: Known | None = None) -> RevisionFiles:
        """The manifest files under ``path`` at the commit. A file for which ``known(path,
        blob)`` is true is listed but not read (an ``UnreadFile``): the caller has its parse
        already, so a one-file commit reads one file whatever the size of the tree."""
        repository = self.open()
        try:
            commit, tree, base = self._tree(repository)
            snapshot = RevisionFiles(
                commit.hexsha, digest=tree_digest(base, tree.hexsha), tree=tree.hexsha
            )
            listing = repository.git.ls_tree(
                "-r", "-z", "--long", tree.hexsha, stdout_as_string=False
            )
            unread: list[tuple[str, str]] = []
            for entry in listing.split(b"\0"):
                if entry:
                    self._entry(repository, commit.tree, base, entry, snapshot, known, unread)
            contents = read_blobs(str(repository.git_dir), [blob for _, blob in unread])
            snapshot.files.extend(
                SourceFile(path, blob, data)
                for (path, blob), data in zip(unread, contents, strict=True)
            )
            snapshot.files.sort(key=lambda f: f.path)
            return snapshot
        except git.GitCommandError as exc:
            raise SourceError(f"cannot list the files of {self.ref}: {exc.stderr.strip()}") from exc
        finally:
            repository.close()

    def _entry(
        self,
        repository: git.Repo,
        top: git.Tree,
        base: str,
        entry: bytes,
        snapshot: RevisionFiles,
        known: Known | None,
        unread: list[tuple[str, str]],
    ) -> None:
        """One line of ``git ls-tree -r -z --long``: ``<mode> <type> <sha> <size>\\t<path>``
        (called once per file of the tree: kept lean). A file to read goes to ``unread``,
        read with the others at once."""
        header, _, raw_name = entry.partition(b"\t")
        if not raw_name.endswith(MANIFEST_SUFFIXES_BYTES):
            return
        mode, kind, sha, size = header.split()
        if kind != b"blob":
            return
        try:
            name = raw_name.decode()
        except UnicodeDecodeError:
            shown = raw_name.decode("utf-8", "surrogateescape")
            snapshot.diagnostics.append(undecodable_name(f"{base}/{shown}" if base else shown))
            return
        shown = f"{base}/{name}" if base else name
        blob_hex = sha.decode()
        if mode == SYMLINK_MODE_BYTES:
            snapshot.links = True
            link = git.Blob(repository, bytes.fromhex(blob_hex), SYMLINK_MODE, shown)
            self._read_blob(top, link, base, snapshot)
        elif int(size) > self.max_file_bytes:
            snapshot.diagnostics.append(too_large(shown, int(size), self.max_file_bytes))
        elif known is not None and known(shown, blob_hex):
            snapshot.files.append(UnreadFile(shown, blob_hex, self.repo))
        else:
            unread.append((shown, blob_hex))

    def changes(self, since_tree: str) -> FileChanges | None:
        """The manifest files that changed since the tree ``since_tree`` (``git diff-tree``:
        milliseconds, whatever the size of the tree). None when a diff cannot say (a symlink
        on either side, an entry that is not a file, ``since_tree`` no longer in the
        repository): then ``read`` the whole tree."""
        repository = self.open()
        try:
            commit, tree, base = self._tree(repository)
            found = FileChanges(
                commit.hexsha, tree_digest(base, tree.hexsha), tree.hexsha, self.repo
            )
            if tree.hexsha == since_tree:
                return found
            output = repository.git.diff_tree(
                "-r", "-z", "--no-renames", since_tree, tree.hexsha, stdout_as_string=False
            )
            parts = output.split(b"\0")
            for header, raw_name in zip(parts[0::2], parts[1::2], strict=False):
                if not self._changed_entry(repository, base, header, raw_name, found):
                    return None
            return found
        except git.GitCommandError:
            return None
        finally:
            repository.close()

    def _changed_entry(
        self, repository: git.Repo, base: str, header: bytes, raw_name: bytes, found: FileChanges
    ) -> bool:
        """One entry of ``git diff-tree -r -z``: ``:<old mode> <new mode> <old sha> <new sha>
        <status>`` then the path; False when the diff cannot say what the entry became."""
        fields = header.lstrip(b":").split()
        if len(fields) != 5:
            return False
        old_mode, new_mode, _old, new_sha, _status = fields
        files = (b"000000", b"100644", b"100755")
        if old_mode not in files or new_mode not in files:
            return False  # a symlink or a submodule: the whole tree is read instead
        if not raw_name.endswith(MANIFEST_SUFFIXES_BYTES):
            return True
        try:
            name = raw_name.decode()
        except UnicodeDecodeError:
            return False
        shown = f"{base}/{name}" if base else name
        if new_mode == b"000000":
            found.removed.append(shown)
            return True
        binsha = bytes.fromhex(new_sha.decode())
        size = repository.odb.info(binsha).size
        if size > self.max_file_bytes:
            found.diagnostics.append(too_large(shown, size, self.max_file_bytes))
            return True
        data = repository.odb.stream(binsha).read()
        found.changed.append(SourceFile(shown, new_sha.decode(), data))
        return True

    def _read_blob(self, top: git.Tree, blob: git.Blob, base: str, snapshot: RevisionFiles) -> None:
        """A symlink, followed inside the source (never out of it) to the file it names."""
        shown = str(blob.path)
        hops = 0
        while blob.mode == SYMLINK_MODE:
            target = blob.data_stream.read().decode("utf-8", "replace")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(blob.path), target))
            inside = resolved == base or not base or resolved.startswith(base + "/")
            hops += 1
            if (
                posixpath.isabs(target)
                or resolved.startswith("..")
                or not inside
                or hops > (MAX_SYMLINK_HOPS)
            ):
                snapshot.diagnostics.append(escaping_link(shown, target))
                return
            try:
                found = top / resolved
            except KeyError:
                return  # a dangling link inside the repository: nothing to read
            if not isinstance(found, git.Blob):
                return
            blob = found
        if blob.size > self.max_file_bytes:
            snapshot.diagnostics.append(too_large(shown, blob.size, self.max_file_bytes))
            return
        snapshot.files.append(SourceFile(shown, blob.hexsha, blob.data_stream.read()))


def validate_source(
    source: DirectorySource | GitSource | FileSource,
    *,
    options: LoadOptions | None = None,
    limits: ReadLimits | None = None,
    cache: ParseCache | None = None,
    progress: Progress | None = None,
) -> Revision:
    """Read a source's files at its revision and validate them (``SourceError`` if the source
    itself cannot be read). A single file is checked alone: its references to other
    resources are not (they live in other files)."""
    snapshot = source.read()
    return validate_files(
        snapshot.revision,
        snapshot.files,
        options=options,
        limits=limits,
        cache=cache,
        source_diagnostics=snapshot.diagnostics,
        check_references=not isinstance(source, FileSource),
        digest=snapshot.digest,
        progress=progress,
    )
