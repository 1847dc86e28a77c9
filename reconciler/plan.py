"""Plan: what must change to turn the actual state into the desired one, as plain data.

Between Validate and Apply. ``compute_plan`` is a pure function of (desired, actual): no I/O,
no clock, deterministic order. Creates and updates come in dependency order (a Secret before
the connection that uses it, a plugin before the client that lists it), deletes in the reverse
order. Updates carry field-level before/after values; a rename is a delete plus a create.

The same function serves ``samops plan`` against the database and, later, the review of a pull
request between two commits. Secret material never appears: plaintext values were reduced to
fingerprints in ``desired.py``, and sealed values are shown as a digest of the ciphertext.

Renderers: ``render_text`` (terraform-like, coloured on a terminal), ``render_markdown`` and
``plan_to_json`` (documented in docs/cli.md; keys are only ever added).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
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


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Leaf paths of nested mappings; lists, scalars and nested empty mappings are leaves.
    A whole resource that is empty (the ``before`` of a create, the ``after`` of a delete)
    has no leaves: it must not show as a field with the path ``""``."""
    if isinstance(value, Mapping) and value:
        for key, inner in value.items():
            yield from _flatten(_shown(key, inner), f"{prefix}.{key}" if prefix else key)
    elif prefix or not isinstance(value, Mapping):
        yield prefix, value


def diff_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    """Field-level differences, in the order the fields are declared."""
    old = dict(_flatten(before))
    new = dict(_flatten(after))
    paths = list(old) + [p for p in new if p not in old]
    return tuple(
        FieldChange(path, old.get(path), new.get(path))
        for path in paths
        if old.get(path) != new.get(path)
    )


def compute_plan(
    desired: Mapping[Identity, ResourceState], actual: Mapping[Identity, ResourceState]
) -> Plan:
    """The ordered changes that make ``actual`` equal ``desired``."""
    rank = kind_ranks()  # dependency order, from the reference graph
    upserts: list[Change] = []
    for identity in sorted(desired, key=lambda i: (rank[i[0]], i[1])):
        want = desired[identity]
        have = actual.get(identity)
        if have is None:
            upserts.append(
                Change("create", want.kind, want.name, want.file, diff_fields({}, want.fields))
            )
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


# --- renderers ------------------------------------------------------------------------------

SYMBOLS: dict[str, tuple[str, str]] = {
    "create": ("+", "green"),
    "update": ("~", "yellow"),
    "delete": ("-", "red"),
}


def summary_line(plan: Plan) -> str:
    if plan.empty:
        return "No changes: the database matches the revision."
    return (
        f"Plan: {plan.count('create')} to create, {plan.count('update')} to update, "
        f"{plan.count('delete')} to delete."
    )


def _value(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_text(plan: Plan, *, color: bool = False) -> str:
    import click

    lines = []
    for change in plan.changes:
        symbol, colour = SYMBOLS[change.action]
        head = f"{symbol} {change.action} {change.kind} {change.name}  ({change.file})"
        lines.append(click.style(head, fg=colour, bold=True) if color else head)
        if change.action == "update":
            for field in change.fields:
                lines.append(f"    {field.path}: {_value(field.before)} -> {_value(field.after)}")
    lines.append(summary_line(plan))
    return "\n".join(lines)


def render_markdown(plan: Plan, *, revision: str | None = None) -> str:
    title = f"### samops plan for `{revision[:12]}`" if revision else "### samops plan"
    lines = [title, "", summary_line(plan)]
    if plan.empty:
        return "\n".join(lines) + "\n"
    lines += ["", "| | kind | name | file |", "|---|---|---|---|"]
    for change in plan.changes:
        lines.append(f"| {change.action} | {change.kind} | `{change.name}` | `{change.file}` |")
    for change in (c for c in plan.changes if c.action == "update"):
        lines += [
            "",
            f"#### {change.kind} `{change.name}`",
            "",
            "| field | before | after |",
            "|---|---|---|",
        ]
        for field in change.fields:
            before = _value(field.before).replace("|", "\\|")
            after = _value(field.after).replace("|", "\\|")
            lines.append(f"| `{field.path}` | `{before}` | `{after}` |")
    return "\n".join(lines) + "\n"


def plan_to_json(plan: Plan, *, revision: str | None = None) -> dict[str, Any]:
    return {
        "version": PLAN_JSON_VERSION,
        "revision": revision,
        "summary": {a: plan.count(a) for a in ("create", "update", "delete")},
        "changes": [
            {
                "action": c.action,
                "kind": c.kind,
                "name": c.name,
                "file": c.file,
                "fields": [
                    {"path": f.path, "before": f.before, "after": f.after} for f in c.fields
                ],
            }
            for c in plan.changes
        ],
    }
