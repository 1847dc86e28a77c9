"""What a served generation is made of: compiled clients, plugins, tools, keys, providers.

Built by the serving state (``serve/snapshot.py``) from the applied rows; read by every
request (``serve/chat.py``, the Smarter and OpenAI routes). Immutable: a request takes one
``Snapshot`` and uses that generation from start to end.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from reconciler.sam.kinds import LLMClient, PluginDocument, Provider, Secret
from reconciler.sam.samops_annotations import Price, RateLimits
from reconciler.store.budgets import budget_scope, periodic_scope, total_scope
from serve.limits import Limit

Execute = Callable[[Mapping[str, Any]], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Tool:
    """One OpenAI tool and what runs when the model calls it."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    execute: Execute

    def openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True, slots=True)
class CompiledPlugin:
    name: str
    kind: str
    directive: str
    search_terms: tuple[str, ...]
    system_role: str
    model: str | None
    temperature: float | None
    max_tokens: int | None
    tool: Tool
    document: PluginDocument
    """The plugin's typed manifest (what Smarter's reads show of it)."""


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    """Which key a client requires. ``required`` is False for public clients (no key, or an
    inactive one, as in Smarter); an expired key is still required, and refused."""

    required: bool = False
    token: str | None = None
    digests: tuple[str, ...] = ()
    expires_at: dt.datetime | None = None

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass(frozen=True, slots=True)
class CompiledClient:
    name: str
    provider: str
    model: str
    temperature: float
    max_tokens: int
    system_role: str
    plugins: tuple[CompiledPlugin, ...]
    functions: tuple[Tool, ...]
    key: KeyPolicy
    ui: Mapping[str, Any]
    document: LLMClient
    """The client's typed manifest (what Smarter's reads show of it)."""
    id: int
    hashed_id: str
    rate_limits: RateLimits = field(default_factory=RateLimits)
    """Requests and tokens a minute its annotations allow, over all replicas."""


@dataclass(frozen=True, slots=True)
class ProviderTarget:
    """Where a provider's requests go; ``api_key`` is resolved on this host."""

    name: str
    base_url: str | None
    api_key: str | None
    error: str | None = None
    prices: Mapping[str, Price] = field(default_factory=dict)
    """What the Provider's annotations say its models cost (``serve/prices.py``)."""


@dataclass(frozen=True, slots=True)
class TokenStatus:
    """What is known of a key by its digest, so that a deactivated or expired key presented
    to any client is refused (even to a client that became public by the deactivation)."""

    token: str
    active: bool
    expires_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """One budget on one resource (each listed resource has the limits for itself), as the
    serving processes enforce it (``serve/budgets.py``)."""

    budget: str
    resource: tuple[str, str]
    """(kind, name): an LLMClient, a Provider or a SmarterAuthToken."""
    unit: str
    periodic_limit: Decimal
    """0: none."""
    period: str
    absolute_limit: Decimal
    """0: none."""
    attached_at: dt.datetime
    expires_at: dt.datetime | None
    action: str
    warning_threshold: int
    message: str | None
    scope: str = field(init=False)
    """The shared counters' name (``reconciler/store/quotas.py``), without the limit."""
    limits: tuple[tuple[Limit, str], ...] = field(init=False)
    """Its limits as the limiter takes them, each with 'periodic' or 'absolute'."""

    def __post_init__(self) -> None:
        kind, name = self.resource
        scope = budget_scope(self.budget, kind, name)
        limits = []
        if self.periodic_limit:
            limit = Limit(periodic_scope(scope), self.period, self.periodic_limit)
            limits.append((limit, "periodic"))
        if self.absolute_limit:
            since = self.attached_at
            limit = Limit(total_scope(scope), self.period, self.absolute_limit, since)
            limits.append((limit, "absolute"))
        object.__setattr__(self, "scope", scope)
        object.__setattr__(self, "limits", tuple(limits))

    def applies(self, now: dt.datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True, slots=True)
class Snapshot:
    generation: int
    revision: str | None
    clients: Mapping[str, CompiledClient]
    providers: Mapping[str, ProviderTarget]
    tokens: Mapping[str, TokenStatus] = field(default_factory=dict)
    client_ids: Mapping[str, str] = field(default_factory=dict)
    """Client names by integer id (as text) and by hashed id (``reconciler/sam/ids.py``)."""
    provider_documents: Mapping[str, Provider] = field(default_factory=dict)
    """The Provider manifests, by name (what Smarter's reads show of them)."""
    secrets: Mapping[str, Secret] = field(default_factory=dict)
    """The Secret manifests, by name: where each value comes from, never a value."""
    plugins: Mapping[str, CompiledPlugin] = field(default_factory=dict)
    """Every compiled plugin, by name, whether a client uses it or not."""
    key_limits: Mapping[str, RateLimits] = field(default_factory=dict)
    """The rate limits of the keys of each SmarterAuthToken that declares some, by its name."""
    budgets: Mapping[tuple[str, str], tuple[BudgetRule, ...]] = field(default_factory=dict)
    """The budgets on each resource that has some, by (kind, name)."""

    def client(self, reference: str) -> CompiledClient | None:
        """The client a route names by its integer id, its hashed id or its name, tried in
        that order."""
        name = self.client_ids.get(reference, reference)
        return self.clients.get(name)


EMPTY = Snapshot(0, None, {}, {})
