"""What every SAM document is: the envelope every kind shares, and the patterns kinds check.

Part of Load/Validate. ``Document`` is the base of the ten kinds (``kinds.py``,
``plugin_kinds.py``); the patterns are shared by the kinds and by the messages that explain
them (``validation_errors.py``); ``canonical`` tells a validator that the data is samops'
canonical form (a stored row) rather than a manifest.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from reconciler.sam.base import (
    Metadata,
    SamModel,
)

CANONICAL_CONTEXT = "samops_canonical"
"""Validation context key: the data is samops' canonical form (a stored row), not a manifest."""


def canonical(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get(CANONICAL_CONTEXT))


PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
PARAMETER_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
DIGEST_PATTERN = r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
ENCRYPTED_PREFIX = "samops:v1:"
SQL_LIMIT_MAX = 1000
Temperature = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]


class Document(SamModel):
    """Fields every kind shares. ``KIND`` is the value of ``kind:``; ``NAMESPACE``, when set,
    groups kinds whose names must not collide (the three plugin kinds share one); otherwise a
    kind is its own."""

    KIND: ClassVar[str]
    NAMESPACE: ClassVar[str | None] = None

    api_version: Literal["smarter.sh/v1", "smarter.sh/v0"] = Field(
        description="smarter.sh/v1 (v0 is read as v1)."
    )
    kind: str
    metadata: Metadata

    @field_validator("kind")
    @classmethod
    def _kind_matches(cls, value: str) -> str:
        if value != cls.KIND:
            raise ValueError(f"expected {cls.KIND!r}")
        return value

    @property
    def name(self) -> str:
        return self.metadata.name

    @classmethod
    def manifest(
        cls, name: str, spec: dict[str, object], *, description: str | None = None
    ) -> dict[str, object]:
        """A manifest of this kind as written in git (camelCase keys), validated first."""
        metadata: dict[str, object] = {"name": name}
        if description:
            metadata["description"] = description
        manifest: dict[str, object] = {
            "apiVersion": "smarter.sh/v1",
            "kind": cls.KIND,
            "metadata": metadata,
            "spec": spec,
        }
        cls.model_validate(manifest)
        return manifest
