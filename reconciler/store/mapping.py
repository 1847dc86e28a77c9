"""How each kind's canonical fields map to table columns, in both directions.

Used by Apply (fields -> rows) and by the state reader (rows -> fields). Each kind is declared
once as a list of (column, model attribute path) pairs; the keys of the canonical fields are
derived from the kind's model (``alias_path``), so the manifest's spelling is never written
twice and a renamed attribute fails at import. Writing and reading cannot drift apart; a test
round-trips every kind through the database and compares the fields exactly.

References to other resources are stored as foreign keys (``Ref``) and lists of them as link
tables (``Links``); provider names stay plain names because the built-in ``openai`` provider
has no row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from sqlalchemy import Table

from reconciler.sam.base import alias_path
from reconciler.sam.budget_kind import canonical_amount
from reconciler.sam.kinds import KINDS, Secret
from reconciler.store import schema

Path = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Col:
    """``column`` holds the value at ``path``; ``ref`` names the table a name refers to."""

    column: str
    path: Path
    ref: Table | None = None
    timestamp: bool = False
    amount: bool = False
    """A decimal amount, written in the fields as text (``budget_kind.canonical_amount``)."""


@dataclass(frozen=True, slots=True)
class Links:
    """A list at ``path`` stored as rows of ``table`` (``parent``, ``position``, value)."""

    path: Path
    table: Table
    parent: str
    value: str
    ref: Table | None = None
    single: bool = False  # a single optional reference (no position column)


@dataclass(frozen=True, slots=True)
class KindTable:
    kind: str
    table: Table
    columns: tuple[Col, ...]
    detail: Table | None = None
    detail_columns: tuple[Col, ...] = ()
    links: tuple[Links, ...] = field(default=())


def _p(dotted: str) -> Path:
    return tuple(dotted.split("."))


def _cols(prefix: str, pairs: str, **refs: Table) -> tuple[Col, ...]:
    """``"column other=attribute"`` under ``prefix`` (a column named as its model attribute
    needs no ``=``); ``refs`` marks foreign-key columns."""
    out = []
    for pair in pairs.split():
        column, _, attribute = pair.partition("=")
        out.append(Col(column, _p(f"{prefix}.{attribute or column}"), ref=refs.get(column)))
    return tuple(out)


def _resolved(table: KindTable) -> KindTable:
    """``table`` with every attribute path replaced by the key path of the canonical fields."""
    model = KINDS[table.kind]

    def col(c: Col) -> Col:
        return replace(c, path=alias_path(model, c.path))

    return replace(
        table,
        columns=tuple(col(c) for c in table.columns),
        detail_columns=tuple(col(c) for c in table.detail_columns),
        links=tuple(replace(link, path=alias_path(model, link.path)) for link in table.links),
    )


METADATA = _cols(
    "metadata",
    "description version tags annotations account_number owner_username=username",
)
PLUGIN_COMMON = (
    Col("plugin_class", _p("metadata.plugin_class")),
    *_cols(
        "spec",
        "selector_directive=selector.directive search_terms=selector.search_terms "
        "prompt_provider=prompt.provider prompt_system_role=prompt.system_role "
        "prompt_model=prompt.model prompt_temperature=prompt.temperature "
        "prompt_max_tokens=prompt.max_tokens",
    ),
)


def _plugin_table(kind: str, detail: Table, *detail_columns: Col) -> KindTable:
    """The three plugin kinds share one table of names (one namespace) and a table each for
    their kind's data."""
    return KindTable(kind, schema.plugins, (*METADATA, *PLUGIN_COMMON), detail, detail_columns)


KIND_TABLES: dict[str, KindTable] = {
    t.kind: _resolved(t)
    for t in (
        KindTable(
            "Secret",
            schema.secrets,
            (
                *METADATA,
                *_cols(
                    "spec.config",
                    "env_name=value_from.env file_path=value_from.file "
                    "encrypted_value value_fingerprint",
                ),
                Col("expiration_date", _p("spec.config.expiration_date"), timestamp=True),
            ),
        ),
        KindTable(
            "Provider",
            schema.providers,
            (
                *METADATA,
                *_cols(
                    "spec.provider",
                    "display_name=name base_url api_key_secret_id=api_key "
                    "default_model connectivity_test_path "
                    "provider_description=description website_url docs_url "
                    "logo_url terms_of_use_url "
                    "privacy_policy_url contact_email "
                    "support_email logo terms_of_service_url",
                    api_key_secret_id=schema.secrets,
                ),
            ),
        ),
        KindTable(
            "SqlConnection",
            schema.sql_connections,
            (
                *METADATA,
                *_cols(
                    "spec.connection",
                    "db_engine hostname port database_name=database "
                    "username password_secret_id=password timeout_seconds=timeout "
                    "use_ssl ssl_cert ssl_key ssl_ca "
                    "proxy_host proxy_port proxy_username "
                    "proxy_password_secret_id=proxy_password ssh_known_hosts "
                    "pool_size max_overflow "
                    "authentication_method",
                    password_secret_id=schema.secrets,
                    proxy_password_secret_id=schema.secrets,
                ),
            ),
        ),
        KindTable(
            "ApiConnection",
            schema.api_connections,
            (
                *METADATA,
                *_cols(
                    "spec.connection",
                    "base_url api_key_secret_id=api_key auth_method "
                    "timeout_seconds=timeout proxy_protocol proxy_host "
                    "proxy_port proxy_username "
                    "proxy_password_secret_id=proxy_password",
                    api_key_secret_id=schema.secrets,
                    proxy_password_secret_id=schema.secrets,
                ),
            ),
        ),
        _plugin_table(
            "Plugin", schema.static_plugin_data, Col("static_data", _p("spec.data.static_data"))
        ),
        _plugin_table(
            "SqlPlugin",
            schema.sql_plugin_data,
            Col("connection_id", _p("spec.connection"), ref=schema.sql_connections),
            *_cols("spec.sql_data", "parameters sql_query test_values row_limit=limit"),
        ),
        _plugin_table(
            "ApiPlugin",
            schema.api_plugin_data,
            Col("connection_id", _p("spec.connection"), ref=schema.api_connections),
            *_cols(
                "spec.api_data",
                "parameters endpoint method url_params headers body test_values "
                "response_limit=limit",
            ),
        ),
        KindTable(
            "SmarterAuthToken",
            schema.api_tokens,
            (
                *METADATA,
                *_cols("spec.config", "is_active username"),
                Col("expires_at", _p("spec.config.expires_at"), timestamp=True),
            ),
            links=(
                Links(_p("spec.config.digest"), schema.api_token_digests, "token_id", "digest"),
            ),
        ),
        KindTable(
            "Budget",
            schema.budgets,
            (
                *METADATA,
                *_cols(
                    "spec.config",
                    "unit period duration action warning_threshold message",
                ),
                Col("periodic_limit", _p("spec.config.periodic_limit"), amount=True),
                Col("absolute_limit", _p("spec.config.absolute_limit"), amount=True),
                Col("resources", _p("spec.resources")),
            ),
        ),
        KindTable(
            "LLMClient",
            schema.llm_clients,
            (
                *METADATA,
                *_cols(
                    "spec.config",
                    "provider default_model "
                    "default_system_role "
                    "default_temperature default_max_tokens "
                    "deployed subdomain custom_domain "
                    "app_name app_assistant "
                    "app_welcome_message "
                    "app_example_prompts app_placeholder "
                    "app_info_url app_background_image_url "
                    "app_logo_url app_file_attachment allowed_origins styles",
                ),
                Col("manifest_format", _p("spec.manifest_format")),
            ),
            links=(
                Links(
                    _p("spec.plugins"),
                    schema.client_plugins,
                    "client_id",
                    "plugin_id",
                    ref=schema.plugins,
                ),
                Links(_p("spec.functions"), schema.client_functions, "client_id", "function"),
                Links(
                    _p("spec.api_key"),
                    schema.client_tokens,
                    "client_id",
                    "token_id",
                    ref=schema.api_tokens,
                    single=True,
                ),
            ),
        ),
    )
}


def get_path(data: Mapping[str, Any], path: Path) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def set_path(data: dict[str, Any], path: Path, value: Any) -> None:
    target = data
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


def to_column(col: Col, value: Any, ids: Mapping[Table, Mapping[str, int]]) -> Any:
    """A canonical value as the column stores it."""
    if value is None:
        return None
    if col.ref is not None:
        return ids[col.ref][value]
    if col.timestamp:
        return dt.datetime.fromisoformat(value)
    if col.amount:
        return Decimal(value)
    return value


def from_column(col: Col, value: Any, names: Mapping[Table, Mapping[int, str]]) -> Any:
    """A stored value back in canonical (JSON) form."""
    if value is None:
        return None
    if col.ref is not None:
        return names[col.ref][value]
    if col.timestamp:
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if col.amount:
        return canonical_amount(Decimal(value))
    return value


def value_source(secret: Secret) -> str:
    """How a Secret's value is obtained, for the ``secrets.value_source`` column."""
    config = secret.spec.config
    if config.encrypted_value:
        return "encrypted"
    if config.value_fingerprint:
        return "plaintext"
    return "env" if config.value_from is not None and config.value_from.env else "file"
