"""Plan renderers: a plan as text, Markdown and JSON.

Beside Plan (``plan.py`` computes, this module shows). ``render_text`` is terraform-like,
coloured on a terminal; ``render_markdown`` is for pull-request comments; ``plan_to_json`` is
documented in docs/cli.md (keys are only ever added). A review's renderers, which add risk
flags, are in ``review_render.py``.
"""

from __future__ import annotations

import json
from typing import Any

from reconciler.plan import PLAN_JSON_VERSION, Plan

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
