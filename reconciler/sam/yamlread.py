"""Safe, bounded YAML reading with a position for every key path.

First stage of Load. Manifest files are untrusted input (anyone who can open a pull request
can write one), so this module bounds everything before Python objects exist:

- the file size is checked before parsing;
- the event stream is scanned once for nesting depth, because the C composer recurses and a
  deeply nested file would overflow the C stack rather than raise;
- nodes reached through aliases are counted while converting, so a "billion laughs" document
  stops after ``max_alias_nodes`` instead of expanding exponentially;
- only the core YAML tags are accepted (no Python objects, no binary, no sets);
- duplicate keys inside a mapping are reported (plain loaders silently keep the last one).

The output is plain data (dicts, lists, scalars) plus a map from key path to position, which
validation uses to put ``file:line:col`` on every message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from reconciler.sam.diagnostics import Diagnostic, Position, Severity
from reconciler.sam.yaml_nodes import (
    Converter,
    Path,
    ReadAbort,
    ReadLimits,
    YamlDocument,
    mark_position,
    read_abort,
    read_error,
)

__all__ = [
    "FileRead",
    "Path",
    "ReadLimits",
    "YamlDocument",
    "read_yaml_documents",
    "read_yaml_file",
]

try:  # libyaml makes parsing several times faster; the pure-Python loader behaves the same.
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]


@dataclass(slots=True)
class FileRead:
    """What reading one file gave, and how many nodes its aliases cost."""

    documents: list[YamlDocument]
    diagnostics: list[Diagnostic]
    alias_nodes: int = 0


def read_yaml_documents(
    raw: bytes, file: str, limits: ReadLimits | None = None
) -> tuple[list[YamlDocument], list[Diagnostic]]:
    """Parse every document of one file. Never raises for bad input: problems come back as
    diagnostics, and a file with a fatal problem yields no documents."""
    read = read_yaml_file(raw, file, limits)
    return read.documents, read.diagnostics


def read_yaml_file(
    raw: bytes, file: str, limits: ReadLimits | None = None, *, alias_budget: int | None = None
) -> FileRead:
    """``read_yaml_documents`` with the aliases' cost; ``alias_budget`` (below the file's own
    cap) is what the revision has left: over it, the message says the revision's cap."""
    limits = limits or ReadLimits()
    diagnostics: list[Diagnostic] = []
    converter = Converter(file, limits, diagnostics, alias_budget)
    try:
        text = _decode(raw, file, limits)
        text = _scan(text, file, limits, diagnostics)
        documents = list(_convert_documents(text, converter))
    except ReadAbort as abort:
        return FileRead([], [*diagnostics, abort.diagnostic], converter.alias_nodes)
    return FileRead(documents, diagnostics, converter.alias_nodes)


def _decode(raw: bytes, file: str, limits: ReadLimits) -> str:
    if len(raw) > limits.max_file_bytes:
        raise read_abort(
            "file-too-large",
            file,
            f"the file is {len(raw):,} bytes, over the limit of {limits.max_file_bytes:,} bytes",
            hint="split it into several files; manifests are usually a few kilobytes",
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise read_abort(
            "not-utf8",
            file,
            f"the file is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            position=Position(line, column),
            hint="save the file as UTF-8",
        ) from exc


def _syntax_error(exc: yaml.YAMLError, file: str) -> ReadAbort:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    context_mark = getattr(exc, "context_mark", None)
    if context_mark is not None and mark is not None and context_mark.line != mark.line:
        message += f"; it started at line {context_mark.line + 1}"
    return read_abort(
        "yaml-syntax",
        file,
        message,
        position=mark_position(mark) if mark is not None else None,
        hint="check indentation and quoting around this position",
    )


MAX_REPAIRS_PER_FILE = 20
_KEY_LINE = re.compile(
    r"^(?P<lead>\s*(?:-\s+)?)(?P<key>[A-Za-z0-9_.$/-]+):[ \t]+(?P<value>[^\s'\"|>{\[&*!#%@`].*)$"
)


def _scan(text: str, file: str, limits: ReadLimits, diagnostics: list[Diagnostic]) -> str:
    """Scan the event stream (no recursion, no objects) for depth and syntax errors.

    One authoring mistake is repaired rather than refused, with a warning: an unquoted colon
    followed by a space inside a plain mapping value (``description: Note: see below``). YAML
    forbids it, yet Smarter's own published examples contain it and must load. Any other
    syntax error is fatal for the file."""
    for _ in range(MAX_REPAIRS_PER_FILE + 1):
        try:
            _check_depth(text, file, limits)
            return text
        except yaml.YAMLError as exc:
            repaired = _repair_unquoted_colon(text, exc)
            if repaired is None:
                raise _syntax_error(exc, file) from exc
            text, position, key = repaired
            diagnostics.append(
                Diagnostic(
                    Severity.WARNING,
                    "yaml-unquoted-colon",
                    f"the value of {key!r} contains ': ', which YAML does not allow in an unquoted "
                    "string; samops reads the whole value as text",
                    file=file,
                    position=position,
                    path="",
                    hint="quote the value, or use a block scalar ('>' or '|')",
                )
            )
    raise ReadAbort(read_error("yaml-syntax", file, "too many YAML syntax problems in this file"))


def _repair_unquoted_colon(text: str, exc: yaml.YAMLError) -> tuple[str, Position, str] | None:
    mark = getattr(exc, "problem_mark", None)
    problem = str(getattr(exc, "problem", ""))
    if mark is None or not problem.startswith("mapping values are not allowed"):
        return None
    lines = text.split("\n")
    for start in range(mark.line, max(mark.line - 50, -1), -1):
        match = _KEY_LINE.match(lines[start])
        if match is None:
            continue
        key_column = len(match["lead"])
        end = start + 1
        while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > key_column):
            end += 1
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1
        if end <= mark.line:
            return None  # the error is not inside this value
        value = _fold_plain([match["value"], *lines[start + 1 : end]])
        lines[start] = f"{match['lead']}{match['key']}: {json.dumps(value)}"
        for i in range(start + 1, end):
            lines[i] = ""
        return "\n".join(lines), Position(start + 1, key_column + 1), match["key"]
    return None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _fold_plain(lines: list[str]) -> str:
    """Line folding of a plain scalar: single breaks become spaces, blank lines newlines."""
    out = ""
    for line in lines:
        stripped = line.strip()
        if not stripped:
            out += "\n"
        elif out and not out.endswith("\n"):
            out += " " + stripped
        else:
            out += stripped
    return out


def _check_depth(text: str, file: str, limits: ReadLimits) -> None:
    try:
        _count_depth(text, file, limits, loader=_Loader)
    except yaml.YAMLError as exc:
        if "maximum nesting depth" not in str(getattr(exc, "problem", "")):
            raise
        # libyaml >= 0.2.5 stops flow nesting itself (at 1,000 levels) before our count sees
        # level 65; the message stays ours: the position of the level past our limit, found
        # by counting again, in pure Python, over the text up to where libyaml stopped.
        mark = exc.problem_mark  # type: ignore[attr-defined]
        _count_depth(text[: mark.index], file, limits, loader=yaml.SafeLoader)
        raise ReadAbort(_too_deep(file, limits, mark_position(mark))) from exc


def _too_deep(file: str, limits: ReadLimits, position: Position) -> Diagnostic:
    return read_error(
        "too-deep",
        file,
        f"nesting is deeper than {limits.max_depth} levels",
        position=position,
        hint="manifests are a few levels deep; this looks generated or hostile",
    )


_DEPTH_STEPS: dict[type, int] = {
    yaml.MappingStartEvent: 1,
    yaml.SequenceStartEvent: 1,
    yaml.MappingEndEvent: -1,
    yaml.SequenceEndEvent: -1,
}
"""What each event does to the depth, by its exact class (PyYAML's events are not
subclassed): one dictionary look-up per event, where ``isinstance`` tests took three."""


def _count_depth(text: str, file: str, limits: ReadLimits, *, loader: Any) -> None:
    depth = documents = 0
    steps = _DEPTH_STEPS
    for event in yaml.parse(text, Loader=loader):
        step = steps.get(type(event))
        if step is not None:
            depth += step
            if depth > limits.max_depth:
                raise ReadAbort(_too_deep(file, limits, mark_position(event.start_mark)))
        elif type(event) is yaml.DocumentStartEvent:
            documents += 1
            if documents > limits.max_documents:
                raise read_abort(
                    "too-many-documents",
                    file,
                    f"this file holds more than {limits.max_documents:,} YAML documents",
                    position=mark_position(event.start_mark),
                    hint="split it into several files",
                )


def _convert_documents(text: str, converter: Converter) -> Iterator[YamlDocument]:
    """Every document, through one converter: the alias budget is the file's, not each
    document's. A spent budget ends the file (each later document would fail at once)."""
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, converter.file) from exc
    for index, node in enumerate(nodes):
        if node is None:
            continue  # an empty document, e.g. after a trailing '---'
        document = YamlDocument(
            file=converter.file, index=index, data=None, start=mark_position(node.start_mark)
        )
        converter.document = document
        try:  # a fatal problem drops this document only; the file's others are still read
            document.data = converter.convert(node, (), depth=0, via_alias=False)
        except ReadAbort as abort:
            converter.diagnostics.append(abort.diagnostic)
            if abort.diagnostic.code == "alias-expansion":
                return
            continue
        yield document
