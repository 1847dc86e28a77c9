"""Checks that need the whole revision: identities and references between resources.

``REFERENCE_FIELDS`` is the one statement of who refers to whom. Reference checking (here),
the order of creates, updates and deletes (``kind_order``, used by the plan) and the serving
snapshot's invalidation (``ReferrerIndex``, used by ``serve/snapshot.py``) are all derived from it:
a new reference field is declared once, in that table.

Last stage of Validate. Runs over every resource that loaded, so one bad file does not hide
the reference errors of the others. A reference is checked against the namespace of the kinds
it may name: an LLMClient's ``plugins`` may name any of the three plugin kinds, a SqlPlugin's
``connection`` only a SqlConnection, and so on. The built-in provider ``openai`` needs no
manifest.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.sam.base import closest
from reconciler.sam.budget_kind import BUDGET_KINDS
from reconciler.sam.diagnostics import Diagnostic, Severity
from reconciler.sam.functions import canonical_function, known_function_names
from reconciler.sam.kinds import (
    KINDS,
    LLMClient,
    SmarterAuthToken,
)
from reconciler.sam.load import Resource
from reconciler.sam.yamlread import Path

BUILTIN_PROVIDERS = frozenset({"openai"})


@dataclass(frozen=True, slots=True)
class Reference:
    """``source`` names ``target`` (of one of ``kinds``) at ``path``."""

    source: Resource
    path: Path
    target: str
    kinds: tuple[str, ...]
    sensitive: bool = False


def check_revision(resources: Iterable[Resource]) -> tuple[list[Resource], list[Diagnostic]]:
    """Drop duplicate identities (keeping the first) and check every reference."""
    unique, diagnostics = _unique(resources)
    index = {(r.kind, r.name): r for r in unique}
    diagnostics.extend(check_resources(unique, index))
    diagnostics.extend(_shared_digests(unique))
    return unique, diagnostics


def check_resources(
    resources: Iterable[Resource], index: Mapping[tuple[str, str], Resource]
) -> list[Diagnostic]:
    """The references, built-in functions and keys of ``resources``, checked against
    ``index``: every resource of the revision by (kind, name). The whole revision's check
    passes every resource; an incremental one (``reconciler/incremental.py``) only those a
    change can break, with an index that loads the others when asked."""
    resources = list(resources)
    diagnostics: list[Diagnostic] = []
    for reference in _references(resources):
        diagnostics.extend(_resolve(reference, index))
    diagnostics.extend(_functions(resources))
    diagnostics.extend(_client_keys([r for r in resources if r.has_spec], index))
    return diagnostics


def _unique(resources: Iterable[Resource]) -> tuple[list[Resource], list[Diagnostic]]:
    seen: dict[tuple[str, str], Resource] = {}
    diagnostics = []
    for resource in resources:
        first = seen.get(resource.identity)
        if first is None:
            seen[resource.identity] = resource
            continue
        same = (
            "" if first.kind == resource.kind else f" (as a {first.kind}; plugin kinds share names)"
        )
        diagnostics.append(
            resource.diagnostic(
                Severity.ERROR,
                "duplicate-name",
                f"{resource.kind} {resource.name!r} is also defined at {first.where()}{same}",
                ("metadata", "name"),
                related=(first.where(),),
                hint="names must be unique per kind in a revision; rename or remove one of them",
            )
        )
    return list(seen.values()), diagnostics


PLUGIN_KINDS = ("Plugin", "SqlPlugin", "ApiPlugin")
# Where each kind names other resources: (path, kinds it may name, sensitive). "*" stands for
# every item of a list. Read from the document's data, not its model, so that a document with
# an error elsewhere (which has no complete model) still has its references checked.
REFERENCE_FIELDS: dict[str, tuple[tuple[Path, tuple[str, ...], bool], ...]] = {
    "LLMClient": (
        (("spec", "config", "provider"), ("Provider",), False),
        (("spec", "config", "prompt", "provider"), ("Provider",), False),
        (("spec", "plugins", "*"), PLUGIN_KINDS, False),
        (("spec", "apiKey"), ("SmarterAuthToken",), False),
    ),
    "Plugin": ((("spec", "prompt", "provider"), ("Provider",), False),),
    "SqlPlugin": (
        (("spec", "prompt", "provider"), ("Provider",), False),
        (("spec", "connection"), ("SqlConnection",), False),
    ),
    "ApiPlugin": (
        (("spec", "prompt", "provider"), ("Provider",), False),
        (("spec", "connection"), ("ApiConnection",), False),
    ),
    "SqlConnection": (
        (("spec", "connection", "password"), ("Secret",), True),
        (("spec", "connection", "proxyPassword"), ("Secret",), True),
    ),
    "ApiConnection": (
        (("spec", "connection", "apiKey"), ("Secret",), True),
        (("spec", "connection", "proxyPassword"), ("Secret",), True),
    ),
    "Provider": ((("spec", "provider", "api_key"), ("Secret",), True),),
    # each item names its kind: {kind: LLMClient, name: support} (``named`` below)
    "Budget": ((("spec", "resources", "*"), BUDGET_KINDS, False),),
}
assert set(REFERENCE_FIELDS) <= set(KINDS)


PREFERRED_ORDER = (
    "Secret",
    "Provider",
    "SqlConnection",
    "ApiConnection",
    "Plugin",
    "SqlPlugin",
    "ApiPlugin",
    "SmarterAuthToken",
    "LLMClient",
    "Budget",
)
"""How kinds are listed where the graph leaves the order free (plans, status, reviews)."""
assert set(PREFERRED_ORDER) == set(KINDS)


def kind_order() -> tuple[str, ...]:
    """Every kind after the kinds it refers to, as ``REFERENCE_FIELDS`` says: creates and
    updates are applied in this order, deletes in the reverse. Ties follow
    ``PREFERRED_ORDER``."""
    order: list[str] = []

    def visit(kind: str, path: tuple[str, ...]) -> None:
        if kind in order:
            return
        if kind in path:
            raise ValueError(f"REFERENCE_FIELDS has a cycle: {' -> '.join((*path, kind))}")
        for _pattern, targets, _sensitive in REFERENCE_FIELDS.get(kind, ()):
            for target in sorted(targets, key=PREFERRED_ORDER.index):
                visit(target, (*path, kind))
        order.append(kind)

    for kind in PREFERRED_ORDER:
        visit(kind, ())
    return tuple(order)


def names_referred_to(kind: str, data: Mapping[str, Any]) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(name, kinds it may be) of every reference in a document's (or row's) data."""
    for pattern, kinds, _sensitive in REFERENCE_FIELDS.get(kind, ()):
        for _path, value in _values_at(data, pattern):
            found = named(value, kinds)
            if found is not None:
                yield found[1], found[2]


Identity = tuple[str, str]
"""(kind, name)."""


def targets(kind: str, data: Mapping[str, Any]) -> Iterator[Identity]:
    """Every (kind, name) a resource's data (or row's fields) may be naming."""
    for name, kinds in names_referred_to(kind, data):
        for target in kinds:
            yield (target, name)


class ReferrerIndex:
    """Who refers to whom, kept up to date one resource at a time (the applier's memory of the
    applied revision, ``reconciler/incremental.py``; the serving snapshot's invalidation,
    ``serve/snapshot.py``). A resource is added and removed with the ``targets`` of its
    data."""

    def __init__(self) -> None:
        self._referrers: dict[Identity, set[Identity]] = {}

    def add(self, identity: Identity, named: Iterable[Identity]) -> None:
        for target in named:
            self._referrers.setdefault(target, set()).add(identity)

    def remove(self, identity: Identity, named: Iterable[Identity]) -> None:
        """Forget the references of ``identity`` to ``named`` (what it was added with)."""
        for target in named:
            referrers = self._referrers.get(target)
            if referrers is not None:
                referrers.discard(identity)
                if not referrers:
                    del self._referrers[target]

    def referrers(self, identity: Identity) -> set[Identity]:
        """The identities whose data names ``identity``."""
        return self._referrers.get(identity, set())

    def dependants(self, changed: Iterable[Identity]) -> set[Identity]:
        """``changed`` and every identity that refers to one of them, directly or through
        others: what must be rebuilt when ``changed`` changed."""
        found = set(changed)
        frontier = list(found)
        while frontier:
            for referrer in self._referrers.get(frontier.pop(), ()):
                if referrer not in found:
                    found.add(referrer)
                    frontier.append(referrer)
        return found


def _values_at(data: Any, pattern: Path, at: Path = ()) -> Iterator[tuple[Path, Any]]:
    """(path, value) of every value matching ``pattern`` in nested data."""
    if not pattern:
        yield at, data
        return
    head, rest = pattern[0], pattern[1:]
    if head == "*" and isinstance(data, list):
        for i, item in enumerate(data):
            yield from _values_at(item, rest, (*at, i))
    elif isinstance(data, Mapping) and head in data:
        yield from _values_at(data[head], rest, (*at, head))


def named(value: Any, kinds: tuple[str, ...]) -> tuple[Path, str, tuple[str, ...]] | None:
    """(path below the value, name, kinds it may be) of a reference's value: a name, or an
    item that names its kind and name (a Budget's resources); None when it names nothing."""
    if isinstance(value, str) and value:
        return (), value, kinds
    if isinstance(value, Mapping) and isinstance(value.get("name"), str) and value["name"]:
        kind = value.get("kind")  # a kind it may not name is the item's own error
        return (("name",), value["name"], (kind,)) if kind in kinds else None
    return None


def _references(resources: Iterable[Resource]) -> Iterator[Reference]:
    for r in resources:
        for pattern, kinds, sensitive in REFERENCE_FIELDS.get(r.kind, ()):  # the one graph
            for path, value in _values_at(r.data, pattern):
                found = named(value, kinds)
                if found is not None:
                    below, name, which = found
                    yield Reference(r, (*path, *below), name, which, sensitive)


def _resolve(ref: Reference, index: Mapping[tuple[str, str], Resource]) -> Iterator[Diagnostic]:
    if any((kind, ref.target) in index for kind in ref.kinds):
        return
    if ref.kinds == ("Provider",) and ref.target in BUILTIN_PROVIDERS:
        return
    wrong_kind = [k for k in KINDS if (k, ref.target) in index]
    wanted = "plugin" if ref.kinds == PLUGIN_KINDS else " or ".join(ref.kinds)
    candidates = [name for (kind, name) in index if kind in ref.kinds]
    if ref.kinds == ("Provider",):
        candidates += sorted(BUILTIN_PROVIDERS)
    suggestion = closest(ref.target, candidates)
    shown = f" {ref.target!r}" if not ref.sensitive else ""
    message = f"no {wanted}{shown} in this revision"
    if wrong_kind:
        article = "an" if wrong_kind[0][0] in "AEIOU" else "a"
        message += f" (there is {article} {wrong_kind[0]} of that name)"
    if suggestion and not ref.sensitive:
        hint = f"did you mean {suggestion!r}?"
    elif candidates and not ref.sensitive:
        hint = f"{wanted} names here: " + ", ".join(sorted(candidates)[:10])
    else:
        hint = f"add a {ref.kinds[0]} manifest with this name, or fix the reference"
    if ref.sensitive:
        hint += " (the value is not shown: it may be a pasted credential)"
    yield ref.source.diagnostic(Severity.ERROR, "missing-reference", message, ref.path, hint=hint)


def _functions(resources: Iterable[Resource]) -> Iterator[Diagnostic]:
    for r in resources:
        if r.kind != "LLMClient":
            continue
        listed = [*_values_at(r.data, ("spec", "functions", "*"))]
        listed += _values_at(r.data, ("spec", "extensions", "*"))
        for path, name in listed:
            if isinstance(name, str) and canonical_function(name) is None:
                suggestion = closest(name, known_function_names())
                hint = (f"did you mean {suggestion!r}? " if suggestion else "") + (
                    "known functions: " + ", ".join(known_function_names())
                )
                message = f"unknown built-in function {name!r}"
                yield r.diagnostic(Severity.ERROR, "unknown-function", message, path, hint=hint)


def _client_keys(
    resources: Iterable[Resource], index: Mapping[tuple[str, str], Resource]
) -> Iterator[Diagnostic]:
    """A client attached to a key that cannot admit anyone, or that admits everyone."""
    for r in resources:
        if not isinstance(r.model, LLMClient) or r.model.spec.api_key is None:
            continue
        token = index.get(("SmarterAuthToken", r.model.spec.api_key))
        if token is None or not token.has_spec or not isinstance(token.model, SmarterAuthToken):
            continue
        config = token.model.spec.config
        path = ("spec", "apiKey")
        if not config.is_active:
            yield r.diagnostic(
                Severity.WARNING,
                "inactive-key",
                f"the key {token.name!r} is not active, so this client is public",
                path,
                hint=f"set spec.config.isActive: true in {token.where()} to require the key",
            )
        elif not config.digest:
            yield r.diagnostic(
                Severity.ERROR,
                "key-without-digest",
                f"the key {token.name!r} is active but has no digest, so no request could "
                "ever use this client",
                path,
                related=(token.where(),),
                hint="'samops keys create NAME' makes a key and prints its digest",
            )


def token_digests(token: Resource) -> Iterator[tuple[Path, str]]:
    """(path, digest) of each digest a SmarterAuthToken lists (one string, or a list)."""
    for path, value in _values_at(token.data, ("spec", "config", "digest")):
        items = [(path, value)] if isinstance(value, str) else []
        if isinstance(value, list):
            items = [((*path, i), item) for i, item in enumerate(value)]
        yield from ((p, d) for p, d in items if isinstance(d, str) and d)


def _shared_digests(resources: Iterable[Resource]) -> Iterator[Diagnostic]:
    """A digest listed by two SmarterAuthTokens: a presented key must identify one token (and
    the database holds each digest once). Twice in one token is the model's error."""
    first: dict[str, tuple[Resource, Path]] = {}
    for r in resources:
        if r.kind != "SmarterAuthToken":
            continue
        for path, digest in token_digests(r):
            owner, owner_path = first.setdefault(digest, (r, path))
            if owner is r:
                continue
            where = f"{owner.file}:{owner.position_of(owner_path).line}"
            yield r.diagnostic(
                Severity.ERROR,
                "duplicate-digest",
                f"this key digest is also listed by the SmarterAuthToken {owner.name!r} at {where}",
                path,
                related=(where,),
                hint="a key belongs to one SmarterAuthToken; to rename a key or move it to "
                "another, remove its digest from the old one in the same commit",
            )
