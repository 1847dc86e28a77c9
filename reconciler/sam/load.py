"""From YAML documents to typed resources, with every problem as a positioned diagnostic.

Second stage of Load/Validate, one file at a time (so results can be cached by blob SHA). For
each document: pick the kind's model, then walk the data along the model's fields to

- drop what Smarter's own files carry but its models ignore (``status``, and the four keys
  SAM.md lists), with a warning, keeping a description found there as the fallback description;
- normalise names and references exactly as Smarter does, warning with both spellings;

and finally validate with pydantic, translating each error into ``file:line:col: path``
form, with "did you mean" hints for unknown keys and no echo of secret material.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from reconciler.sam.base import (
    Capped,
    Metadata,
    NameRef,
    Sensitive,
    closest,
    normalise_name,
)
from reconciler.sam.diagnostics import Diagnostic, Position, Severity, shorten
from reconciler.sam.introspect import fields_by_alias, item_annotation, markers_of, model_of, unwrap
from reconciler.sam.kinds import (
    KINDS,
    Document,
    LLMClient,
    Secret,
)
from reconciler.sam.samops_annotations import misplaced
from reconciler.sam.secret_access import SecretAccess
from reconciler.sam.unmanaged import (
    NOT_ENFORCED_KEYS,
    REFUSED_KINDS,
    UNMANAGED_KINDS,
    not_acted_on,
    not_enforced,
    unmanaged_document,
)
from reconciler.sam.validation_errors import translate
from reconciler.sam.yamlread import Path, YamlDocument

# Keys that Smarter's own example files carry but its models ignore: accepted with a warning.
SMARTER_IGNORED_KEYS: dict[tuple[str, Path], str] = {
    ("LLMClient", ("spec", "config", "dnsVerificationStatus")): "set by Smarter's DNS check",
    ("Plugin", ("spec", "data", "description")): "Smarter ignores it",
    ("SqlPlugin", ("spec", "sqlData", "description")): "Smarter ignores it",
    ("Secret", ("spec", "config", "description")): "Smarter ignores it",
}


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """Policy knobs of validation (the daemon and the CLI pass the same ones)."""

    allow_plaintext_secrets: bool = False
    """Accept ``Secret.spec.config.value`` (with a warning) instead of refusing it."""
    secret_access: SecretAccess | None = None
    """What Secrets may read on the serving host; None when unknown here (then serving
    alone enforces it)."""


@dataclass(frozen=True, slots=True)
class Resource:
    """One validated document of a revision.

    ``partial`` resources had errors and were validated again without the offending parts;
    they exist only so cross-resource checks still see them (and report their other problems)
    in a revision that is invalid anyway."""

    model: Document
    source: YamlDocument
    partial: bool = False
    data: Mapping[str, Any] = field(default_factory=dict)
    """The document as read (keys by alias, names normalised), before validation: what
    reference checks read, so a document with an error elsewhere still has its references
    checked in the same run."""

    @property
    def kind(self) -> str:
        return self.model.KIND

    @property
    def has_spec(self) -> bool:
        """False for an identity-only stub of a document that could not be recovered."""
        return self.model.__dict__.get("spec") is not None

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def identity(self) -> tuple[str, str]:
        """(namespace, name): the key that must be unique in a revision."""
        return (self.model.NAMESPACE or self.model.KIND, self.model.name)

    @property
    def file(self) -> str:
        return self.source.file

    def position_of(self, path: Path, *, key: bool = False) -> Position:
        return self.source.position_of(path, key=key)

    def diagnostic(
        self, severity: Severity, code: str, message: str, path: Path, **details: Any
    ) -> Diagnostic:
        """A diagnostic about what this resource's document writes at ``path``."""
        return self.source.diagnostic(severity, code, message, path, **details)

    def where(self) -> str:
        return f"{self.file}:{self.source.start.line}"


# --- the pre-validation walk ----------------------------------------------------------------


class _Walk:
    """Drops Smarter-ignored keys and normalises names before pydantic sees the data."""

    def __init__(self, kind: str, document: YamlDocument, diagnostics: list[Diagnostic]) -> None:
        self.kind = kind
        self.document = document
        self.diagnostics = diagnostics
        self.fallback_description: str | None = None

    def warn(self, code: str, path: Path, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(
            self.document.diagnostic(Severity.WARNING, code, message, path, key=True, hint=hint)
        )

    def mapping(self, data: dict[str, Any], model: type[BaseModel], path: Path) -> dict[str, Any]:
        fields = fields_by_alias(model)
        out: dict[str, Any] = {}
        for key, value in data.items():
            key_path = (*path, key)
            info = fields.get(key)
            if info is None and (reason := SMARTER_IGNORED_KEYS.get((self.kind, key_path))):
                self.warn(
                    "ignored-key",
                    key_path,
                    f"the key {key!r} is ignored ({reason})",
                    hint="remove it; samops accepts it only for compatibility with Smarter",
                )
                if key == "description" and isinstance(value, str) and value.strip():
                    self.fallback_description = value.strip()
                continue
            if info is None and (self.kind, key_path) in NOT_ENFORCED_KEYS:
                refused = not_enforced(self.document, self.kind, key_path, value)
                if refused is not None:
                    self.diagnostics.append(refused)
                continue
            if info is None and key == "status":
                self.warn(
                    "ignored-key",
                    key_path,
                    "the key 'status' is ignored (it is output, written by the server)",
                    hint="remove it; status is never read from a manifest",
                )
                continue
            out[key] = value if info is None else self.value(value, info, key_path)
        return out

    def value(self, value: Any, info: FieldInfo, path: Path) -> Any:
        annotation = info.annotation
        markers = markers_of(info, annotation)
        if any(isinstance(m, NameRef) for m in markers):
            return self.name(value, path, sensitive=any(isinstance(m, Sensitive) for m in markers))
        for cap in (m for m in markers if isinstance(m, Capped)):
            if isinstance(value, int) and not isinstance(value, bool) and value > cap.maximum:
                self.warn(
                    "capped",
                    path,
                    f"{value:,} is over the maximum of {cap.maximum:,}: {cap.maximum:,} is used "
                    "(as Smarter does)",
                    hint=f"write {cap.maximum} or less to silence this warning",
                )
                return cap.maximum
        model = model_of(annotation)
        if model is not None and isinstance(value, dict):
            return self.mapping(value, model, path)
        item = item_annotation(annotation)
        if item is not None and isinstance(value, list):
            return self.items(value, item, path)
        return value

    def items(self, values: list[Any], item: Any, path: Path) -> list[Any]:
        _, markers = unwrap(item)
        if any(isinstance(m, NameRef) for m in markers):
            return [self.name(v, (*path, i)) for i, v in enumerate(values)]
        model = model_of(item)
        if model is None:
            return values
        return [
            self.mapping(v, model, (*path, i)) if isinstance(v, dict) else v
            for i, v in enumerate(values)
        ]

    def name(self, value: Any, path: Path, *, sensitive: bool = False) -> Any:
        if not isinstance(value, str):
            return value
        normal = normalise_name(value)
        if normal != value and sensitive:
            self.warn(
                "name-normalised",
                path,
                "this Secret name is read in snake_case form (lowercase, '_' for '-' and "
                "spaces); neither spelling is shown, as it may be a pasted credential",
                hint="write the name in lowercase snake_case to silence this warning",
            )
        elif normal != value:
            self.warn(
                "name-normalised",
                path,
                f"the name {value!r} is read as {normal!r} (Smarter's snake_case rule)",
                hint=f"write {normal!r} to silence this warning",
            )
        return normal


# --- entry point ----------------------------------------------------------------------------


def load_document(
    document: YamlDocument, options: LoadOptions
) -> tuple[Resource | None, list[Diagnostic]]:
    """Validate one YAML document as a SAM resource."""
    diagnostics: list[Diagnostic] = []
    data = document.data
    file = document.file
    if not isinstance(data, dict):
        return None, [
            Diagnostic(
                Severity.ERROR,
                "not-a-mapping",
                "a manifest must be a mapping with apiVersion, kind, metadata and spec",
                file=file,
                position=document.start,
                value=shorten(data),
            )
        ]
    kind = data.get("kind")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None and kind in (*UNMANAGED_KINDS, *REFUSED_KINDS):
        return None, unmanaged_document(document, str(kind))
    if model is None:
        known = (*KINDS, *UNMANAGED_KINDS, *REFUSED_KINDS)
        suggestion = closest(str(kind), known) if isinstance(kind, str) else None
        message = "the key 'kind' is missing" if kind is None else f"unknown kind {kind!r}"
        hint = (
            (f"did you mean {suggestion!r}? " if suggestion else "") + "kinds: " + ", ".join(KINDS)
        )
        return None, [
            document.diagnostic(Severity.ERROR, "unknown-kind", message, ("kind",), hint=hint)
        ]
    walk = _Walk(model.KIND, document, diagnostics)
    prepared = walk.mapping(data, model, ())
    if walk.fallback_description and isinstance(prepared.get("metadata"), dict):
        metadata = prepared["metadata"]
        if not (isinstance(metadata.get("description"), str) and metadata["description"].strip()):
            prepared["metadata"] = {**metadata, "description": walk.fallback_description}
    try:
        validated = model.model_validate(prepared)
    except ValidationError as exc:
        diagnostics.extend(translate(e, model, document) for e in exc.errors())
        recovered, more = _recover(model, prepared, exc, document)
        diagnostics.extend(more)
        return Resource(recovered, document, partial=True, data=prepared), diagnostics
    diagnostics.extend(_misplaced_annotations(validated, document))
    if isinstance(validated, LLMClient):
        diagnostics.extend(not_acted_on(document, prepared))
    if isinstance(validated, Secret) and validated.spec.config.value is not None:
        diagnostics.append(_plaintext_secret(document, options))
    if isinstance(validated, Secret) and options.secret_access is not None:
        diagnostics.extend(_outside_access(validated, document, options.secret_access))
    return Resource(validated, document, data=prepared), diagnostics


def _misplaced_annotations(model: Document, document: YamlDocument) -> list[Diagnostic]:
    """A samops annotation on a kind it does not apply to would be ignored: an error."""
    return [
        document.diagnostic(
            Severity.ERROR,
            "misplaced-annotation",
            f"the annotation {key!r} applies to {' and '.join(kinds)}, not to {model.KIND}",
            ("metadata", "annotations", index),
            hint="move it to the manifest it is about (docs/usage.md)",
        )
        for index, key, kinds in misplaced(model.KIND, model.metadata.annotations)
    ]


RECOVERY_ROUNDS = 4


_DROPPED = object()


def _may_be_consequence(loc: tuple[Any, ...], dropped: tuple[Any, ...]) -> bool:
    """Whether an error found after dropping ``dropped`` may only exist because of the drop:
    it is inside it, or a rule of a mapping that contained it (an ancestor), or about a
    sibling (``exactly one of``, placeholders needing parameters). Such errors are not
    reported; the ones that remain are genuinely independent."""
    while dropped and isinstance(dropped[-1], int):
        dropped = dropped[:-1]  # a list item stands for its whole list
    parent = dropped[:-1]
    return dropped[: len(loc)] == loc or loc[: len(parent)] == parent


def _recover(
    model: type[Document], data: dict[str, Any], exc: ValidationError, document: YamlDocument
) -> tuple[Document, list[Diagnostic]]:
    """Validate again without the parts that failed, so that the rest of the document still
    takes part in the revision's cross-resource checks, and report what the next rounds find
    (pydantic runs cross-field rules only once every field is valid). When that does not
    converge, a stub holding only the identity keeps references to this resource from
    cascading into false "missing" errors."""
    data = copy.deepcopy(data)
    dropped: list[tuple[Any, ...]] = []
    found: list[Diagnostic] = []
    for _ in range(RECOVERY_ROUNDS):
        targets = [
            tuple(e["loc"]) if e["type"] != "missing" else tuple(e["loc"])[:-1]
            for e in exc.errors()
        ]
        if any(not t for t in targets):
            break  # the document itself is unusable: nothing smaller to drop
        for target in targets:
            dropped.append(target)
            _drop(data, target)
        data = _purge(data)
        try:
            return model.model_validate(data), found
        except ValidationError as again:
            exc = again
        found.extend(
            translate(e, model, document)
            for e in exc.errors()
            if not any(_may_be_consequence(tuple(e["loc"]), d) for d in dropped)
        )
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    stub = model.model_construct(
        api_version="smarter.sh/v1",
        kind=model.KIND,
        metadata=Metadata.model_construct(name=str(name or "")),
        spec=None,
    )
    return stub, found


def _drop(data: Any, loc: tuple[Any, ...]) -> None:
    """Mark the value at ``loc`` for removal."""
    if not loc:
        return
    parent = data
    for part in loc[:-1]:
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            return
    last = loc[-1]
    in_dict = isinstance(parent, dict) and last in parent
    in_list = isinstance(parent, list) and isinstance(last, int) and last < len(parent)
    if in_dict or in_list:
        parent[last] = _DROPPED


def _purge(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _purge(v) for k, v in data.items() if v is not _DROPPED}
    if isinstance(data, list):
        return [_purge(v) for v in data if v is not _DROPPED]
    return data


def _outside_access(
    secret: Secret, document: YamlDocument, access: SecretAccess
) -> Iterator[Diagnostic]:
    source = secret.spec.config.value_from
    if source is None:
        return
    for key, value, judge in (
        ("env", source.env, access.env_refusal),
        ("file", source.file, access.file_refusal),
    ):
        refusal = judge(value) if value is not None else None
        if refusal is not None:
            path = ("spec", "config", "valueFrom", key)
            yield document.diagnostic(
                Severity.ERROR, "secret-not-allowed", refusal.message, path, hint=refusal.hint
            )


def _plaintext_secret(document: YamlDocument, options: LoadOptions) -> Diagnostic:
    path = ("spec", "config", "value")
    hint = (
        "seal it in place with 'samops secrets seal FILE', or use valueFrom: {env: NAME} "
        "or valueFrom: {file: /path}"
    )
    if options.allow_plaintext_secrets:
        message = (
            "this Secret holds its value in plaintext in git (allowed by --allow-plaintext-secrets)"
        )
        return document.diagnostic(
            Severity.WARNING, "plaintext-secret", message, path, key=True, hint=hint
        )
    message = (
        "plaintext secret values are refused (anyone who can read the repository can read them)"
    )
    hint += "; or start samops with --allow-plaintext-secrets"
    return document.diagnostic(
        Severity.ERROR, "plaintext-secret", message, path, key=True, hint=hint
    )
