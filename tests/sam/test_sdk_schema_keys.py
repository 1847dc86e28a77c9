"""Every key that Smarter's current schema (its official SDK's generated models) defines for a
kind samops manages is known to samops' model of that kind: a manifest written against the
SDK never meets an unknown-key error here. (Keys samops refuses on purpose are listed.)"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pydantic
import pytest

from reconciler.sam.introspect import fields_by_alias
from reconciler.sam.kinds import KINDS
from reconciler.sam.unmanaged import NOT_ENFORCED_KEYS

REFUSED_ON_PURPOSE = {".".join(map(str, path)) for _, path in NOT_ENFORCED_KEYS}


def _nested_models(annotation: Any) -> list[type[pydantic.BaseModel]]:
    """The models an annotation holds, through ``X | None``, ``list[X]`` and ``Annotated``."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    found = []
    for argument in getattr(annotation, "__args__", None) or ():
        found.extend(_nested_models(argument))
    return found


def _sdk_keys(model: type[pydantic.BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        keys.add(key)
        for nested in _nested_models(field.annotation):
            keys |= _sdk_keys(nested, key + ".")
    return keys


def _our_keys(model: type[pydantic.BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for alias, field in fields_by_alias(model).items():
        keys.add(prefix + alias)
        for nested in _nested_models(field.annotation):
            keys |= _our_keys(nested, prefix + alias + ".")
    return keys


def _sdk_model(kind: str) -> type[pydantic.BaseModel]:
    module = importlib.import_module(f"smarter.models.sam.{kind.lower()}")
    return next(
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, pydantic.BaseModel) and {"apiVersion", "spec"} <= set(cls.model_fields)
    )


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_key_of_smarters_current_schema_is_known(kind: str) -> None:
    theirs = {k for k in _sdk_keys(_sdk_model(kind)) if not k.startswith("status")}
    assert theirs - _our_keys(KINDS[kind]) - REFUSED_ON_PURPOSE == set()
