"""Rendering a validated revision for people (text) and for programs (json).

The JSON shape is documented in ``docs/cli.md`` and locked by a test; change it only by adding
keys.
"""

from __future__ import annotations

import json
from typing import Any

from reconciler.sam.revision import Revision

JSON_SCHEMA_VERSION = 1


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary(revision: Revision, *, strict: bool = False) -> str:
    errors, warnings = len(revision.errors), len(revision.warnings)
    counted = f"{_plural(revision.files, 'file')}, {_plural(len(revision.resources), 'resource')}"
    if errors or (strict and warnings):
        verdict = f"invalid: {_plural(errors, 'error')}, {_plural(warnings, 'warning')}"
        if strict and warnings and not errors:
            verdict += " (warnings are fatal with --strict)"
    else:
        verdict = "valid" + (f" ({_plural(warnings, 'warning')})" if warnings else "")
    return f"{counted}: {verdict}"


NOT_CROSS_CHECKED = (
    "references to other resources were not checked (one file alone): validate its folder "
    "to check them"
)


def as_text(revision: Revision, *, strict: bool = False) -> str:
    lines = [d.render() for d in revision.diagnostics]
    if not revision.references_checked:
        lines.append(NOT_CROSS_CHECKED)
    lines.append(summary(revision, strict=strict))
    return "\n".join(lines)


def as_json(revision: Revision, *, strict: bool = False) -> dict[str, Any]:
    passed = revision.valid and not (strict and revision.warnings)
    return {
        "version": JSON_SCHEMA_VERSION,
        "valid": passed,
        "revision": revision.revision,
        "files": revision.files,
        "references_checked": revision.references_checked,
        "errors": len(revision.errors),
        "warnings": len(revision.warnings),
        "resources": [
            {
                "kind": r.kind,
                "name": r.name,
                "file": r.file,
                "line": r.source.start.line,
                "complete": not r.partial,
            }
            for r in sorted(revision.resources, key=lambda r: (r.kind, r.name))
        ],
        "diagnostics": [d.to_json() for d in revision.diagnostics],
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=False)
