"""Load and Validate for a whole revision: files in, resources and every diagnostic out.

``validate_files`` is what every reader of a revision calls (``reconciler.source.validate_source``
for a source, the daemon, previews). Per-file work
(YAML reading and model validation) is cached by (path, blob SHA, options), so re-validating a
revision costs in proportion to the files that changed; the cross-resource checks always run
over the whole revision because a change in one file can break a reference in another.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from reconciler.progress import Progress
from reconciler.sam.diagnostics import (
    MAX_PER_FILE,
    MAX_PER_REVISION,
    Diagnostic,
    Severity,
    capped,
    sort_diagnostics,
)
from reconciler.sam.load import LoadOptions, Resource, load_document
from reconciler.sam.references import check_revision
from reconciler.sam.yamlread import ReadLimits, read_yaml_file


class ManifestFile(Protocol):
    """One file of a revision as a source gives it (``reconciler.source.ManifestFile``)."""

    @property
    def path(self) -> str: ...
    @property
    def blob(self) -> str: ...
    @property
    def data(self) -> bytes: ...


@dataclass(slots=True)
class Revision:
    """The outcome of validating one revision."""

    revision: str
    resources: list[Resource] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: int = 0
    references_checked: bool = True
    """False when files were checked alone (``samops validate FILE``)."""
    digest: str | None = None
    """What the files were read from, when known (``source.RevisionFiles.digest``)."""

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.WARNING]

    @property
    def valid(self) -> bool:
        return not self.errors


@dataclass(frozen=True, slots=True)
class FileResult:
    """Every resource and diagnostic of one file, and what its aliases cost."""

    resources: tuple[Resource, ...]
    diagnostics: tuple[Diagnostic, ...]
    alias_nodes: int = 0


class ParseCache:
    """Bounded LRU of per-file results keyed by (path, blob SHA, options)."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str, LoadOptions, ReadLimits], FileResult] = (
            OrderedDict()
        )
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, str, LoadOptions, ReadLimits]) -> FileResult | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        else:
            self.misses += 1
        return found

    def __contains__(self, key: tuple[str, str, LoadOptions, ReadLimits]) -> bool:
        """Whether ``key`` is cached; neither a hit nor a miss, and no change of order."""
        return key in self._entries

    def put(self, key: tuple[str, str, LoadOptions, ReadLimits], value: FileResult) -> None:
        self._entries[key] = value
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def load_file(
    file: ManifestFile, options: LoadOptions, limits: ReadLimits, *, alias_budget: int | None = None
) -> FileResult:
    """Every resource and diagnostic of one file."""
    read = read_yaml_file(file.data, file.path, limits, alias_budget=alias_budget)
    diagnostics = read.diagnostics
    resources = []
    for document in read.documents:
        resource, found = load_document(document, options)
        diagnostics.extend(found)
        if resource is not None:
            resources.append(resource)
    kept = capped(sort_diagnostics(diagnostics), MAX_PER_FILE, file=file.path)
    return FileResult(tuple(resources), tuple(kept), read.alias_nodes)


def validate_files(
    revision: str,
    files: Iterable[ManifestFile],
    *,
    options: LoadOptions | None = None,
    limits: ReadLimits | None = None,
    cache: ParseCache | None = None,
    source_diagnostics: Iterable[Diagnostic] = (),
    check_references: bool = True,
    digest: str | None = None,
    progress: Progress | None = None,
    keep_new_parses: bool = True,
) -> Revision:
    """Validate a revision's files as a whole; every problem is collected, none raised.
    ``keep_new_parses=False`` reads ``cache`` without adding to it (the daemon's whole-revision
    pass: 20,000 parses kept would pin their memory long after the pass)."""
    options = options or LoadOptions()
    limits = limits or ReadLimits()
    result = Revision(
        revision=revision,
        diagnostics=list(source_diagnostics),
        references_checked=check_references,
        digest=digest,
    )
    resources: list[Resource] = []
    files = list(files)
    alias_nodes = 0  # spent by the revision's files together (ReadLimits)
    for file in files:
        result.files += 1
        if progress is not None:
            progress("files validated", result.files, len(files))
        key = (file.path, file.blob, options, limits)
        found = cache.get(key) if cache is not None else None
        left = limits.max_revision_alias_nodes - alias_nodes
        if found is None or found.alias_nodes > left:
            budget = min(limits.max_alias_nodes, max(left, 0))
            found = load_file(file, options, limits, alias_budget=budget)
            if cache is not None and keep_new_parses and budget == limits.max_alias_nodes:
                cache.put(key, found)  # a result cut by the revision's budget is not the file's
        alias_nodes += found.alias_nodes
        resources.extend(found.resources)
        result.diagnostics.extend(found.diagnostics)
    if check_references:
        resources, cross = check_revision(resources)
        result.diagnostics.extend(cross)
    result.resources = resources
    result.diagnostics = capped(sort_diagnostics(result.diagnostics), MAX_PER_REVISION)
    return result
