"""Helpers for the review tests: the example manifests as text, edited per case."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from reconciler.sam.load import LoadOptions
from reconciler.sam.revision import Revision, validate_files
from reconciler.source import SourceFile, blob_sha
from tests.conftest import MANIFESTS

Files = dict[str, str]


def example_files() -> Files:
    return {
        p.relative_to(MANIFESTS).as_posix(): p.read_text()
        for p in sorted(MANIFESTS.rglob("*.y*ml"))
    }


def revision_of(files: Files, *, allow_plaintext_secrets: bool = False) -> Revision:
    sources = [SourceFile(path, blob_sha(t.encode()), t.encode()) for path, t in files.items()]
    return validate_files(
        "rev:" + blob_sha("".join(sorted(files.values())).encode())[:12],
        sources,
        options=LoadOptions(allow_plaintext_secrets=allow_plaintext_secrets),
    )


def edit(files: Files, path: str, old: str, new: str) -> Files:
    """A copy of ``files`` where ``old`` (which must be there) becomes ``new`` in ``path``."""
    assert old in files[path], (path, old)
    return {**files, path: files[path].replace(old, new)}


@pytest.fixture
def example() -> Files:
    return example_files()


Edit = Callable[[Files], Files]
