"""From composed YAML nodes to plain data, with a position for every key path, within limits.

Part of Load, used by ``yamlread.py`` (which reads and checks the text first). The converter
accepts only the core YAML tags, reports duplicate keys, resolves merge keys, and counts the
nodes reached through aliases against the file's (and the revision's) budget, so a "billion
laughs" document stops early.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from reconciler.sam.diagnostics import Diagnostic, Position, Severity, join_path

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

    def diagnostic(
        self,
        severity: Severity,
        code: str,
        message: str,
        path: Path,
        *,
        key: bool = False,
        **details: Any,
    ) -> Diagnostic:
        """A diagnostic about what is written at ``path`` (its key when ``key``)."""
        position = self.position_of(path, key=key)
        return Diagnostic(
            severity,
            code,
            message,
            file=self.file,
            position=position,
            path=join_path(path),
            **details,
        )


class ReadAbort(Exception):
    """Stops reading a file; carries the diagnostic that explains why."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


_POSITIONS: dict[tuple[int, int], Position] = {}
MAX_SHARED_POSITIONS = 100_000


def mark_position(mark: Any) -> Position:
    """The position of a PyYAML mark. Positions are immutable and few distinct ones occur
    (manifests are short and narrow), so they are shared: reading 20,000 files makes 640,000
    of them, a tenth of the parse's time and most of its positions' memory when each was
    new (measured)."""
    key = (mark.line, mark.column)
    found = _POSITIONS.get(key)
    if found is None:
        found = Position(line=mark.line + 1, column=mark.column + 1)
        if len(_POSITIONS) < MAX_SHARED_POSITIONS:
            _POSITIONS[key] = found
    return found


def read_error(
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


def read_abort(code: str, file: str, message: str, **details: Any) -> ReadAbort:
    """The exception that stops reading a file, carrying ``read_error``'s diagnostic."""
    return ReadAbort(read_error(code, file, message, **details))


class Converter:
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
            raise self._abort(
                "too-deep",
                f"nesting is deeper than {self.limits.max_depth} levels "
                "(a self-referencing alias?)",
                node,
                path[:3],
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
                raise read_abort(
                    "alias-expansion",
                    self.file,
                    scope,
                    position=self.document.position_of(path),
                    path=join_path(path),
                    hint="this is the shape of a 'billion laughs' attack; write the values out",
                )
        if not via_alias:
            self.document.value_positions[path] = mark_position(node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth, via_alias)
        if isinstance(node, yaml.SequenceNode):
            self._check_tag(node, _SEQ_TAG, path)
            return [
                self.convert(item, (*path, i), depth=depth + 1, via_alias=via_alias)
                for i, item in enumerate(node.value)
            ]
        return self._scalar(node, path)

    def _abort(
        self, code: str, message: str, node: yaml.Node, path: Path, hint: str | None = None
    ) -> ReadAbort:
        """Stops reading this file at ``node``."""
        position = mark_position(node.start_mark)
        return read_abort(
            code, self.file, message, position=position, path=join_path(path), hint=hint
        )

    def _check_tag(self, node: yaml.Node, expected: str, path: Path) -> None:
        if node.tag != expected:
            raise self._abort(
                "yaml-tag",
                f"the YAML tag {node.tag!r} is not allowed",
                node,
                path,
                hint="manifests use plain mappings, lists, strings, numbers, booleans, dates",
            )

    def _scalar(self, node: yaml.Node, path: Path) -> Any:
        if node.tag not in _SCALAR_TAGS:
            self._check_tag(node, "tag:yaml.org,2002:str", path)
        try:
            value = self.scalars.construct_object(node, deep=True)
        except Exception:  # PyYAML raises several types here; the value may be a secret
            kind = node.tag.rsplit(":", 1)[-1]
            raise self._abort(
                "yaml-value",
                f"this value cannot be read as a YAML {kind} (the value is not shown)",
                node,
                path,
                hint=f"remove the !!{kind} tag or quote the value",
            ) from None
        if isinstance(value, dt.datetime | dt.date | int | float | bool | str) or value is None:
            return value
        raise self._abort("yaml-tag", "this value has an unsupported type", node, path)

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
                raise self._abort("yaml-key", "mapping keys must be plain scalars", key_node, path)
            key = str(key_node.value)
            key_path = (*path, key)
            key_position = mark_position(key_node.start_mark)
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
                raise self._abort("yaml-merge", "'<<' must merge a mapping", item, path)
            sources.append(value)
        return sources
