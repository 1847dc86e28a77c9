"""Diagnostics: the one shape every problem with a revision takes.

Load and validate never stop at the first problem. Each finding becomes a ``Diagnostic`` with
the file, line and column, the key path inside the document, a sentence saying what is wrong,
the offending value (shortened, and never for secret material) and a hint. The CLI renders them
as ``file:line:col: key.path: message`` and the HTTP API will serve the same JSON shape, so the
two can never drift apart.
"""

from __future__ import annotations

import enum
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

VALUE_PREVIEW_CHARS = 60


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Position:
    """A 1-based line and column inside a file, as editors show them."""

    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding about a revision.

    ``code`` is a stable identifier (``unknown-key``, ``missing-reference``...) for tools and
    tests; ``message`` is the sentence for people.
    """

    severity: Severity
    code: str
    message: str
    file: str = ""
    position: Position | None = None
    path: str = ""
    value: str | None = None
    hint: str | None = None
    related: tuple[str, ...] = field(default=())

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def location(self) -> str:
        """``file:line:col`` (as much of it as is known)."""
        if not self.file:
            return "<input>"
        if self.position is None:
            return self.file
        return f"{self.file}:{self.position.line}:{self.position.column}"

    def render(self) -> str:
        """One line (plus an indented hint) in the classic compiler format."""
        parts = [self.location()]
        if self.path:
            parts.append(self.path)
        head = ": ".join(parts)
        text = f"{head}: {self.severity.value}: {self.message}"
        if self.value is not None:
            text += f" (got {self.value})"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text

    def to_json(self) -> dict[str, Any]:
        """The stable JSON shape shared by the CLI and the HTTP API."""
        return {
            "severity": self.severity.value,
            "code": self.code,
            "file": self.file or None,
            "line": self.position.line if self.position else None,
            "column": self.position.column if self.position else None,
            "path": self.path or None,
            "message": self.message,
            "value": self.value,
            "hint": self.hint,
            "related": list(self.related),
        }


_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")


def mask_url_credentials(text: str) -> str:
    """``https://user:token@host/x`` -> ``https://***@host/x``, anywhere in ``text``."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)


def shorten(value: Any, limit: int = VALUE_PREVIEW_CHARS) -> str:
    """``repr`` of a value cut to ``limit`` characters, for quoting bad input in a message.
    Credentials inside URLs (``https://user:pass@host``) are masked."""
    if isinstance(value, str):
        value = mask_url_credentials(value)
    text = repr(value)
    if len(text) <= limit:
        return text
    return text[: limit - 5] + "...'" if text.startswith("'") else text[: limit - 3] + "..."


def join_path(parts: Sequence[str | int]) -> str:
    """``("spec", "plugins", 2, "name")`` -> ``spec.plugins[2].name``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


MORE_CODE = "more-diagnostics"
MAX_PER_FILE = 100
"""Diagnostics kept for one file; the rest are counted in one closing diagnostic."""
MAX_PER_REVISION = 1_000
"""Diagnostics kept for a whole revision (what the CLI prints, syncs.errors and status hold)."""


def capped(diagnostics: list[Diagnostic], limit: int, *, file: str = "") -> list[Diagnostic]:
    """The first ``limit`` diagnostics, and one more that counts the others (an error when
    an error was left out), so that no input makes an unbounded report."""
    if len(diagnostics) <= limit:
        return diagnostics
    rest = diagnostics[limit:]
    where = "in this file" if file else "in this revision"
    return [
        *diagnostics[:limit],
        Diagnostic(
            Severity.ERROR if any(d.is_error for d in rest) else Severity.WARNING,
            MORE_CODE,
            f"and {len(rest):,} more problems {where} (only the first {limit:,} are shown)",
            file=file,
            hint="fix these first; the rest are often the same mistake repeated",
        ),
    ]


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Stable reading order: by file, then position, errors before warnings on a tie."""

    def key(d: Diagnostic) -> tuple[str, int, int, int, str]:
        if d.code == MORE_CODE:  # the count of what was left out closes its file's list
            return (d.file, sys.maxsize, 0, 0, "")
        line = d.position.line if d.position else 0
        column = d.position.column if d.position else 0
        return (d.file, line, column, 0 if d.is_error else 1, d.path)

    return sorted(diagnostics, key=key)
