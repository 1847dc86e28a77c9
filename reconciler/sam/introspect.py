"""Reading the kind models' structure: which model sits at a path, which fields are secret.

Part of Load/Validate. The walk before validation (``load.py``) and the translation of
pydantic's errors (``validation_errors.py``) follow a document's data along the models'
fields; the store's mapping and reports spell model attributes the manifest's way
(``alias_path``).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from reconciler.sam.base import (
    Sensitive,
)
from reconciler.sam.kinds import (
    Secret,
)

_UNWRAPPED: dict[int, tuple[Any, Any, tuple[Any, ...]]] = {}
"""``unwrap``'s answers by the annotation's id (with the annotation, against a reused id):
the loader asks about the same few hundred annotations for every value of every document."""
MAX_UNWRAPPED = 10_000


def unwrap(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    """Strip ``Annotated`` and ``X | None``; return the core type and the markers found."""
    known = _UNWRAPPED.get(id(annotation))
    if known is not None and known[0] is annotation:
        return known[1], known[2]
    core, markers = _unwrapped(annotation)
    if len(_UNWRAPPED) < MAX_UNWRAPPED:  # the models' annotations: a few hundred
        _UNWRAPPED[id(annotation)] = (annotation, core, tuple(markers))
    return core, tuple(markers)


def _unwrapped(annotation: Any) -> tuple[Any, list[Any]]:
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


def fields_by_alias(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return {(info.alias or name): info for name, info in model.model_fields.items()}


def model_of(annotation: Any) -> type[BaseModel] | None:
    core, _ = unwrap(annotation)
    return core if isinstance(core, type) and issubclass(core, BaseModel) else None


def item_annotation(annotation: Any) -> Any | None:
    core, _ = unwrap(annotation)
    return typing.get_args(core)[0] if typing.get_origin(core) is list else None


def markers_of(info: FieldInfo, annotation: Any) -> list[Any]:
    _, inner = unwrap(annotation)
    return [*info.metadata, *inner]


def model_at(root: type[BaseModel], loc: Iterable[Any]) -> type[BaseModel] | None:
    """The model class whose mapping sits at ``loc`` (for suggesting valid keys)."""
    model: type[BaseModel] | None = root
    annotation: Any = None
    for part in loc:
        if isinstance(part, int):
            annotation = item_annotation(annotation) if annotation is not None else None
            model = model_of(annotation) if annotation is not None else None
            continue
        if model is None:
            return None
        info = fields_by_alias(model).get(str(part))
        if info is None:
            return None
        annotation = info.annotation
        model = model_of(annotation)
    return model


def is_sensitive(root: type[BaseModel], loc: tuple[Any, ...]) -> bool:
    """True when ``loc`` is (inside) a field marked ``Sensitive`` or belongs to a Secret."""
    if root is Secret and loc[:1] == ("spec",):
        return True
    parent = model_at(root, loc[:-1]) if loc else None
    if parent is None or not loc or isinstance(loc[-1], int):
        return False
    info = fields_by_alias(parent).get(str(loc[-1]))
    return info is not None and any(
        isinstance(m, Sensitive) for m in markers_of(info, info.annotation)
    )
