"""Sealing plaintext Secret manifests in place (``samops secrets seal FILE...``).

Beside the pipeline: a one-time migration for repositories that came from Smarter, whose
Secrets hold their value in plaintext (which samops refuses). Each ``spec.config.value`` of a
Secret document becomes ``encryptedValue``, sealed to the daemon's public key and bound to the
Secret's name; only those two spans of text change, so comments, order, quoting and the other
documents of the file stay as they were. The new text is parsed again before it replaces the
file (written to a temporary file, then renamed), so a file is rewritten whole or not at all.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from reconciler.errors import SealingError
from reconciler.sam.base import normalise_name
from reconciler.sealing import seal


@dataclass(frozen=True, slots=True)
class Sealed:
    """One Secret whose value was sealed: its name and the line it is on."""

    name: str
    line: int


@dataclass(frozen=True, slots=True)
class _Edit:
    start: int
    end: int
    text: str


def _child(node: yaml.Node, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return key_node, value_node
    return None


def _plaintext_value(document: yaml.Node) -> tuple[str, yaml.Node, yaml.Node] | None:
    """(name, key node, value node) of a Secret document's plaintext value, if it has one."""
    kind = _child(document, "kind")
    if kind is None or not isinstance(kind[1], yaml.ScalarNode) or kind[1].value != "Secret":
        return None
    metadata = _child(document, "metadata")
    name = _child(metadata[1], "name") if metadata is not None else None
    spec = _child(document, "spec")
    config = _child(spec[1], "config") if spec is not None else None
    value = _child(config[1], "value") if config is not None else None
    if name is None or value is None or not isinstance(name[1], yaml.ScalarNode):
        return None
    if not isinstance(value[1], yaml.ScalarNode):
        raise SealingError(f"the value of Secret {name[1].value!r} is not text; seal it by hand")
    return normalise_name(str(name[1].value)), value[0], value[1]


def seal_text(text: str, public_key: str) -> tuple[str, list[Sealed]]:
    """``text`` with every plaintext Secret value sealed, and what was sealed."""
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise SealingError(f"not valid YAML ({type(exc).__name__}); nothing was changed") from exc
    edits, sealed = [], []
    for document in documents:
        found = _plaintext_value(document) if document is not None else None
        if found is None:
            continue
        name, key, value = found
        plaintext = yaml.safe_load(text[value.start_mark.index : value.end_mark.index])
        if not isinstance(plaintext, str) or not plaintext:
            raise SealingError(f"the value of Secret {name!r} is empty or not text")
        ciphertext = json.dumps(seal(plaintext, secret_name=name, public_key=public_key))
        replaced = text[value.start_mark.index : value.end_mark.index]
        ending = replaced[len(replaced.rstrip("\n")) :]  # a block scalar keeps its line break
        edits.append(_Edit(value.start_mark.index, value.end_mark.index, ciphertext + ending))
        edits.append(_Edit(key.start_mark.index, key.end_mark.index, "encryptedValue"))
        sealed.append(Sealed(name, key.start_mark.line + 1))
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        text = text[: edit.start] + edit.text + text[edit.end :]
    return text, sealed


def seal_file(path: Path, public_key: str) -> list[Sealed]:
    """Seal the plaintext Secret values of one file in place; what was sealed."""
    try:
        original = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SealingError(f"{path}: cannot be read ({type(exc).__name__})") from exc
    try:
        text, sealed = seal_text(original, public_key)
    except SealingError as exc:
        raise SealingError(f"{path}: {exc}") from exc
    if not sealed:
        return []
    try:
        list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:  # a bug here must never leave a broken file
        raise SealingError(f"{path}: the sealed text would not parse; nothing was changed") from exc
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise SealingError(f"{path}: cannot be written ({exc.strerror})") from exc
    return sealed
