"""Desired state: a validated revision reduced to canonical, comparable, secret-free form.

Between Validate and Plan. Each resource becomes a ``ResourceState``: its kind, name, the file
it came from, ``model``, its typed canonical form (the kind's pydantic model with function
aliases resolved and a plaintext secret replaced by its fingerprint), and ``fields``, the same
as JSON data (``metadata`` and ``spec``, every default filled in, names normalised). The typed
form is what everything downstream reads (the store's mapping, reports, the serving snapshot);
a row read back from the database becomes the same model (``model_from_fields``). Two
manifests that mean the same thing have equal ``fields``; that is what makes plans exact and
``describe`` round-trip.

Secret values never enter this form: a plaintext value is replaced by a fingerprint, so plans,
the database and status pages can show that a value changed without holding it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from reconciler.sam.base import share_fields_sets
from reconciler.sam.client_format import canonical_client
from reconciler.sam.functions import canonical_function
from reconciler.sam.kinds import CANONICAL_CONTEXT, KINDS, Document, LLMClient, Secret
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


@dataclass(frozen=True)
class ResourceState:
    """One resource as plan, store, describe and the serving snapshot see it: ``model`` is
    its typed canonical form, ``fields`` the same as JSON data (what plans diff and rows
    hold). Equal resources have equal ``fields``."""

    kind: str
    name: str
    file: str
    fields: Mapping[str, Any]
    typed: Document | None = field(default=None, compare=False, repr=False)
    """The canonical model when it is at hand (a validated revision); else built on demand."""

    @property
    def identity(self) -> Identity:
        return (self.kind, self.name)

    @cached_property
    def model(self) -> Document:
        """The typed canonical form: what compilation and reports read, by attribute."""
        return self.typed if self.typed is not None else model_from_fields(self.kind, self.fields)


def canonical_model(
    resource: Resource, fingerprint_key: bytes = EPHEMERAL_FINGERPRINT_KEY
) -> Document:
    """A resource's model in canonical form: function aliases resolved, a plaintext secret
    value replaced by its fingerprint."""
    model = resource.model
    if isinstance(model, LLMClient):
        config_updates, spec_updates = canonical_client(model.spec.config, model.spec)
        flat = model.spec.config.model_copy(update=config_updates)
        given = spec_updates.get("functions", model.spec.functions)
        spec_updates["functions"] = [canonical_function(f) or f for f in given]
        spec = model.spec.model_copy(update={**spec_updates, "config": flat})
        return model.model_copy(update={"spec": spec})
    if isinstance(model, Secret):
        config = model.spec.config
        fingerprint = (
            secret_fingerprint(model.name, config.value, fingerprint_key)
            if config.value is not None
            else None
        )
        config = config.model_copy(update={"value": None, "value_fingerprint": fingerprint})
        return model.model_copy(update={"spec": model.spec.model_copy(update={"config": config})})
    return model


NOT_IN_FIELDS: dict[str, Any] = {"api_version": True, "kind": True}
CLIENT_NOT_IN_FIELDS: dict[str, Any] = {
    **NOT_IN_FIELDS,
    "spec": {"extensions": True, "config": {"prompt": True}},
}
"""Always empty in a canonical client (``sam/client_format.py`` moved them)."""
SECRET_NOT_IN_FIELDS: dict[str, Any] = {**NOT_IN_FIELDS, "spec": {"config": {"value"}}}


def fields_of(model: Document) -> dict[str, Any]:
    """``metadata`` and ``spec`` of a canonical model as JSON data, every default filled."""
    exclude = (
        SECRET_NOT_IN_FIELDS
        if isinstance(model, Secret)
        else CLIENT_NOT_IN_FIELDS
        if isinstance(model, LLMClient)
        else NOT_IN_FIELDS
    )
    return model.model_dump(mode="json", by_alias=True, exclude=exclude)


def model_from_fields(kind: str, fields: Mapping[str, Any]) -> Document:
    """The canonical model of stored ``fields`` (a row read back)."""
    document = {"apiVersion": "smarter.sh/v1", "kind": kind, **fields}
    model = KINDS[kind].model_validate(document, context={CANONICAL_CONTEXT: True})
    share_fields_sets(model)  # rows are read by the thousand: see its docstring
    return model


def canonical_fields(
    resource: Resource, fingerprint_key: bytes = EPHEMERAL_FINGERPRINT_KEY
) -> dict[str, Any]:
    """``metadata`` and ``spec`` of a resource, defaults filled, no secret value."""
    return fields_of(canonical_model(resource, fingerprint_key))


def desired_state(
    resources: Iterable[Resource], *, fingerprint_key: bytes = EPHEMERAL_FINGERPRINT_KEY
) -> dict[Identity, ResourceState]:
    """The desired state of a valid revision, keyed by (kind, name); plaintext secrets as
    fingerprints under ``fingerprint_key`` (the database's, to compare with its rows)."""
    states = {}
    for resource in resources:
        model = canonical_model(resource, fingerprint_key)
        state = ResourceState(resource.kind, resource.name, resource.file, fields_of(model), model)
        states[state.identity] = state
    return states


def kind_ranks() -> dict[str, int]:
    """Each kind's place in the dependency order, as the reference graph says now."""
    return {kind: rank for rank, kind in enumerate(kind_order())}
