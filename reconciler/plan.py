"""Plan: what must change to turn the actual state into the desired one, as plain data.

Between Validate and Apply. ``compute_plan`` is a pure function of (desired, actual): no I/O,
no clock, deterministic order. Creates and updates come in dependency order (a Secret before
the connection that uses it, a plugin before the client that lists it), deletes in the reverse
order. Updates carry field-level before/after values; a rename is a delete plus a create.

The same function serves ``samops plan`` against the database and, later, the review of a pull
request between two commits. Secret material never appears: plaintext values were reduced to
fingerprints in ``desired.py``, and sealed values are shown as a digest of the ciphertext.

The renderers (text, Markdown, JSON) are in ``plan_render.py``; a review's in
``review_render.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from reconciler.desired import Identity, ResourceState, kind_ranks

Action = Literal["create", "update", "delete"]
PLAN_JSON_VERSION = 1
SEALED_KEYS = frozenset({"encryptedValue"})


@dataclass(frozen=True, slots=True)
class FieldChange:
    path: str
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class Change:
    action: Action
    kind: str
    name: str
    file: str
    fields: tuple[FieldChange, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    changes: tuple[Change, ...]

    @property
    def empty(self) -> bool:
        return not self.changes

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action == action)

    def deletes_every(self, kind: str, actual: Mapping[Identity, ResourceState]) -> bool:
        """True when the plan removes every existing resource of ``kind`` and adds none."""
        existing = {i for i in actual if i[0] == kind}
        deleted = {
            (c.kind, c.name) for c in self.changes if c.kind == kind and c.action == "delete"
        }
        created = any(c.kind == kind and c.action == "create" for c in self.changes)
        return bool(existing) and existing == deleted and not created


def _shown(key: str, value: Any) -> Any:
    if key in SEALED_KEYS and isinstance(value, str):
        return "sealed:" + hashlib.sha256(value.encode()).hexdigest()[:16]
    return value


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    """Leaf paths of nested mappings into ``out``; lists, scalars and nested empty mappings
    are leaves. A whole resource that is empty (the ``before`` of a create, the ``after`` of a
    delete) has no leaves: it must not show as a field with the path ``""``. (Called for
    every field of every resource of a cold apply: kept lean.)"""
    if (type(value) is dict or isinstance(value, Mapping)) and value:
        for key, inner in value.items():
            if key in SEALED_KEYS:
                inner = _shown(key, inner)
            _flatten(inner, f"{prefix}.{key}" if prefix else key, out)
    elif prefix or not isinstance(value, Mapping):
        out[prefix] = value


def diff_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    """Field-level differences, in the order the fields are declared."""
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    _flatten(before, "", old)
    _flatten(after, "", new)
    if not old:  # a create: every field that has a value is new
        return tuple(FieldChange(p, None, v) for p, v in new.items() if v is not None)
    paths = list(old) + [p for p in new if p not in old]
    return tuple(
        FieldChange(path, old.get(path), new.get(path))
        for path in paths
        if old.get(path) != new.get(path)
    )


def compute_plan(
    desired: Mapping[Identity, ResourceState],
    actual: Mapping[Identity, ResourceState],
    *,
    create_fields: bool = True,
) -> Plan:
    """The ordered changes that make ``actual`` equal ``desired``. Without
    ``create_fields``, a create names what it creates without listing its fields: the
    daemon's plans, which only their counts and the rows outlive (a cold start at 10,000
    clients would list 290,000 fields, a tenth of its time)."""
    rank = kind_ranks()  # dependency order, from the reference graph
    upserts: list[Change] = []
    for identity in sorted(desired, key=lambda i: (rank[i[0]], i[1])):
        want = desired[identity]
        have = actual.get(identity)
        if have is None:
            fields = diff_fields({}, want.fields) if create_fields else ()
            upserts.append(Change("create", want.kind, want.name, want.file, fields))
            continue
        changed = diff_fields(have.fields, want.fields)
        if have.file != want.file:
            changed += (FieldChange("(file)", have.file, want.file),)
        if changed:
            upserts.append(Change("update", want.kind, want.name, want.file, changed))
    deletes = [
        Change("delete", have.kind, have.name, have.file, diff_fields(have.fields, {}))
        for identity, have in sorted(actual.items(), key=lambda e: (-rank[e[0][0]], e[0][1]))
        if identity not in desired
    ]
    return Plan(tuple(upserts + deletes))
