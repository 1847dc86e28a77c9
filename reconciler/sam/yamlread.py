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

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from reconciler.sam.diagnostics import Diagnostic, Position, Severity, join_path

try:  # libyaml makes parsing several times faster; the pure-Python loader behaves the same.
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

Path = tuple[str | int, ...]

_SCALAR_TAGS = {
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:timestamp",
}
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """Bounds on one manifest file. Defaults fit hand-written manifests with a wide margin."""

    max_file_bytes: int = 1024 * 1024
    """Largest file read, in bytes (default 1 MiB)."""
    max_depth: int = 64
    """Deepest nesting of mappings and sequences."""
    max_alias_nodes: int = 10_000
    """Most nodes a file may reach through aliases (``*anchor``), counted after expansion,
    over all of its documents together (a file of thousands of documents each just under a
    per-document cap took half a minute)."""
    max_revision_alias_nodes: int = 100_000
    """The same, over all the files of a revision together (``validate_files``)."""
    max_documents: int = 1_000
    """Most YAML documents (``---``) in one file."""


@dataclass(slots=True)
class FileRead:
    """What reading one file gave, and how many nodes its aliases cost."""

    documents: list[YamlDocument]
    diagnostics: list[Diagnostic]
    alias_nodes: int = 0


@dataclass(slots=True)
class YamlDocument:
    """One YAML document of a file, as plain data with positions."""

    file: str
    index: int
    data: Any
    start: Position
    value_positions: dict[Path, Position] = field(default_factory=dict)
    key_positions: dict[Path, Position] = field(default_factory=dict)

    def position_of(self, path: Path, *, key: bool = False) -> Position:
        """Where ``path`` is written (its key when ``key``; list items have no key, so their
        value); the nearest written ancestor when it is absent."""
        first, second = (
            (self.key_positions, self.value_positions)
            if key
            else (self.value_positions, self.key_positions)
        )
        probe = tuple(path)
        while probe:
            found = first.get(probe) or second.get(probe)
            if found is not None:
                return found
            probe = probe[:-1]
        return self.start


class _Abort(Exception):
    """Stops reading a file; carries the diagnostic that explains why."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def _position(mark: Any) -> Position:
    return Position(line=mark.line + 1, column=mark.column + 1)


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
    converter = _Converter(file, limits, diagnostics, alias_budget)
    try:
        text = _decode(raw, file, limits)
        text = _scan(text, file, limits, diagnostics)
        documents = list(_convert_documents(text, converter))
    except _Abort as abort:
        return FileRead([], [*diagnostics, abort.diagnostic], converter.alias_nodes)
    return FileRead(documents, diagnostics, converter.alias_nodes)


def _error(
    code: str,
    file: str,
    message: str,
    *,
    position: Position | None = None,
    path: str = "",
    hint: str | None = None,
) -> Diagnostic:
    return Diagnostic(
        Severity.ERROR, code, message, file=file, position=position, path=path, hint=hint
    )


def _decode(raw: bytes, file: str, limits: ReadLimits) -> str:
    if len(raw) > limits.max_file_bytes:
        raise _Abort(
            _error(
                "file-too-large",
                file,
                f"the file is {len(raw):,} bytes, over the limit of "
                f"{limits.max_file_bytes:,} bytes",
                hint="split it into several files; manifests are usually a few kilobytes",
            )
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise _Abort(
            _error(
                "not-utf8",
                file,
                f"the file is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
                position=Position(line, column),
                hint="save the file as UTF-8",
            )
        ) from exc


def _syntax_error(exc: yaml.YAMLError, file: str) -> _Abort:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    context_mark = getattr(exc, "context_mark", None)
    if context_mark is not None and mark is not None and context_mark.line != mark.line:
        message += f"; it started at line {context_mark.line + 1}"
    return _Abort(
        _error(
            "yaml-syntax",
            file,
            message,
            position=_position(mark) if mark is not None else None,
            hint="check indentation and quoting around this position",
        )
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
    raise _Abort(_error("yaml-syntax", file, "too many YAML syntax problems in this file"))


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
        raise _Abort(_too_deep(file, limits, _position(mark))) from exc


def _too_deep(file: str, limits: ReadLimits, position: Position) -> Diagnostic:
    return _error(
        "too-deep",
        file,
        f"nesting is deeper than {limits.max_depth} levels",
        position=position,
        hint="manifests are a few levels deep; this looks generated or hostile",
    )


def _count_depth(text: str, file: str, limits: ReadLimits, *, loader: Any) -> None:
    depth = documents = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > limits.max_documents:
                raise _Abort(
                    _error(
                        "too-many-documents",
                        file,
                        f"this file holds more than {limits.max_documents:,} YAML documents",
                        position=_position(event.start_mark),
                        hint="split it into several files",
                    )
                )
        elif isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > limits.max_depth:
                raise _Abort(_too_deep(file, limits, _position(event.start_mark)))
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _convert_documents(text: str, converter: _Converter) -> Iterator[YamlDocument]:
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
            file=converter.file, index=index, data=None, start=_position(node.start_mark)
        )
        converter.document = document
        try:  # a fatal problem drops this document only; the file's others are still read
            document.data = converter.convert(node, (), depth=0, via_alias=False)
        except _Abort as abort:
            converter.diagnostics.append(abort.diagnostic)
            if abort.diagnostic.code == "alias-expansion":
                return
            continue
        yield document


class _Converter:
    """Turns one composed document into plain data, recording positions and enforcing limits."""

    def __init__(
        self,
        file: str,
        limits: ReadLimits,
        diagnostics: list[Diagnostic],
        alias_budget: int | None = None,
    ) -> None:
        self.file = file
        self.limits = limits
        self.diagnostics = diagnostics
        self.seen: set[int] = set()
        self.alias_nodes = 0
        self.alias_budget = limits.max_alias_nodes if alias_budget is None else alias_budget
        self.scalars = SafeConstructor()
        self.document: YamlDocument

    def convert(self, node: yaml.Node, path: Path, *, depth: int, via_alias: bool) -> Any:
        if depth > self.limits.max_depth:  # only reachable through self-referencing aliases
            raise _Abort(
                _error(
                    "too-deep",
                    self.file,
                    f"nesting is deeper than {self.limits.max_depth} levels "
                    "(a self-referencing alias?)",
                    position=_position(node.start_mark),
                    path=join_path(path[:3]),
                )
            )
        if id(node) in self.seen:
            via_alias = True
        self.seen.add(id(node))
        if via_alias:
            self.alias_nodes += 1
            if self.alias_nodes > self.alias_budget:
                revision_wide = self.alias_budget < self.limits.max_alias_nodes
                scope = (
                    f"the revision's files together expand aliases to more than "
                    f"{self.limits.max_revision_alias_nodes:,} nodes, reached in this file"
                    if revision_wide
                    else f"aliases expand to more than {self.limits.max_alias_nodes:,} nodes"
                )
                raise _Abort(
                    _error(
                        "alias-expansion",
                        self.file,
                        scope,
                        position=self.document.position_of(path),
                        path=join_path(path),
                        hint="this is the shape of a 'billion laughs' attack; write the values out",
                    )
                )
        if not via_alias:
            self.document.value_positions[path] = _position(node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth, via_alias)
        if isinstance(node, yaml.SequenceNode):
            self._check_tag(node, _SEQ_TAG, path)
            return [
                self.convert(item, (*path, i), depth=depth + 1, via_alias=via_alias)
                for i, item in enumerate(node.value)
            ]
        return self._scalar(node, path)

    def _check_tag(self, node: yaml.Node, expected: str, path: Path) -> None:
        if node.tag != expected:
            raise _Abort(
                _error(
                    "yaml-tag",
                    self.file,
                    f"the YAML tag {node.tag!r} is not allowed",
                    position=_position(node.start_mark),
                    path=join_path(path),
                    hint="manifests use plain mappings, lists, strings, numbers, booleans, dates",
                )
            )

    def _scalar(self, node: yaml.Node, path: Path) -> Any:
        if node.tag not in _SCALAR_TAGS:
            self._check_tag(node, "tag:yaml.org,2002:str", path)
        try:
            value = self.scalars.construct_object(node, deep=True)
        except Exception:  # PyYAML raises several types here; the value may be a secret
            kind = node.tag.rsplit(":", 1)[-1]
            raise _Abort(
                _error(
                    "yaml-value",
                    self.file,
                    f"this value cannot be read as a YAML {kind} (the value is not shown)",
                    position=_position(node.start_mark),
                    path=join_path(path),
                    hint=f"remove the !!{kind} tag or quote the value",
                )
            ) from None
        if isinstance(value, dt.datetime | dt.date | int | float | bool | str) or value is None:
            return value
        raise _Abort(
            _error(
                "yaml-tag",
                self.file,
                "this value has an unsupported type",
                position=_position(node.start_mark),
                path=join_path(path),
            )
        )

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int, via_alias: bool) -> Any:
        self._check_tag(node, _MAP_TAG, path)
        result: dict[str, Any] = {}
        first_seen: dict[str, Position] = {}
        merged: list[dict[str, Any]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(self._merge_sources(value_node, path, depth, via_alias))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise _Abort(
                    _error(
                        "yaml-key",
                        self.file,
                        "mapping keys must be plain scalars",
                        position=_position(key_node.start_mark),
                        path=join_path(path),
                    )
                )
            key = str(key_node.value)
            key_path = (*path, key)
            key_position = _position(key_node.start_mark)
            if key in first_seen:
                self.diagnostics.append(
                    Diagnostic(
                        Severity.ERROR,
                        "duplicate-key",
                        f"the key {key!r} appears twice in this mapping "
                        f"(first at line {first_seen[key].line})",
                        file=self.file,
                        position=key_position,
                        path=join_path(key_path),
                        hint="YAML would silently keep only the last one; remove one of them",
                    )
                )
            else:
                first_seen[key] = key_position
            if not via_alias:
                self.document.key_positions[key_path] = key_position
            result[key] = self.convert(value_node, key_path, depth=depth + 1, via_alias=via_alias)
        for source in merged:  # explicit keys win over merged ones, as in YAML 1.1
            for key, value in source.items():
                result.setdefault(key, value)
        return result

    def _merge_sources(
        self, node: yaml.Node, path: Path, depth: int, via_alias: bool
    ) -> list[dict[str, Any]]:
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        sources = []
        for item in items:
            value = self.convert(item, path, depth=depth + 1, via_alias=True)
            if not isinstance(value, dict):
                raise _Abort(
                    _error(
                        "yaml-merge",
                        self.file,
                        "'<<' must merge a mapping",
                        position=_position(item.start_mark),
                        path=join_path(path),
                    )
                )
            sources.append(value)
        return sources
