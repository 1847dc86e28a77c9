"""Rendering a review (``review.py``) for a pull-request comment, a terminal, or a program.

The markdown is made to be posted as a PR comment and updated in place (it starts with a
marker line the shipped CI integrations look for): a summary table per kind, the risk flags,
then one section per changed resource in plan order. Long texts (system prompts) are shown as
unified diffs, one sentence a line so that an edit shows as the sentence it changed; sections
with many lines are collapsible; the whole comment is capped in size (GitHub refuses comments
over 65,536 characters) with a note saying what was cut and how to see all of it.

The JSON form is documented in docs/review.md; its keys are only ever added.
"""

from __future__ import annotations

import difflib
import html
import json
import re
from collections.abc import Iterable
from typing import Any

from reconciler.desired import KIND_ORDER
from reconciler.plan import Change, FieldChange
from reconciler.plan_render import plan_to_json, render_text, summary_line
from reconciler.review import LEVELS, Review

MARKER = "<!-- samops-plan -->"
REVIEW_JSON_VERSION = 1
DEFAULT_MAX_CHARS = 60_000
LONG_TEXT_CHARS = 80
"""A string longer than this, or with a line break, is shown as a diff, not in a table."""
OPEN_SECTION_LINES = 12
"""A resource section longer than this is collapsed under <details>."""
LEVEL_BADGES = {"high": "🔴 high", "medium": "🟠 medium", "low": "⚪ low"}
SYMBOLS = {"create": "+", "update": "~", "delete": "-"}
SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+")


def _short(revision: str) -> str:
    return revision[:12]


def _code(value: Any, limit: int = 120) -> str:
    """A value for a table cell: JSON, shortened, HTML-escaped inside <code>."""
    text = json.dumps(value, ensure_ascii=False)
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return "<code>" + html.escape(text, quote=False).replace("|", "&#124;") + "</code>"


def _is_long_text(value: Any) -> bool:
    return isinstance(value, str) and (len(value) > LONG_TEXT_CHARS or "\n" in value)


def _sentences(text: str) -> list[str]:
    return [s for line in text.splitlines() for s in SENTENCE_END.split(line.strip()) if s]


def text_diff(path: str, before: Any, after: Any) -> list[str]:
    """A unified diff of two texts, one sentence a line, in a ```diff block."""
    old = _sentences(before) if isinstance(before, str) else []
    new = _sentences(after) if isinstance(after, str) else []
    body = list(
        difflib.unified_diff(old, new, f"{path} (base)", f"{path} (head)", n=2, lineterm="")
    )
    return ["```diff", *body, "```"]


def _field_lines(fields: Iterable[FieldChange], *, action: str) -> list[str]:
    """A before/after table for short values, then a diff per long text."""
    table: list[str] = []
    diffs: list[str] = []
    for field in fields:
        if action == "create" and field.after is None:
            continue  # an unset optional field of a new resource says nothing
        if _is_long_text(field.before) or _is_long_text(field.after):
            diffs += ["", *text_diff(field.path, field.before, field.after)]
        elif action == "create":
            table.append(f"| `{field.path}` | {_code(field.after)} |")
        else:
            table.append(f"| `{field.path}` | {_code(field.before)} | {_code(field.after)} |")
    if table:
        heading = (
            ["| field | value |", "|---|---|"]
            if action == "create"
            else ["| field | base | head |", "|---|---|---|"]
        )
        table = ["", *heading, *table]
    return table + diffs


def _section(change: Change) -> list[str]:
    name, file = html.escape(change.name, quote=False), html.escape(change.file, quote=False)
    title = (
        f"{SYMBOLS[change.action]} {change.action} {change.kind} "
        f"<code>{name}</code> (<code>{file}</code>)"
    )
    if change.action == "delete":
        return [f"- {title}"]
    lines = _field_lines(change.fields, action=change.action)
    if len(lines) > OPEN_SECTION_LINES or change.action == "create":
        count = f"{len(change.fields)} field{'s' if len(change.fields) != 1 else ''}"
        return [f"<details><summary>{title}: {count}</summary>", *lines, "", "</details>"]
    return [f"**{title}**", *lines]


def _kind_table(review: Review) -> list[str]:
    rows = []
    for kind in KIND_ORDER:
        counts = [
            sum(1 for c in review.plan.changes if c.kind == kind and c.action == action)
            for action in ("create", "update", "delete")
        ]
        if any(counts):
            rows.append(f"| {kind} | {counts[0]} | {counts[1]} | {counts[2]} |")
    return ["| kind | added | changed | removed |", "|---|---:|---:|---:|", *rows]


def _flag_summary(review: Review) -> str:
    if not review.flags:
        return "No risk flags."
    counts = [
        f"{sum(1 for f in review.flags if f.level == level)} {level}"
        for level in LEVELS
        if any(f.level == level for f in review.flags)
    ]
    return "Risk flags: " + ", ".join(counts) + "."


def render_review_markdown(review: Review, *, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    lines = [MARKER, f"### samops plan: `{_short(review.base)}` → `{_short(review.head)}`", ""]
    if review.base_errors:
        lines += [
            f"> The base revision has {review.base_errors} error(s); its valid resources are "
            "compared.",
            "",
        ]
    if not review.head_valid:
        lines += [
            f"**The head revision is invalid ({len(review.head_errors)} error(s)): samops "
            "would not apply it.** Fix these first:",
            "",
            "```",
            *(d.render() for d in review.head_errors),
            "```",
        ]
        return _capped(lines, [], max_chars, review)
    lines.append(
        f"**{summary_line(review.plan).replace('the database', 'the base')}** "
        f"{_flag_summary(review)}"
    )
    if review.plan.empty:
        return _capped(lines, [], max_chars, review)
    lines += ["", *_kind_table(review)]
    if review.flags:
        lines += [
            "",
            "#### Risk flags",
            "",
            "| level | flag | resource | why |",
            "|---|---|---|---|",
        ]
        for flag in review.flags:
            resource = (
                f"{flag.kind} <code>{html.escape(flag.name, quote=False)}</code>"
                if flag.name
                else "-"
            )
            reason = html.escape(flag.reason, quote=False).replace("|", "&#124;")
            lines.append(f"| {LEVEL_BADGES[flag.level]} | `{flag.code}` | {resource} | {reason} |")
    lines += ["", "#### Changes"]
    sections = [["", *_section(change)] for change in review.plan.changes]
    return _capped(lines, sections, max_chars, review)


def _capped(lines: list[str], sections: list[list[str]], max_chars: int, review: Review) -> str:
    """The head, then as many whole sections as fit under ``max_chars``, then a note."""
    text = "\n".join(lines)
    reserve = 400  # room for the note
    shown = 0
    for section in sections:
        block = "\n" + "\n".join(section)
        if len(text) + len(block) > max_chars - reserve:
            break
        text += block
        shown += 1
    if shown < len(sections):
        text += (
            f"\n\n> Output capped at {max_chars:,} characters: {len(sections) - shown} of "
            f"{len(sections)} changed resources are not shown. See all of them with "
            f"`samops plan --base {_short(review.base)} --head {_short(review.head)} "
            "--format json`."
        )
    return text + "\n"


def render_review_text(review: Review, *, color: bool = False) -> str:
    lines = [f"samops plan {_short(review.base)}..{_short(review.head)}"]
    if not review.head_valid:
        lines += [d.render() for d in review.head_errors]
        lines.append(f"The head revision is invalid: {len(review.head_errors)} error(s).")
        return "\n".join(lines)
    lines.append(render_text(review.plan, color=color))
    for flag in review.flags:
        where = f"{flag.kind} {flag.name}" if flag.name else "the revision"
        lines.append(f"risk {flag.level}: {flag.code}: {where}: {flag.reason}")
    lines.append(_flag_summary(review))
    return "\n".join(lines)


def review_to_json(review: Review) -> dict[str, Any]:
    plan = plan_to_json(review.plan, revision=review.head)
    return {
        "version": REVIEW_JSON_VERSION,
        "base": review.base,
        "head": review.head,
        "valid": review.head_valid,
        "errors": [d.to_json() for d in review.head_errors],
        "base_errors": review.base_errors,
        "summary": plan["summary"],
        "risk": {level: sum(1 for f in review.flags if f.level == level) for level in LEVELS},
        "flags": [
            {
                "level": f.level,
                "code": f.code,
                "kind": f.kind,
                "name": f.name,
                "reason": f.reason,
            }
            for f in review.flags
        ],
        "changes": plan["changes"],
    }
