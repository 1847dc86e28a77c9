"""Pull-request review: the plan between two revisions and the risks it carries, as data.

Beside Plan, for reviewers. ``review_revisions`` takes two validated revisions of a manifest
repository (the pull request's base and head): the base's desired state plays the part of the
database, so the plan is computed by the very ``compute_plan`` that ``apply`` uses, and no
database is needed. Risk flags are then read off the two states by pure functions, one per
rule, each returning ``RiskFlag``s with a level and a sentence saying why:

    high    a client becomes public; SQL or API access added to a client; a connection's
            target moves; a secret starts being sent to a host it was not sent to; a plaintext
            secret appears; a deployed client is removed; a prune of many resources; a budget
            removed or detached from a resource; a budget's limit removed or more than
            doubled, or its action turned from block to warn
    medium  a key revoked or rotated out; a model, provider or provider endpoint changes
    low     a key gains a digest (rotation begins); a temperature is raised

An invalid head is part of the review (its errors, with positions), not an exception: the
renderers show them and the CLI's exit code says so. Secrets stay fingerprints, as in plans.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from reconciler.desired import Identity, ResourceState, desired_state
from reconciler.plan import Plan, compute_plan
from reconciler.sam.base import alias_path
from reconciler.sam.diagnostics import Diagnostic
from reconciler.sam.kinds import KINDS
from reconciler.sam.load import LoadOptions
from reconciler.sam.references import REFERENCE_FIELDS
from reconciler.sam.revision import ParseCache, Revision
from reconciler.source import GitSource, validate_source
from reconciler.store.mapping import get_path

Level = Literal["high", "medium", "low"]
LEVELS: tuple[Level, ...] = ("high", "medium", "low")
PLUGIN_KINDS = ("Plugin", "SqlPlugin", "ApiPlugin")
DATA_ACCESS_PLUGINS = {"SqlPlugin": "SQL", "ApiPlugin": "API"}
CONNECTION_TARGETS = {
    "SqlConnection": ("db_engine", "hostname", "port", "database", "username"),
    "ApiConnection": ("base_url",),
}
MANY_DELETES = 10
"""A prune of this many resources is flagged, whatever the repository's size ..."""
MOST_DELETED_FRACTION = 0.5
"""... and so is one that removes more than this share of at least four resources."""

States = Mapping[Identity, ResourceState]

FLAG_LEVELS: dict[str, Level] = {
    "client-public": "high",
    "data-access-added": "high",
    "connection-target": "high",
    "secret-new-destination": "high",
    "plaintext-secret": "high",
    "deployed-client-removed": "high",
    "mass-prune": "high",
    "budget-removed": "high",
    "budget-weakened": "high",
    "key-revoked": "medium",
    "key-rotated": "medium",
    "model-changed": "medium",
    "key-rotation-started": "low",
    "temperature-raised": "low",
}
"""Every flag a review raises, by code, and how serious it is (``docs/review.md`` lists them)."""


@dataclass(frozen=True, slots=True)
class RiskFlag:
    level: Level
    code: str
    kind: str
    name: str
    reason: str

    def at_least(self, level: Level) -> bool:
        return LEVELS.index(self.level) <= LEVELS.index(level)


def _flag(code: str, kind: str, name: str, reason: str) -> RiskFlag:
    return RiskFlag(FLAG_LEVELS[code], code, kind, name, reason)


@dataclass(frozen=True, slots=True)
class Review:
    base: str
    head: str
    plan: Plan
    flags: tuple[RiskFlag, ...]
    head_errors: tuple[Diagnostic, ...]
    base_errors: int
    """Errors of the base revision: its complete resources still make the "before" side."""

    @property
    def head_valid(self) -> bool:
        return not self.head_errors

    def flagged(self, level: Level) -> list[RiskFlag]:
        return [f for f in self.flags if f.at_least(level)]


def review_revisions(base: Revision, head: Revision) -> Review:
    """The review of merging ``head`` onto ``base``. With an invalid head the plan is empty:
    a revision that does not validate is never applied, so it has no plan to review."""
    before = desired_state(r for r in base.resources if not r.partial)
    if not head.valid:
        return Review(
            base.revision, head.revision, Plan(()), (), tuple(head.errors), len(base.errors)
        )
    after = desired_state(head.resources)
    plan = compute_plan(after, before)
    return Review(
        base.revision, head.revision, plan, risk_flags(before, after, plan), (), len(base.errors)
    )


def review_commits(repo: Path, base: str, head: str, path: str, options: LoadOptions) -> Review:
    """The review of merging ``head`` onto ``base``, two commits of the repository at
    ``repo`` (manifests under ``path``), validated as the daemon would; the head reuses the
    base's parsed files where they are the same (one parse cache). ``SourceError`` when a
    commit cannot be read."""
    cache = ParseCache()
    before, after = (
        validate_source(GitSource(repo, ref=commit, path=path), options=options, cache=cache)
        for commit in (base, head)
    )
    return review_revisions(before, after)


# --- the rules ------------------------------------------------------------------------------


def risk_flags(before: States, after: States, plan: Plan) -> tuple[RiskFlag, ...]:
    """Every rule's flags, highest level first, then in plan order."""
    flags = [flag for rule in RULES for flag in rule(before, after, plan)]
    return tuple(sorted(flags, key=lambda f: LEVELS.index(f.level)))


Rule = Callable[[States, States, Plan], Iterator[RiskFlag]]


def _field(state: ResourceState | None, *attributes: str) -> Any:
    """The value at an attribute path of the resource's typed model (None when absent)."""
    value: Any = None if state is None else state.model
    for attribute in attributes:
        value = getattr(value, attribute, None)
    return value


def _key(kind: str, *attributes: str) -> str:
    """How a manifest spells an attribute path (``spec.config.defaultTemperature``)."""
    return ".".join(alias_path(KINDS[kind], attributes))


def _pairs(before: States, after: States, kind: str) -> Iterator[tuple[str, Any, Any]]:
    """(name, before, after) of each resource of ``kind`` on either side, in name order."""
    names = sorted({n for k, n in before if k == kind} | {n for k, n in after if k == kind})
    for name in names:
        yield name, before.get((kind, name)), after.get((kind, name))


def _key_gate(states: States, client: ResourceState | None) -> str | None:
    """The name of the key that guards ``client``, or None when the client is public."""
    token_name = _field(client, "spec", "api_key")
    token = states.get(("SmarterAuthToken", token_name)) if token_name else None
    return token_name if _field(token, "spec", "config", "is_active") else None


def clients_made_public(before: States, after: States, plan: Plan) -> Iterator[RiskFlag]:
    for name, old, new in _pairs(before, after, "LLMClient"):
        guard = _key_gate(before, old)
        if new is None or guard is None or _key_gate(after, new) is not None:
            continue
        now = _field(new, "spec", "api_key")
        token = after.get(("SmarterAuthToken", now)) if now else None
        if now is None:
            why = f"its spec.apiKey ({guard!r}) was removed"
        elif token is None:
            why = f"its key {now!r} is no longer declared"
        else:
            why = f"its key {now!r} is no longer active"
        reason = f"anyone who can reach the server may use it: {why}"
        yield _flag("client-public", "LLMClient", name, reason)


def keys_revoked_or_rotated(before: States, after: States, plan: Plan) -> Iterator[RiskFlag]:
    for name, old, new in _pairs(before, after, "SmarterAuthToken"):
        if old is None or not _field(old, "spec", "config", "is_active"):
            continue
        if new is None or not _field(new, "spec", "config", "is_active"):
            what = "removed" if new is None else "deactivated"
            reason = f"the key is {what}: requests presenting it will be refused"
            yield _flag("key-revoked", "SmarterAuthToken", name, reason)
            continue
        old_digests = set(_field(old, "spec", "config", "digest") or ())
        new_digests = set(_field(new, "spec", "config", "digest") or ())
        removed, added = len(old_digests - new_digests), len(new_digests - old_digests)
        if removed:
            reason = f"{removed} digest(s) removed: callers still using that key will be refused"
            yield _flag("key-rotated", "SmarterAuthToken", name, reason)
        elif added:
            reason = f"{added} digest(s) added: a new key is accepted alongside the old one"
            yield _flag("key-rotation-started", "SmarterAuthToken", name, reason)


def data_access_added(before: States, after: States, plan: Plan) -> Iterator[RiskFlag]:
    for name, old, new in _pairs(before, after, "LLMClient"):
        if new is None:
            continue
        had = set(_field(old, "spec", "plugins") or ())
        for plugin in _field(new, "spec", "plugins") or ():
            kind = next((k for k in PLUGIN_KINDS if (k, plugin) in after), None)
            if plugin in had or kind not in DATA_ACCESS_PLUGINS:
                continue
            connection = _field(after[(kind, plugin)], "spec", "connection")
            access = DATA_ACCESS_PLUGINS[kind]
            reason = f"the {kind} {plugin!r} gives it {access} access through {connection!r}"
            yield _flag("data-access-added", "LLMClient", name, reason)


def connection_targets_moved(before: States, after: States, plan: Plan) -> Iterator[RiskFlag]:
    for kind, keys in CONNECTION_TARGETS.items():
        for name, old, new in _pairs(before, after, kind):
            if old is None or new is None:
                continue
            moved = _changed(kind, old, new, ("spec", "connection"), keys)
            if moved:
                reason = "its plugins will reach another target: " + ", ".join(moved)
                yield _flag("connection-target", kind, name, reason)


def _changed(
    kind: str, old: ResourceState, new: ResourceState, at: tuple[str, ...], keys: Iterable[str]
) -> list[str]:
    """``key 'before' -> 'after'`` for each of ``keys`` under ``at`` whose value changed, each
    key as the manifest spells it."""
    return [
        f"{_key(kind, *at, key).rsplit('.', 1)[-1]} "
        f"{_field(old, *at, key)!r} -> {_field(new, *at, key)!r}"
        for key in keys
        if _field(old, *at, key) != _field(new, *at, key)
    ]


def models_changed(before: States, after: States, plan: Plan) -> Iterator[RiskFlag]:
    watched = [("LLMClient", ("spec", "config"), ("provider", "default_model"))]
    watched += [(kind, ("spec", "prompt"), ("provider", "model")) for kind in PLUGIN_KINDS]
    watched += [("Provider", ("spec", "provider"), ("base_url", "default_model"))]
    for kind, at, keys in watched:
        for name, old, new in _pairs(before, after, kind):
            if old is None or new is None:
                continue
            changed = _changed(kind, old, new, at, keys)
            if changed:
                reason = "answers will come from another model or endpoint: " + ", ".join(changed)
                yield _flag("model-changed", kind, name, reason)


def temperatures_raised(before: States, after: States, plan: Plan) -> Iterator[RiskFlag]:
    watched = [("LLMClient", ("spec", "config", "default_temperature"))]
    watched += [(kind, ("spec", "prompt", "temperature")) for kind in PLUGIN_KINDS]
    for kind, path in watched:
        for name, old, new in _pairs(before, after, kind):
            was, now = _field(old, *path), _field(new, *path)
            if isinstance(was, int | float) and isinstance(now, int | float) and now > was:
                reason = f"{_key(kind, *path)} {was} -> {now}: answers become less predictable"
                yield _flag("temperature-raised", kind, name, reason)


# Where a resource sends the Secret it names at a reference path (REFERENCE_FIELDS says which
# paths name a Secret): the host of this field of the same resource.
SECRET_DESTINATIONS: dict[str, tuple[str, ...]] = {
    "proxyPassword": ("spec", "connection", "proxyHost"),
    "apiKey": ("spec", "connection", "baseUrl"),
    "password": ("spec", "connection", "hostname"),
    "api_key": ("spec", "provider", "base_url"),
}


def _host(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return (urlsplit(value).hostname if "://" in value else value.split(":")[0]) or value


def secret_destinations(states: States) -> set[tuple[str, str, str]]:
    """(secret, host, the resource sending it as 'Kind name') for every Secret reference."""
    found = set()
    for (kind, name), state in states.items():
        for path, targets, _ in REFERENCE_FIELDS.get(kind, ()):
            secret = get_path(state.fields, tuple(str(p) for p in path))
            if "Secret" not in targets or not isinstance(secret, str):
                continue
            host = _host(get_path(state.fields, SECRET_DESTINATIONS[str(path[-1])]))
            if host is not None:
                found.add((secret, host, f"{kind} {name}"))
    return found


def secrets_sent_to_new_hosts(before: States, after: States, plan: Plan) -> Iterator[RiskFlag]:
    known = {(secret, host) for secret, host, _ in secret_destinations(before)}
    for secret, host, sender in sorted(secret_destinations(after)):
        if (secret, host) not in known:
            reason = (
                f"this secret's value starts being sent to {host} ({sender}), where it was "
                "not sent before: check that the host is meant to receive it"
            )
            yield _flag("secret-new-destination", "Secret", secret, reason)


def plaintext_secrets(before: States, after: States, plan: Plan) -> Iterator[RiskFlag]:
    for name, old, new in _pairs(before, after, "Secret"):
        fingerprint = _field(new, "spec", "config", "value_fingerprint")
        if fingerprint is not None and fingerprint != _field(
            old, "spec", "config", "value_fingerprint"
        ):
            reason = (
                "a secret value is written in plaintext in git: anyone who can read the "
                "repository can read it (use valueFrom or 'samops secrets encrypt')"
            )
            yield _flag("plaintext-secret", "Secret", name, reason)


def deployed_clients_removed(before: States, after: States, plan: Plan) -> Iterator[RiskFlag]:
    for name, old, new in _pairs(before, after, "LLMClient"):
        if new is None and _field(old, "spec", "config", "deployed"):
            reason = "a deployed client is removed: its users will get 404s"
            yield _flag("deployed-client-removed", "LLMClient", name, reason)


def mass_prune(before: States, after: States, plan: Plan) -> Iterator[RiskFlag]:
    deleted = plan.count("delete")
    share = deleted / len(before) if before else 0.0
    if deleted >= MANY_DELETES or (len(before) >= 4 and share > MOST_DELETED_FRACTION):
        reason = (
            f"{deleted} of {len(before)} resources are removed ({share:.0%}): check that a "
            "path or a merge did not drop files by mistake"
        )
        yield _flag("mass-prune", "(revision)", "", reason)


BUDGET_LIMITS = (("periodic_limit", "periodicLimit"), ("absolute_limit", "absoluteLimit"))
RAISED_FACTOR = 2
"""A budget's limit raised to more than this many times what it was is flagged."""


def budgets_weakened(before: States, after: States, plan: Plan) -> Iterator[RiskFlag]:
    """Spending that was stopped may go on: a budget removed, a resource detached, a limit
    removed or much raised, blocking turned into warning."""
    for name, old, new in _pairs(before, after, "Budget"):
        if old is None:
            continue
        if new is None:
            yield _flag("budget-removed", "Budget", name, "its limits no longer apply to anything")
            continue
        listed = {(r.kind, r.name) for r in _field(new, "spec", "resources") or ()}
        for resource in _field(old, "spec", "resources") or ():
            if (resource.kind, resource.name) not in listed:
                reason = f"the {resource.kind} {resource.name!r} is detached: no longer limited"
                yield _flag("budget-removed", "Budget", name, reason)
        was, now = _field(old, "spec", "config"), _field(new, "spec", "config")
        reasons = []
        for attribute, spelled in BUDGET_LIMITS:
            a, b = getattr(was, attribute), getattr(now, attribute)
            if a and not b:
                reasons.append(f"{spelled} {a} -> 0 (no limit)")
            elif a and b > a * RAISED_FACTOR:
                reasons.append(f"{spelled} {a} -> {b}")
        if was.action == "block" and now.action == "warn":
            reasons.append("action block -> warn: turns are no longer refused")
        if was.unit != now.unit:
            reasons.append(f"unit {was.unit} -> {now.unit}: the limits count something else")
        if reasons:
            yield _flag("budget-weakened", "Budget", name, ", ".join(reasons))


RULES: tuple[Rule, ...] = (
    clients_made_public,
    keys_revoked_or_rotated,
    data_access_added,
    connection_targets_moved,
    secrets_sent_to_new_hosts,
    models_changed,
    temperatures_raised,
    plaintext_secrets,
    deployed_clients_removed,
    mass_prune,
    budgets_weakened,
)
