"""Building blocks shared by every SAM kind: the envelope, metadata and field types.

Part of Load/Validate. Models are strict at the edge (``extra="forbid"``): an unknown key is
an error, never silently dropped as Smarter does. Field types carry markers
(``NameRef``, ``SecretRef``) that the loader reads to normalise names and to keep secret
material out of messages; the models themselves stay declarative.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from reconciler.sam.samops_annotations import check_samops_annotation

NAME_MAX_CHARS = 50
NAME_PATTERN = r"^[a-z0-9_]+$"
SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
ANNOTATION_KEY_PATTERN = re.compile(r"^[a-zA-Z0-9._/-]+$")
ANNOTATION_VALUE_MAX_CHARS = 2048
ACCOUNT_NUMBER_PATTERN = r"^\d{4}-\d{4}-\d{4}$"


def normalise_name(name: str) -> str:
    """Smarter's snake_case normalisation: lowercase; spaces and '-' become '_'."""
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``word`` (for "did you mean ...?" hints), if any is close.
    Case is ignored, so ``SQLPlugin`` suggests ``SqlPlugin``."""
    lowered = {c.lower(): c for c in candidates}
    matches = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[matches[0]] if matches else None


@dataclass(frozen=True, slots=True)
class NameRef:
    """Marks a string field holding a resource name. The loader normalises such values the way
    Smarter normalises names and warns when that changed them."""


@dataclass(frozen=True, slots=True)
class Sensitive:
    """Marks a field whose value must never appear in a message, log or plan."""


@dataclass(frozen=True, slots=True)
class Capped:
    """Marks a number that Smarter caps rather than refuses: above ``maximum`` the loader
    warns and uses ``maximum``, so a manifest Smarter accepts loads here too."""

    maximum: int


def _scalar_to_text(value: Any) -> Any:
    """YAML turns ``true``, ``12345`` and ``2024-06-15`` into non-strings; some fields are text
    whatever the YAML type (header values, annotation values), so convert them back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _none_to_empty_list(value: Any) -> Any:
    return [] if value is None else value


def _blank_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _as_list(value: Any) -> Any:
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


def _aware_datetime(value: Any) -> Any:
    """Dates become midnight UTC; naive times are read as UTC."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    return value


def _http_url(value: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ValueError("credentials do not belong in the URL; use the apiKey secret")
    return value


Text = Annotated[str, BeforeValidator(_scalar_to_text)]
OptionalText = Annotated[str | None, BeforeValidator(_blank_to_none)]
EmptyIfNull = BeforeValidator(_none_to_empty_list)
StringOrList = BeforeValidator(_as_list)
UtcDateTime = Annotated[dt.datetime, BeforeValidator(_aware_datetime)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]


_NAME_RULES = Field(max_length=NAME_MAX_CHARS, pattern=NAME_PATTERN)
ResourceName = Annotated[str, NameRef(), _NAME_RULES]
"""A resource's own name (``metadata.name``)."""
Reference = Annotated[str, NameRef(), _NAME_RULES]
"""A reference to another resource by name; ``references.py`` knows which kinds it may name."""
SecretReference = Annotated[str, NameRef(), Sensitive(), _NAME_RULES]
"""A reference to a Secret: a name, but possibly a pasted credential, so never echoed."""


class SamModel(BaseModel):
    """Base of every manifest model: unknown keys are errors; YAML keys are camelCase."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
        frozen=True,
    )


class SnakeModel(SamModel):
    """For the few Smarter sections whose keys are snake_case (Provider, customDomain)."""

    model_config = ConfigDict(alias_generator=None)


_FIELDS_SETS: dict[frozenset[str], set[str]] = {}


def share_fields_sets(model: SamModel) -> SamModel:
    """``model`` (and the models inside it) with one shared set object per distinct set of
    given fields. Pydantic gives every instance its own ``model_fields_set``, and for models
    read back from rows, which mostly give the same fields, those sets are 60 % of a model's
    memory (5.2 KB -> 2.1 KB a resource, measured: 60 MB at 10,000 clients and as many
    plugins). Safe because the models are frozen: nothing adds to the set of an instance, and
    ``model_copy`` copies it before it updates it."""
    given = model.__pydantic_fields_set__
    shared = _FIELDS_SETS.setdefault(frozenset(given), set(given))
    object.__setattr__(model, "__pydantic_fields_set__", shared)
    for value in model.__dict__.values():
        if isinstance(value, SamModel):
            share_fields_sets(value)
        elif isinstance(value, list | tuple):
            for item in value:
                if isinstance(item, SamModel):
                    share_fields_sets(item)
    return model


def _check_annotation(item: Any) -> Any:
    """One annotation: a mapping with exactly one key; the value is text."""
    if not isinstance(item, dict) or len(item) != 1:
        raise ValueError("an annotation is a mapping with exactly one key")
    ((key, text),) = item.items()
    if not ANNOTATION_KEY_PATTERN.match(str(key)):
        raise ValueError(f"the annotation key {key!r} may only use letters, digits and ._/-")
    text = _scalar_to_text(text)
    if text is not None and not isinstance(text, str):
        raise ValueError(f"the value of the annotation {key!r} must be text")
    if text is not None and len(text) > ANNOTATION_VALUE_MAX_CHARS:
        raise ValueError(
            f"the value of the annotation {key!r} is over {ANNOTATION_VALUE_MAX_CHARS} characters"
        )
    check_samops_annotation(str(key), text or "")  # samops' own settings (samops_annotations)
    return {str(key): text or ""}


Annotation = Annotated[dict[str, str], BeforeValidator(_check_annotation)]


class Metadata(SamModel):
    name: ResourceName = Field(description="Resource name, snake_case, at most 50 characters.")
    description: OptionalText = None
    version: Annotated[str | None, BeforeValidator(_scalar_to_text)] = Field(
        default=None, pattern=SEMVER_PATTERN, description="SemVer 2.0, e.g. 1.2.0."
    )
    tags: Annotated[list[Text], EmptyIfNull] = []
    annotations: Annotated[list[Annotation], EmptyIfNull] = []
    account_number: str | None = Field(
        default=None,
        pattern=ACCOUNT_NUMBER_PATTERN,
        description="Written by Smarter's describe; accepted for compatibility, informational.",
    )
    username: str | None = Field(
        default=None,
        description="Written by Smarter's describe; accepted for compatibility, informational.",
    )


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an attribute holds (through ``X | None``, ``Annotated``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def alias_path(model: type[BaseModel], attributes: tuple[str, ...]) -> tuple[str, ...]:
    """The keys of the canonical fields (the manifest's spelling) for a path of model
    attributes. An attribute the model does not have fails here, at import."""
    keys = []
    current: type[BaseModel] | None = model
    for attribute in attributes:
        if current is None or attribute not in current.model_fields:
            raise LookupError(f"{model.__name__} has no attribute path {'.'.join(attributes)}")
        info = current.model_fields[attribute]
        keys.append(info.alias or attribute)
        current = _model_in(info.annotation)
    return tuple(keys)
