"""The applier's memory of the applied revision, so that the next pass costs what changed.

Between Source and Apply, in the daemon (``daemon.py``). After a pass leaves the database at a
valid revision, the daemon keeps an ``AppliedRevision``: the blob of every file, which
resources each file declared, their desired state, who refers to whom and which token holds
which key digest. The next pass then (``next_revision``):

1. reads only the files whose blob changed (``GitSource.read`` lists the tree, and leaves
   unread what this memory already has);
2. parses those files and checks only what the change can break: the changed resources, the
   unchanged ones that refer to a changed or removed name (through an index that loads them
   when asked), duplicate names and shared key digests against the rest;
3. plans over the touched identities only, against their rows (read by identity: a one-file
   commit reads a row or two, whatever the number of resources).

The memory is lean (about 200 bytes a resource: its file, whom it names, its key digests);
the desired state and models of a revision live only while its pass runs.

Whatever this path cannot prove valid (an error in a changed file, a broken reference, a
duplicate name, a plan that would delete every client, a problem listing the files) goes to
the whole-revision path, which reports every problem with its position: an invalid commit
costs a full check, a valid one costs its change. Apply uses the plan only while the database
is still at the generation and fingerprint key this memory was made at (``Planned``); after
another applier (a standby that led meanwhile, ``samops apply``) the pass runs in full.

``tests/test_incremental.py`` holds both paths to the same plan and the same served state
over random sequences of edits, renames, deletions and reference changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.desired import Identity, ResourceState, desired_state
from reconciler.plan import Plan, compute_plan
from reconciler.sam.diagnostics import Diagnostic, Severity, sort_diagnostics
from reconciler.sam.kinds import KINDS
from reconciler.sam.load import LoadOptions, Resource
from reconciler.sam.references import ReferrerIndex, check_resources, targets, token_digests
from reconciler.sam.revision import FileResult, ManifestFile, ParseCache, Revision, load_file
from reconciler.sam.yamlread import ReadLimits
from reconciler.source import FileChanges, RevisionFiles, UnreadFile

Namespaced = tuple[str, str]
"""(namespace, name): what must be unique in a revision (plugin kinds share one namespace)."""


def namespaced(identity: Identity) -> Namespaced:
    kind, name = identity
    return (KINDS[kind].NAMESPACE or kind, name)


@dataclass(frozen=True, slots=True)
class Planned:
    """A plan made from the applier's memory rather than from the rows: apply uses it only
    while the database is still where that memory says (``apply.py``)."""

    generation: int
    """The generation the memory was made at; the state row must still show it."""
    fingerprint_key: str
    plan: Plan
    desired: Mapping[Identity, ResourceState]
    """The desired state of every identity the plan creates or updates."""


@dataclass(slots=True)
class Change:
    """What the next revision changes, ready to apply; ``advance`` records it once applied."""

    revision: Revision
    planned: Planned
    listing: Listing
    """Every file of the new revision."""
    paths: dict[str, tuple[Identity, ...]]
    """The identities of each changed file (an empty tuple for a removed file)."""
    entries: dict[Identity, Entry]
    """What the memory keeps of every identity of the changed files."""


@dataclass(frozen=True, slots=True)
class Entry:
    """What the memory keeps of one resource."""

    file: str
    targets: tuple[Identity, ...]
    """The (kind, name)s its manifest may be naming."""
    digests: tuple[str, ...] = ()
    """The key digests a SmarterAuthToken lists."""

    @classmethod
    def of(cls, state: ResourceState) -> Entry:
        return cls(state.file, tuple(targets(state.kind, state.fields)), _state_digests(state))


@dataclass(slots=True)
class AppliedRevision:
    """The last revision this applier left the database at (see the module doc)."""

    revision: str
    generation: int
    fingerprint_key: str
    files: dict[str, str]
    by_file: dict[str, tuple[Identity, ...]]
    entries: dict[Identity, Entry]
    tree: str | None = None
    """The git tree at the path the memory was made from (what the next pass diffs from)."""
    links: bool = False
    """Whether a manifest was a symlink (then a diff cannot tell; the tree is listed)."""
    referrers: ReferrerIndex = field(default_factory=ReferrerIndex)
    """Who names whom."""
    owners: dict[Namespaced, Identity] = field(default_factory=dict)
    digests: dict[str, Identity] = field(default_factory=dict)
    """Key digest -> the SmarterAuthToken that lists it."""
    clients: int = 0
    """How many LLM clients the revision has."""

    @classmethod
    def of(
        cls,
        revision: Revision,
        snapshot: RevisionFiles,
        *,
        generation: int,
        fingerprint_key: str,
        desired: Mapping[Identity, ResourceState] | None = None,
    ) -> AppliedRevision:
        """The memory of a valid revision that the database is now at; ``desired``, its
        desired state under ``fingerprint_key`` when the caller has it already."""
        if desired is None:
            key = bytes.fromhex(fingerprint_key)
            desired = desired_state(revision.resources, fingerprint_key=key)
        entries = {i: Entry.of(s) for i, s in desired.items()}
        by_file: dict[str, list[Identity]] = {}
        for identity, entry in entries.items():
            by_file.setdefault(entry.file, []).append(identity)
        memory = cls(
            revision.revision,
            generation,
            fingerprint_key,
            {f.path: f.blob for f in snapshot.files},
            {path: tuple(ids) for path, ids in by_file.items()},
            {},
            snapshot.tree,
            snapshot.links,
        )
        memory._add(entries)
        return memory

    def _add(self, entries: Mapping[Identity, Entry]) -> None:
        for identity, entry in entries.items():
            self.clients += identity[0] == "LLMClient" and identity not in self.entries
            self.entries[identity] = entry
            self.owners[namespaced(identity)] = identity
            self.referrers.add(identity, entry.targets)
            for digest in entry.digests:
                self.digests[digest] = identity

    def _drop(self, identities: Iterable[Identity]) -> None:
        for identity in identities:
            entry = self.entries.pop(identity, None)
            if entry is None:
                continue
            self.clients -= identity[0] == "LLMClient"
            if self.owners.get(namespaced(identity)) == identity:
                del self.owners[namespaced(identity)]
            self.referrers.remove(identity, entry.targets)
            for digest in entry.digests:
                if self.digests.get(digest) == identity:
                    del self.digests[digest]

    def advance(self, change: Change, generation: int) -> None:
        """``change`` is applied: the database is at its revision, at ``generation``."""
        touched = {i for path in change.paths for i in self.by_file.get(path, ())}
        self._drop(touched)
        self._add(change.entries)
        for path, identities in change.paths.items():
            if identities:
                self.by_file[path] = identities
            else:
                self.by_file.pop(path, None)
        self.files = change.listing.blobs
        self.tree, self.links = change.listing.tree, change.listing.links
        self.revision = change.revision.revision
        self.generation = generation

    def moved_to(self, revision: str, generation: int) -> None:
        """The database recorded ``revision`` with the same files (nothing read)."""
        if generation == self.generation:
            self.revision = revision


def _state_digests(state: ResourceState) -> tuple[str, ...]:
    if state.kind != "SmarterAuthToken":
        return ()
    config: Any = state.fields.get("spec", {}).get("config", {})
    digests = config.get("digest") or []
    return (digests,) if isinstance(digests, str) else tuple(digests)


class _Index(Mapping[Identity, Resource]):
    """Every resource of the next revision by (kind, name): the changed ones at hand, the
    others loaded from their (unchanged) files when a check asks for one."""

    def __init__(
        self,
        changed: Mapping[Identity, Resource],
        memory: AppliedRevision,
        replaced: set[Identity],
        load: _Loader,
    ) -> None:
        """``replaced``: the identities the changed files declared before (now ``changed``
        says which of them still exist)."""
        self.changed, self.memory, self.replaced, self.load = changed, memory, replaced, load

    def _unchanged(self, key: object) -> bool:
        return key in self.memory.entries and key not in self.replaced

    def __contains__(self, key: object) -> bool:
        return key in self.changed or self._unchanged(key)

    def __getitem__(self, key: Identity) -> Resource:
        if key in self.changed:
            return self.changed[key]
        if not self._unchanged(key):
            raise KeyError(key)
        return self.load.resource(key)

    def __iter__(self) -> Iterator[Identity]:
        yield from self.changed
        yield from (i for i in self.memory.entries if self._unchanged(i) and i not in self.changed)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _Loader:
    """Parses of files, from the parse cache or read again from the source."""

    def __init__(
        self,
        listing: Listing,
        memory: AppliedRevision,
        cache: ParseCache,
        options: LoadOptions,
        limits: ReadLimits,
    ) -> None:
        self.listing, self.memory, self.cache = listing, memory, cache
        self.options, self.limits = options, limits

    def parse(self, file: ManifestFile) -> FileResult:
        key = (file.path, file.blob, self.options, self.limits)
        found = self.cache.get(key)
        if found is None:
            found = load_file(file, self.options, self.limits)
            self.cache.put(key, found)
        return found

    def resource(self, identity: Identity) -> Resource:
        path = self.memory.entries[identity].file
        file = self.listing.unread(path, self.listing.blobs[path])
        for resource in self.parse(file).resources:
            if (resource.kind, resource.name) == identity:
                return resource
        raise KeyError(identity)


@dataclass(slots=True)
class Listing:
    """The next revision's files as the memory sees them: every path's blob, the files that
    changed since the memory (read), the removed paths, and how to get any other file."""

    revision: str
    digest: str | None
    tree: str | None
    links: bool
    blobs: dict[str, str]
    changed: list[ManifestFile]
    removed: list[str]
    diagnostics: list[Diagnostic]
    unread: Callable[[str, str], ManifestFile]
    """A file of the revision that was not read: (path, blob) -> the file."""

    @classmethod
    def of_files(cls, memory: AppliedRevision, snapshot: RevisionFiles) -> Listing | None:
        """From every file of a revision (a full listing); None if a path is listed twice."""
        by_path = {f.path: f for f in snapshot.files}
        if len(by_path) != len(snapshot.files):
            return None
        return cls(
            snapshot.revision,
            snapshot.digest,
            snapshot.tree,
            snapshot.links,
            {path: f.blob for path, f in by_path.items()},
            [f for f in snapshot.files if memory.files.get(f.path) != f.blob],
            [p for p in memory.files if p not in by_path],
            list(snapshot.diagnostics),
            lambda path, _blob: by_path[path],
        )

    @classmethod
    def of_changes(cls, memory: AppliedRevision, found: FileChanges) -> Listing:
        """From what changed since the memory's tree (``GitSource.changes``)."""
        blobs = dict(memory.files)
        for path in found.removed:
            blobs.pop(path, None)
        blobs.update((f.path, f.blob) for f in found.changed)
        return cls(
            found.revision,
            found.digest,
            found.tree,
            False,
            blobs,
            [f for f in found.changed if memory.files.get(f.path) != f.blob],
            [p for p in found.removed if p in memory.files],
            list(found.diagnostics),
            lambda path, blob: UnreadFile(path, blob, found.repo),
        )


def next_revision(
    memory: AppliedRevision,
    listing: Listing,
    *,
    cache: ParseCache,
    options: LoadOptions,
    limits: ReadLimits,
    rows: Callable[[set[Identity]], Mapping[Identity, ResourceState]],
) -> Change | None:
    """The change from ``memory`` to the revision of ``listing``, checked and planned by what
    changed; None when the whole-revision path must decide (see the module doc). ``rows``
    reads the stored rows of some identities (the database at ``memory``'s generation: apply
    checks it still is)."""
    source_diagnostics = listing.diagnostics
    if any(d.severity is Severity.ERROR for d in source_diagnostics):
        return None
    changed, removed_paths = listing.changed, listing.removed
    loader = _Loader(listing, memory, cache, options, limits)
    parses = [(f.path, loader.parse(f)) for f in changed]
    diagnostics = [*source_diagnostics, *(d for _, p in parses for d in p.diagnostics)]
    if any(d.severity is Severity.ERROR for d in diagnostics):
        return None
    if sum(p.alias_nodes for _, p in parses) > limits.max_revision_alias_nodes:
        return None  # the whole-revision path applies the revision's alias budget
    resources = [r for _, p in parses for r in p.resources]
    touched = [*(f.path for f in changed), *removed_paths]
    old = {i for path in touched for i in memory.by_file.get(path, ())}
    new_by_identity: dict[Identity, Resource] = {}
    names: set[Namespaced] = set()
    for resource in resources:
        owner = memory.owners.get(resource.identity)
        if (owner is not None and owner not in old) or resource.identity in names:
            return None  # a duplicate name: the whole-revision path reports which is first
        names.add(resource.identity)
        new_by_identity[(resource.kind, resource.name)] = resource
    index = _Index(new_by_identity, memory, old, loader)
    unchanged_referrers = {
        referrer
        for identity in old | set(new_by_identity)
        for referrer in memory.referrers.referrers(identity)
        if referrer not in old
    }
    checked = [*resources, *(loader.resource(i) for i in sorted(unchanged_referrers))]
    cross = check_resources(checked, index)
    if any(d.severity is Severity.ERROR for d in cross) or _shares_digests(resources, memory, old):
        return None
    key = bytes.fromhex(memory.fingerprint_key)
    states = desired_state(resources, fingerprint_key=key)
    if _deletes_every_client(memory, old - set(new_by_identity), states):
        return None  # refused, and recorded as such, by the whole-revision path
    plan = compute_plan(states, rows(old), create_fields=False)  # as the daemon's whole pass
    paths: dict[str, tuple[Identity, ...]] = dict.fromkeys(removed_paths, ())
    for path, parse in parses:
        paths[path] = tuple((r.kind, r.name) for r in parse.resources)
    result = Revision(
        revision=listing.revision,
        resources=resources,
        diagnostics=sort_diagnostics([*diagnostics, *cross]),
        files=len(listing.blobs),
        digest=listing.digest,
    )
    return Change(
        result,
        Planned(memory.generation, memory.fingerprint_key, plan, states),
        listing,
        paths,
        {i: Entry.of(s) for i, s in states.items()},
    )


def _shares_digests(resources: list[Resource], memory: AppliedRevision, old: set[Identity]) -> bool:
    """Whether a changed token lists a digest another token of the revision lists."""
    seen: dict[str, Identity] = {}
    for resource in resources:
        if resource.kind != "SmarterAuthToken":
            continue
        identity = (resource.kind, resource.name)
        for _path, digest in token_digests(resource):
            owner = seen.setdefault(digest, identity)
            if owner != identity:
                return True
            holder = memory.digests.get(digest)
            if holder is not None and holder != identity and holder not in old:
                return True
    return False


def _deletes_every_client(
    memory: AppliedRevision, gone: set[Identity], states: Mapping[Identity, ResourceState]
) -> bool:
    had = memory.clients
    removed = sum(1 for kind, _ in gone if kind == "LLMClient")
    added = any(kind == "LLMClient" for kind, _ in states)
    return had > 0 and removed == had and not added
