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
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from reconciler.sam.base import (
    ACCOUNT_NUMBER_PATTERN,
    NAME_PATTERN,
    SEMVER_PATTERN,
    Capped,
    Metadata,
    NameRef,
    Sensitive,
    closest,
    normalise_name,
)
from reconciler.sam.diagnostics import Diagnostic, Position, Severity, join_path, shorten
from reconciler.sam.kinds import (
    DIGEST_PATTERN,
    ENV_NAME_PATTERN,
    HEADER_NAME_PATTERN,
    KINDS,
    PARAMETER_NAME,
    Document,
    Secret,
)
from reconciler.sam.secret_access import SecretAccess
from reconciler.sam.yamlread import Path, YamlDocument

# Keys that Smarter's own example files carry but its models ignore: accepted with a warning.
SMARTER_IGNORED_KEYS: dict[tuple[str, Path], str] = {
    ("LLMClient", ("spec", "config", "dnsVerificationStatus")): "set by Smarter's DNS check",
    ("Plugin", ("spec", "data", "description")): "Smarter ignores it",
    ("SqlPlugin", ("spec", "sqlData", "description")): "Smarter ignores it",
    ("Secret", ("spec", "config", "description")): "Smarter ignores it",
}
PATTERN_MEANINGS = {
    NAME_PATTERN: "expected a snake_case name: lowercase letters, digits and '_'",
    SEMVER_PATTERN: "expected a SemVer 2.0 version such as 1.2.0 or 2.0.0-beta.1",
    ACCOUNT_NUMBER_PATTERN: "expected an account number such as 1234-5678-9012",
    DIGEST_PATTERN: "expected sha256:<64 hex digits> or sha512:<128 hex digits>",
    PARAMETER_NAME: "expected an identifier: letters, digits and '_', not starting with a digit",
    ENV_NAME_PATTERN: "expected an environment variable name such as DB_PASSWORD",
    HEADER_NAME_PATTERN: "expected an HTTP header name such as X-Api-Version",
}
KEYS_THAT_LOOK_LIKE_CREDENTIALS = {"key", "apikey", "api_key", "token", "value", "secret"}


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
        return (self.model.NAMESPACE, self.model.name)

    @property
    def file(self) -> str:
        return self.source.file

    def position_of(self, path: Path, *, key: bool = False) -> Position:
        return self.source.position_of(path, key=key)

    def where(self) -> str:
        return f"{self.file}:{self.source.start.line}"


# --- model introspection -------------------------------------------------------------------


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """Strip ``Annotated`` and ``X | None``; return the core type and the markers found."""
    markers: list[Any] = []
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation, *extra = typing.get_args(annotation)
            markers.extend(extra)
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation, markers
            annotation = options[0]
        else:
            return annotation, markers


def _fields_by_alias(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return {(info.alias or name): info for name, info in model.model_fields.items()}


def _model_of(annotation: Any) -> type[BaseModel] | None:
    core, _ = _unwrap(annotation)
    return core if isinstance(core, type) and issubclass(core, BaseModel) else None


def _item_annotation(annotation: Any) -> Any | None:
    core, _ = _unwrap(annotation)
    return typing.get_args(core)[0] if typing.get_origin(core) is list else None


def _markers(info: FieldInfo, annotation: Any) -> list[Any]:
    _, inner = _unwrap(annotation)
    return [*info.metadata, *inner]


def model_at(root: type[BaseModel], loc: Iterable[Any]) -> type[BaseModel] | None:
    """The model class whose mapping sits at ``loc`` (for suggesting valid keys)."""
    model: type[BaseModel] | None = root
    annotation: Any = None
    for part in loc:
        if isinstance(part, int):
            annotation = _item_annotation(annotation) if annotation is not None else None
            model = _model_of(annotation) if annotation is not None else None
            continue
        if model is None:
            return None
        info = _fields_by_alias(model).get(str(part))
        if info is None:
            return None
        annotation = info.annotation
        model = _model_of(annotation)
    return model


def is_sensitive(root: type[BaseModel], loc: tuple[Any, ...]) -> bool:
    """True when ``loc`` is (inside) a field marked ``Sensitive`` or belongs to a Secret."""
    if root is Secret and loc[:1] == ("spec",):
        return True
    parent = model_at(root, loc[:-1]) if loc else None
    if parent is None or not loc or isinstance(loc[-1], int):
        return False
    info = _fields_by_alias(parent).get(str(loc[-1]))
    return info is not None and any(
        isinstance(m, Sensitive) for m in _markers(info, info.annotation)
    )


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
            Diagnostic(
                Severity.WARNING,
                code,
                message,
                file=self.document.file,
                position=self.document.position_of(path, key=True),
                path=join_path(path),
                hint=hint,
            )
        )

    def mapping(self, data: dict[str, Any], model: type[BaseModel], path: Path) -> dict[str, Any]:
        fields = _fields_by_alias(model)
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
        markers = _markers(info, annotation)
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
        model = _model_of(annotation)
        if model is not None and isinstance(value, dict):
            return self.mapping(value, model, path)
        item = _item_annotation(annotation)
        if item is not None and isinstance(value, list):
            return self.items(value, item, path)
        return value

    def items(self, values: list[Any], item: Any, path: Path) -> list[Any]:
        _, markers = _unwrap(item)
        if any(isinstance(m, NameRef) for m in markers):
            return [self.name(v, (*path, i)) for i, v in enumerate(values)]
        model = _model_of(item)
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


# --- pydantic errors -> diagnostics ---------------------------------------------------------


def _translate(error: Any, model: type[Document], resource: YamlDocument) -> Diagnostic:
    loc: tuple[Any, ...] = tuple(error["loc"])
    kind = error["type"]
    path = join_path(loc)
    file = resource.file
    if kind == "extra_forbidden":
        key = str(loc[-1])
        parent = model_at(model, loc[:-1])
        suggestion = closest(key, _fields_by_alias(parent)) if parent else None
        if model.KIND == "SmarterAuthToken" and key.lower() in KEYS_THAT_LOOK_LIKE_CREDENTIALS:
            hint = (
                "API keys never go in git: 'samops keys create NAME' prints the key once and "
                "a manifest holding only spec.config.digest"
            )
        elif suggestion:
            hint = f"did you mean {suggestion!r}?"
        elif parent:
            hint = "valid keys here: " + ", ".join(sorted(_fields_by_alias(parent)))
        else:
            hint = None
        return Diagnostic(
            Severity.ERROR,
            "unknown-key",
            f"unknown key {key!r}",
            file=file,
            position=resource.position_of(loc, key=True),
            path=path,
            hint=hint,
        )
    if kind == "missing":
        return Diagnostic(
            Severity.ERROR,
            "missing-key",
            f"the required key {str(loc[-1])!r} is missing",
            file=file,
            position=resource.position_of(loc[:-1], key=True),
            path=path,
            hint=f"add {join_path(loc)} to this {model.KIND}",
        )
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        pattern = str((error.get("ctx") or {}).get("pattern", ""))
        message = PATTERN_MEANINGS.get(pattern, "the value does not have the expected form")
    given = error.get("input")
    if isinstance(given, dict):  # a rule about a whole mapping: point at its key, no echo
        return Diagnostic(
            Severity.ERROR,
            "invalid-value",
            message,
            file=file,
            position=resource.position_of(loc, key=True),
            path=path,
        )
    value = None if is_sensitive(model, loc) else shorten(given)
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        value = type(given).__name__ if given is not None else "null"
        message = "expected a mapping"
    return Diagnostic(
        Severity.ERROR,
        "invalid-value",
        message,
        file=file,
        position=resource.position_of(loc),
        path=path,
        value=value,
        hint=_value_hint(kind, error.get("ctx") or {}),
    )


def _value_hint(kind: str, context: Mapping[str, Any]) -> str | None:
    """What to write instead, for pydantic's own error types (our validators' messages
    already say it)."""
    bound = {
        "greater_than": "a number above {gt}",
        "greater_than_equal": "a number of at least {ge}",
        "less_than": "a number below {lt}",
        "less_than_equal": "a number of at most {le}",
        "string_too_long": "at most {max_length} characters",
        "string_too_short": "at least {min_length} characters",
        "too_short": "at least {min_length} items",
        "too_long": "at most {max_length} items",
        "literal_error": "one of {expected}",
        "enum": "one of {expected}",
    }.get(kind)
    if bound is not None:
        try:
            return "write " + bound.format(**context)
        except KeyError:
            return None
    return {
        "int_parsing": "write a whole number, without quotes",
        "int_type": "write a whole number, without quotes",
        "int_from_float": "write a whole number, without a fraction",
        "float_parsing": "write a number, without quotes",
        "float_type": "write a number, without quotes",
        "bool_parsing": "write true or false, without quotes",
        "bool_type": "write true or false, without quotes",
        "string_type": "write text; quote it if YAML reads it as another type",
        "list_type": "write a list: [a, b] or one '- item' per line",
        "model_type": "write a mapping: one 'key: value' per line, indented below this key",
        "model_attributes_type": "write a mapping: one 'key: value' per line, indented",
        "dict_type": "write a mapping: one 'key: value' per line, indented below this key",
        "date_from_datetime_parsing": "write a date as YYYY-MM-DD",
        "date_parsing": "write a date as YYYY-MM-DD",
        "datetime_parsing": "write a time as YYYY-MM-DDTHH:MM:SSZ",
        "datetime_from_date_parsing": "write a time as YYYY-MM-DDTHH:MM:SSZ",
        "url_parsing": "write a full URL such as https://api.example.com/",
        "url_scheme": "write a URL starting with http:// or https://",
    }.get(kind)


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
    if model is None:
        suggestion = closest(str(kind), KINDS) if isinstance(kind, str) else None
        message = "the key 'kind' is missing" if kind is None else f"unknown kind {kind!r}"
        hint = (
            (f"did you mean {suggestion!r}? " if suggestion else "") + "kinds: " + ", ".join(KINDS)
        )
        return None, [
            Diagnostic(
                Severity.ERROR,
                "unknown-kind",
                message,
                file=file,
                position=document.position_of(("kind",)),
                path="kind",
                hint=hint,
            )
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
        diagnostics.extend(_translate(e, model, document) for e in exc.errors())
        recovered, more = _recover(model, prepared, exc, document)
        diagnostics.extend(more)
        return Resource(recovered, document, partial=True, data=prepared), diagnostics
    if isinstance(validated, Secret) and validated.spec.config.value is not None:
        diagnostics.append(_plaintext_secret(document, options))
    if isinstance(validated, Secret) and options.secret_access is not None:
        diagnostics.extend(_outside_access(validated, document, options.secret_access))
    return Resource(validated, document, data=prepared), diagnostics


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
            _translate(e, model, document)
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
            yield Diagnostic(
                Severity.ERROR,
                "secret-not-allowed",
                refusal.message,
                file=document.file,
                position=document.position_of(path),
                path=join_path(path),
                hint=refusal.hint,
            )


def _plaintext_secret(document: YamlDocument, options: LoadOptions) -> Diagnostic:
    path = ("spec", "config", "value")
    hint = (
        "use valueFrom: {env: NAME} or valueFrom: {file: /path}, or encrypt it with "
        "'samops secrets encrypt NAME'"
    )
    if options.allow_plaintext_secrets:
        return Diagnostic(
            Severity.WARNING,
            "plaintext-secret",
            "this Secret holds its value in plaintext in git (allowed by "
            "--allow-plaintext-secrets)",
            file=document.file,
            position=document.position_of(path, key=True),
            path=join_path(path),
            hint=hint,
        )
    return Diagnostic(
        Severity.ERROR,
        "plaintext-secret",
        "plaintext secret values are refused (anyone who can read the repository can read them)",
        file=document.file,
        position=document.position_of(path, key=True),
        path=join_path(path),
        hint=hint + "; or start samops with --allow-plaintext-secrets",
    )
