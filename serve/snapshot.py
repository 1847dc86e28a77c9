"""The serving snapshot: every LLM client compiled for one generation, swapped atomically.

Publish stage, on every serving process. ``ServingState.load`` reads the database when the
generation moved: a process a few generations behind reads only the rows those generations
changed (their change records, ``reconciler/store/changes.py``); a new one, or one further
behind, reads every row (in chunks) and compares each with a digest of what it serves. Either
way only the changed resources and their dependants are rebuilt: whatever refers to them,
directly or through others, as the one reference graph (``reconciler/sam/references.py``)
says, e.g.

    secret -> connection -> plugin -> client;  key -> client;  provider -> client

Clients whose dependencies did not change are reused as they are (the same objects), and SQL
connection pools of changed connections are closed. The new ``Snapshot`` replaces the old one
in a single assignment: a request takes ``state.snapshot`` once and uses that generation from
start to end.

New generations are noticed through the daemon's callback in ``samops run``, and by a cheap
poll of the state row (a few milliseconds apart) in every process. A preview (``samops chat
--ref``, the preview route) calls ``install`` on a throwaway state, without a database, with
the desired state of a revision that is not applied (``serve/preview.py``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import aiohttp
from sqlalchemy import Connection, Engine

from reconciler.api import Identity, ResourceState
from reconciler.sam.functions import canonical_function
from reconciler.sam.ids import hashed_id, resource_id
from reconciler.sam.kinds import (
    KINDS,
    ApiConnection,
    ApiPlugin,
    Budget,
    Document,
    LLMClient,
    Plugin,
    PluginDocument,
    Provider,
    Secret,
    SmarterAuthToken,
    SqlConnection,
    SqlPlugin,
)
from reconciler.sam.references import PLUGIN_KINDS, ReferrerIndex, targets
from reconciler.sam.samops_annotations import RateLimits, declared_prices, rate_limits
from reconciler.store.budgets import Attachments, attachments, expires_at
from reconciler.store.changes import changes_since
from reconciler.store.db import reading
from reconciler.store.read import read_actual, read_identities, read_state
from serve.compiled import (
    EMPTY,
    BudgetRule,
    CompiledClient,
    CompiledPlugin,
    Execute,
    KeyPolicy,
    ProviderTarget,
    Snapshot,
    TokenStatus,
    Tool,
)
from serve.secrets import SecretUnavailable, resolve_secret
from serve.settings import ServingSettings
from serve.tools.errors import ToolError
from serve.tools.functions import function_tool_schema, run_function
from serve.tools.plugins import ApiExecutor, SqlExecutor, StaticExecutor, sql_engine

log = logging.getLogger("samops.state")
UI_ATTRIBUTES = {
    "app_name",
    "app_assistant",
    "app_welcome_message",
    "app_example_prompts",
    "app_placeholder",
    "app_info_url",
    "app_background_image_url",
    "app_logo_url",
    "app_file_attachment",
    "subdomain",
    "custom_domain",
    "deployed",
}
"""The LLMClient settings the chat configuration shows (camelCase there, as in manifests)."""


@dataclass(frozen=True, slots=True)
class _Connections:
    """The connections and secrets a plugin may need, by name."""

    sql: Mapping[str, SqlConnection]
    api: Mapping[str, ApiConnection]
    secrets: Mapping[str, Secret]


def _secret(name: str | None, secrets: Mapping[str, Secret]) -> str | None:
    return None if name is None else resolve_secret(name, secrets[name].spec.config)


M = TypeVar("M", bound=Document)


def _failing(message: str) -> Execute:
    async def execute(_arguments: Mapping[str, Any]) -> str:
        raise ToolError(message)

    return execute


@dataclass(frozen=True, slots=True)
class Served:
    """What a serving state keeps of a resource beside its model: a digest of its row (file
    and fields), to see whether a row read again changed, and whom it names. The fields
    themselves are not kept (a third of the memory at 10,000 clients)."""

    digest: bytes
    targets: tuple[Identity, ...]

    @classmethod
    def of(cls, state: ResourceState) -> Served:
        text = json.dumps([state.file, state.fields], sort_keys=True, default=str)
        digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
        return cls(digest, tuple(targets(state.kind, state.fields)))


LOAD_CHUNK = 2000
"""Resources read at a time when every row is read."""
PATCH_LIMIT = 2000
"""Changed resources up to which a new generation is read row by row (``store/changes.py``);
beyond, or when a generation is unrecorded, every row is read."""


class ServingState:
    def __init__(
        self,
        engine: Engine | None,
        http: aiohttp.ClientSession,
        settings: ServingSettings | None = None,
    ) -> None:
        """``engine`` is None for a state that is only ever given states by ``install``
        (a preview of a revision that is not applied)."""
        self.engine = engine
        self.http = http
        self.settings = settings or ServingSettings()
        self.snapshot = EMPTY
        self._served: dict[Identity, Served] = {}
        """What is served of each resource, enough to see whether it changed."""
        self._models: dict[str, dict[str, Document]] = {kind: {} for kind in KINDS}
        """Each kind's typed canonical models, by name."""
        self._referrers = ReferrerIndex()
        self._plugins: dict[str, CompiledPlugin] = {}
        self._providers: dict[str, ProviderTarget] = {}
        self._tokens: dict[str, TokenStatus] = {}
        self._key_limits: dict[str, RateLimits] = {}
        self._attachments: Attachments = {}
        """When each budget was attached to each resource (read with the budgets)."""
        self._budget_rules: dict[str, tuple[BudgetRule, ...]] = {}
        self._budgets: dict[Identity, tuple[BudgetRule, ...]] = {}
        self._client_ids: dict[str, str] = {}
        self._sql_engines: dict[str, Engine] = {}
        self._functions: dict[str, Tool] = {}
        self._changed: set[Identity] = set()
        """Resources taken in since the last swap: what the next one rebuilds."""
        self.last_changed = 0
        self.rebuilt: set[str] = set()
        """Clients rebuilt by the last load (for tests and logs)."""
        self.last_load: tuple[str, int, float] = ("none", 0, 0.0)
        """How the last load read the database (``rows``: the changed rows only, ``all``),
        how many resources it found changed, and its seconds (metrics and the bench)."""

    # --- loading ----------------------------------------------------------------------------

    def load(self) -> Snapshot:
        """Read the database if the generation moved; rebuild what changed; swap. Blocking.
        A process a few generations behind reads only the rows those generations changed
        (``store/changes.py``); otherwise every row, compared with what it serves."""
        if self.engine is None:
            raise RuntimeError("this serving state has no database: use install()")
        started = time.perf_counter()
        with reading(self.engine) as connection:
            state = read_state(connection)
            current = self.snapshot.generation
            if state.generation == current and self.snapshot is not EMPTY:
                connection.rollback()
                return self.snapshot
            changed = (
                changes_since(connection, current, state.generation, limit=PATCH_LIMIT)
                if self.snapshot is not EMPTY and state.generation > current
                else None
            )
            if changed is not None:
                how, rows = "rows", read_actual(connection, only=changed)
                self._patch({identity: rows.get(identity) for identity in changed})
            else:
                how = "all"
                self._patch_all(connection)
            if any(kind == "Budget" for kind, _ in self._changed):
                self._attachments = attachments(connection)
            connection.rollback()
        snapshot = self._swap(state.generation, state.last_applied_revision)
        self.last_load = (how, self.last_changed, time.perf_counter() - started)
        log.info(
            "serving generation",
            extra={
                "generation": state.generation,
                "read": how,
                "changed": self.last_changed,
                "rebuilt_clients": len(self.rebuilt),
                "load_ms": round(self.last_load[2] * 1000, 1),
            },
        )
        return snapshot

    def install(
        self, generation: int, revision: str | None, states: Mapping[Identity, ResourceState]
    ) -> Snapshot:
        """Compile ``states`` (a revision's desired state, or every row) as generation
        ``generation``, rebuilding only what changed since the last install; swap. Blocking
        (secrets are read, SQL engines created)."""
        updates: dict[Identity, ResourceState | None] = dict(states)
        updates.update({i: None for i in self._served if i not in states})
        return self.install_changes(generation, revision, updates)

    def install_changes(
        self,
        generation: int,
        revision: str | None,
        updates: Mapping[Identity, ResourceState | None],
    ) -> Snapshot:
        """Like ``install``, given only the resources that may have changed (None: gone);
        every other resource stays as it is served."""
        self._patch(updates)
        return self._swap(generation, revision)

    def _patch_all(self, connection: Connection) -> None:
        """Every row, read and compared in chunks: the rows of one chunk are dropped before
        the next is read, so memory holds the models, not a second copy of every row."""
        stored = read_identities(connection)
        self._patch({i: None for i in self._served if i not in stored})
        ordered = sorted(stored)
        for start in range(0, len(ordered), LOAD_CHUNK):
            rows = read_actual(connection, only=ordered[start : start + LOAD_CHUNK])
            self._patch(rows)

    def _patch(self, updates: Mapping[Identity, ResourceState | None]) -> None:
        """Take in the resources of ``updates`` that changed (None: gone); they join
        ``_changed``, what the next ``_swap`` rebuilds with its dependants."""
        for identity, new in updates.items():
            seen = None if new is None else Served.of(new)
            if self._served.get(identity) == seen:
                continue
            self._forget(identity)
            self._changed.add(identity)
            if new is not None and seen is not None:
                self._served[identity] = seen
                self._models[identity[0]][identity[1]] = new.model
                self._referrers.add(identity, seen.targets)

    def _swap(self, generation: int, revision: str | None) -> Snapshot:
        """Compile what changed since the last swap (a load that failed half-way included:
        what it patched is still to be rebuilt) and serve it."""
        changed, self._changed = self._changed, set()
        self.snapshot = self._compile(generation, revision, changed)
        self.last_changed = len(changed)
        return self.snapshot

    def _of(self, kind: type[M]) -> dict[str, M]:
        """The typed canonical models of one kind, by name (the live dict: copy to keep)."""
        return cast(dict[str, M], self._models[kind.KIND])

    def _forget(self, identity: Identity) -> None:
        old = self._served.pop(identity, None)
        if old is not None:
            self._models[identity[0]].pop(identity[1], None)
            self._referrers.remove(identity, old.targets)

    def _compile(self, generation: int, revision: str | None, changed: set[Identity]) -> Snapshot:
        affected = self._referrers.dependants(changed)
        kinds = {kind for kind, _ in affected}
        secrets = self._of(Secret)
        for key in [k for k in self._sql_engines if tuple(k.split("/", 1)) in affected]:
            self._sql_engines.pop(key).dispose()  # pools of changed connections are closed
        if kinds & {"Provider", "Secret"}:
            self._providers = {
                name: self._provider(name, model, secrets)
                for name, model in self._of(Provider).items()
            }
        connections = _Connections(self._of(SqlConnection), self._of(ApiConnection), secrets)
        for kind, name in affected:
            if kind in PLUGIN_KINDS:
                self._plugins.pop(name, None)
        for kind, name in sorted(affected):
            plugin = self._models[kind].get(name) if kind in PLUGIN_KINDS else None
            if plugin is not None:
                self._plugins[name] = self._plugin(cast(PluginDocument, plugin), connections)
        tokens = self._of(SmarterAuthToken)
        if "SmarterAuthToken" in kinds:
            self._tokens = {
                digest: TokenStatus(name, token.spec.config.is_active, token.spec.config.expires_at)
                for name, token in tokens.items()
                for digest in token.spec.config.digest
            }
            self._key_limits = {
                name: limits
                for name, token in tokens.items()
                if (limits := rate_limits(token.metadata.annotations)) != RateLimits()
            }
        if "Budget" in kinds:
            self._compile_budgets([name for kind, name in affected if kind == "Budget"])
        clients = dict(self.snapshot.clients)
        self.rebuilt = set()
        for kind, name in sorted(affected):
            if kind != "LLMClient":
                continue
            if name in clients:
                old = clients.pop(name)
                self._client_ids.pop(str(old.id), None)
                self._client_ids.pop(old.hashed_id, None)
            client = self._of(LLMClient).get(name)
            if client is not None:
                compiled = self._client(client, tokens)
                clients[name] = compiled
                self._client_ids[str(compiled.id)] = name
                self._client_ids[compiled.hashed_id] = name
                self.rebuilt.add(name)
        return Snapshot(
            generation,
            revision,
            clients,
            dict(self._providers),
            dict(self._tokens),
            dict(self._client_ids),
            dict(self._of(Provider)),
            dict(secrets),
            dict(self._plugins),
            dict(self._key_limits),
            self._budgets,
        )

    def _compile_budgets(self, names: list[str]) -> None:
        """The rules of the budgets ``names`` (gone ones dropped), and the index by resource
        that the chat routes read (a new dict: the served one is never changed)."""
        budgets = self._of(Budget)
        now = dt.datetime.now(dt.UTC)
        for name in names:
            budget = budgets.get(name)
            if budget is None:
                self._budget_rules.pop(name, None)
                continue
            config = budget.spec.config
            rules = []
            for resource in budget.spec.resources:
                # a preview (no database) counts from now: it never spends
                since = self._attachments.get((name, resource.kind, resource.name), now)
                rules.append(
                    BudgetRule(
                        budget=name,
                        resource=(resource.kind, resource.name),
                        unit=config.unit,
                        periodic_limit=config.periodic_limit,
                        period=config.period,
                        absolute_limit=config.absolute_limit,
                        attached_at=since,
                        expires_at=expires_at(since, config.period, config.duration),
                        action=config.action,
                        warning_threshold=config.warning_threshold,
                        message=config.message,
                    )
                )
            self._budget_rules[name] = tuple(rules)
        index: dict[Identity, list[BudgetRule]] = {}
        for compiled in self._budget_rules.values():
            for rule in compiled:
                index.setdefault(rule.resource, []).append(rule)
        self._budgets = {resource: tuple(found) for resource, found in index.items()}

    # --- compiling --------------------------------------------------------------------------

    def _provider(
        self, name: str, provider: Provider, secrets: Mapping[str, Secret]
    ) -> ProviderTarget:
        config = provider.spec.provider
        prices = declared_prices(provider.metadata.annotations)
        try:
            key = _secret(config.api_key, secrets)
        except SecretUnavailable as exc:
            return ProviderTarget(name, config.base_url, None, str(exc), prices)
        return ProviderTarget(name, config.base_url, key, prices=prices)

    def _plugin(self, plugin: PluginDocument, connections: _Connections) -> CompiledPlugin:
        name = plugin.name
        description = plugin.metadata.description or f"The {name} plugin."
        executor: Any
        try:
            if isinstance(plugin, SqlPlugin):
                executor = SqlExecutor(plugin.spec.sql_data, self._sql_engine(plugin, connections))
            elif isinstance(plugin, ApiPlugin):
                config = connections.api[plugin.spec.connection].spec.connection
                key = _secret(config.api_key, connections.secrets)
                executor = ApiExecutor(plugin.spec.api_data, config, key, self.http)
            else:
                assert isinstance(plugin, Plugin)
                executor = StaticExecutor(plugin.spec.data.static_data)
            tool = Tool(name, description, executor.schema(), executor)
        except (SecretUnavailable, ToolError) as exc:
            log.warning(
                "plugin cannot run on this host", extra={"plugin": name, "reason": str(exc)}
            )
            tool = Tool(name, description, {"type": "object", "properties": {}}, _failing(str(exc)))
        selector, prompt = plugin.spec.selector, plugin.spec.prompt
        return CompiledPlugin(
            name=name,
            kind=plugin.KIND,
            directive=selector.directive,
            search_terms=tuple(t.lower() for t in selector.search_terms),
            system_role=prompt.system_role,
            model=prompt.model,
            temperature=prompt.temperature,
            max_tokens=prompt.max_tokens,
            tool=tool,
            document=plugin,
        )

    def _sql_engine(self, plugin: SqlPlugin, connections: _Connections) -> Engine:
        """The pool of the plugin's connection, shared by its plugins until it changes."""
        key = f"SqlConnection/{plugin.spec.connection}"
        engine = self._sql_engines.get(key)
        if engine is None:
            config = connections.sql[plugin.spec.connection].spec.connection
            password = _secret(config.password, connections.secrets)
            engine = sql_engine(config, password, self.settings.data_dir)
            self._sql_engines[key] = engine
        return engine

    def _function(self, name: str) -> Tool:
        """The tool of a built-in function: one object per function, shared by every client
        that lists it (10,000 clients, one calculator)."""
        canonical = canonical_function(name) or name
        tool = self._functions.get(canonical)
        if tool is not None:
            return tool
        schema = function_tool_schema(canonical)["function"]

        async def execute(arguments: Mapping[str, Any]) -> str:
            return await run_function(
                canonical, dict(arguments), settings=self.settings.functions, http=self.http
            )

        tool = Tool(canonical, schema["description"], schema["parameters"], execute)
        self._functions[canonical] = tool
        return tool

    def _client(self, client: LLMClient, tokens: Mapping[str, SmarterAuthToken]) -> CompiledClient:
        spec, config = client.spec, client.spec.config
        key = KeyPolicy()
        token = tokens.get(spec.api_key) if spec.api_key is not None else None
        if token is not None and token.spec.config.is_active:
            key = KeyPolicy(
                True,
                token.name,
                tuple(token.spec.config.digest),
                token.spec.config.expires_at,
            )
        return CompiledClient(
            name=client.name,
            provider=config.provider,
            model=config.default_model,
            temperature=config.default_temperature,
            max_tokens=config.default_max_tokens,
            system_role=config.default_system_role or "",
            plugins=tuple(self._plugins[p] for p in spec.plugins if p in self._plugins),
            functions=tuple(self._function(f) for f in spec.functions),
            key=key,
            ui=config.model_dump(mode="json", by_alias=True, include=UI_ATTRIBUTES),
            document=client,
            id=resource_id("LLMClient", client.name),
            hashed_id=hashed_id("LLMClient", client.name),
            rate_limits=rate_limits(client.metadata.annotations),
        )

    def close(self) -> None:
        for engine in self._sql_engines.values():
            engine.dispose()
        self._sql_engines.clear()
