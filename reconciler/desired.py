"""Desired state: a validated revision reduced to canonical, comparable, secret-free data.

Between Validate and Plan. Each resource becomes a ``ResourceState``: its kind, name, the file
it came from, and ``fields``, the manifest's ``metadata`` and ``spec`` with every default
filled in, names normalised and function aliases resolved. Two manifests that mean the same
thing have equal ``fields``; that is what makes plans exact and ``describe`` round-trip.

Secret values never enter this form: a plaintext value is replaced by a fingerprint, so plans,
the database and status pages can show that a value changed without holding it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.sam.functions import canonical_function
from reconciler.sam.kinds import KINDS, LLMClient, Secret
from reconciler.sam.load import Resource
from reconciler.sam.references import kind_order

KIND_ORDER: tuple[str, ...] = kind_order()
"""Creates and updates run in this order, deletes in the reverse (from the reference graph)."""
assert set(KIND_ORDER) == set(KINDS)

Identity = tuple[str, str]  # (kind, name)


EPHEMERAL_FINGERPRINT_KEY = secrets.token_bytes(32)
"""The key of fingerprints compared within one process only (PR review, previews)."""


def secret_fingerprint(name: str, value: str, key: bytes = EPHEMERAL_FINGERPRINT_KEY) -> str:
    """Short, name-bound, keyed digest of a secret value: enough to see that it changed, and,
    unlike a plain hash, no dictionary run over plans, PR comments or rows can find the value
    without the key (the database's own, ``fingerprint_key``; a random one for a review)."""
    digest = hmac.new(key, f"samops-secret\0{name}\0{value}".encode(), hashlib.sha256)
    return f"sha256:{digest.hexdigest()[:16]}"  # HMAC-SHA256


@dataclass(frozen=True, slots=True)
class ResourceState:
    """One resource as plan, store and describe see it."""

    kind: str
    name: str
    file: str
    fields: Mapping[str, Any]

    @property
    def identity(self) -> Identity:
        return (self.kind, self.name)


def canonical_fields(
    resource: Resource, fingerprint_key: bytes = EPHEMERAL_FINGERPRINT_KEY
) -> dict[str, Any]:
    """``metadata`` and ``spec`` of a resource, defaults filled, no secret value."""
    dumped = resource.model.model_dump(mode="json", by_alias=True, exclude={"api_version", "kind"})
    model = resource.model
    if isinstance(model, LLMClient):
        dumped["spec"]["functions"] = [
            canonical_function(f) or f for f in dumped["spec"]["functions"]
        ]
    if isinstance(model, Secret):
        config = dumped["spec"]["config"]
        value = config.pop("value", None)
        config["valueFingerprint"] = (
            secret_fingerprint(model.name, value, fingerprint_key) if value is not None else None
        )
    return dumped


def desired_state(
    resources: Iterable[Resource], *, fingerprint_key: bytes = EPHEMERAL_FINGERPRINT_KEY
) -> dict[Identity, ResourceState]:
    """The desired state of a valid revision, keyed by (kind, name); plaintext secrets as
    fingerprints under ``fingerprint_key`` (the database's, to compare with its rows)."""
    states = {}
    for resource in resources:
        state = ResourceState(
            resource.kind,
            resource.name,
            resource.file,
            canonical_fields(resource, fingerprint_key),
        )
        states[state.identity] = state
    return states


def kind_ranks() -> dict[str, int]:
    """Each kind's place in the dependency order, as the reference graph says now."""
    return {kind: rank for rank, kind in enumerate(kind_order())}
