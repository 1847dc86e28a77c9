"""How each kind's canonical fields map to table columns, in both directions.

Used by Apply (fields -> rows) and by the state reader (rows -> fields). Each kind is declared
once as a list of (column, path) pairs, so writing and reading cannot drift apart; a test
round-trips every kind through the database and compares the fields exactly.

References to other resources are stored as foreign keys (``Ref``) and lists of them as link
tables (``Links``); provider names stay plain names because the built-in ``openai`` provider
has no row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table

from reconciler.store import schema

Path = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Col:
    """``column`` holds the value at ``path``; ``ref`` names the table a name refers to."""

    column: str
    path: Path
    ref: Table | None = None
    timestamp: bool = False


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
    """``"column=key other=key2"`` under ``prefix``; ``refs`` marks foreign-key columns."""
    out = []
    for pair in pairs.split():
        column, _, key = pair.partition("=")
        out.append(Col(column, _p(f"{prefix}.{key}"), ref=refs.get(column)))
    return tuple(out)


METADATA = _cols(
    "metadata",
    "description=description version=version tags=tags annotations=annotations "
    "account_number=accountNumber owner_username=username",
)
PLUGIN_COMMON = (
    Col("plugin_class", _p("metadata.pluginClass")),
    *_cols(
        "spec",
        "selector_directive=selector.directive search_terms=selector.searchTerms "
        "prompt_provider=prompt.provider prompt_system_role=prompt.systemRole "
        "prompt_model=prompt.model prompt_temperature=prompt.temperature "
        "prompt_max_tokens=prompt.maxTokens",
    ),
)

KIND_TABLES: dict[str, KindTable] = {
    t.kind: t
    for t in (
        KindTable(
            "Secret",
            schema.secrets,
            (
                *METADATA,
                *_cols(
                    "spec.config",
                    "env_name=valueFrom.env file_path=valueFrom.file "
                    "encrypted_value=encryptedValue value_fingerprint=valueFingerprint",
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
                    "display_name=name base_url=base_url api_key_secret_id=api_key "
                    "default_model=default_model connectivity_test_path=connectivity_test_path "
                    "provider_description=description website_url=website_url docs_url=docs_url "
                    "logo_url=logo_url terms_of_use_url=terms_of_use_url "
                    "privacy_policy_url=privacy_policy_url contact_email=contact_email "
                    "support_email=support_email",
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
                    "db_engine=dbEngine hostname=hostname port=port database_name=database "
                    "username=username password_secret_id=password timeout_seconds=timeout "
                    "use_ssl=useSsl ssl_cert=sslCert ssl_key=sslKey ssl_ca=sslCa "
                    "proxy_host=proxyHost proxy_port=proxyPort proxy_username=proxyUsername "
                    "proxy_password_secret_id=proxyPassword ssh_known_hosts=sshKnownHosts "
                    "pool_size=poolSize max_overflow=maxOverflow "
                    "authentication_method=authenticationMethod",
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
                    "base_url=baseUrl api_key_secret_id=apiKey auth_method=authMethod "
                    "timeout_seconds=timeout proxy_protocol=proxyProtocol proxy_host=proxyHost "
                    "proxy_port=proxyPort proxy_username=proxyUsername "
                    "proxy_password_secret_id=proxyPassword",
                    api_key_secret_id=schema.secrets,
                    proxy_password_secret_id=schema.secrets,
                ),
            ),
        ),
        KindTable(
            "Plugin",
            schema.plugins,
            (*METADATA, *PLUGIN_COMMON),
            schema.static_plugin_data,
            (Col("static_data", _p("spec.data.staticData")),),
        ),
        KindTable(
            "SqlPlugin",
            schema.plugins,
            (*METADATA, *PLUGIN_COMMON),
            schema.sql_plugin_data,
            (
                Col("connection_id", _p("spec.connection"), ref=schema.sql_connections),
                *_cols(
                    "spec.sqlData",
                    "parameters=parameters sql_query=sqlQuery test_values=testValues "
                    "row_limit=limit",
                ),
            ),
        ),
        KindTable(
            "ApiPlugin",
            schema.plugins,
            (*METADATA, *PLUGIN_COMMON),
            schema.api_plugin_data,
            (
                Col("connection_id", _p("spec.connection"), ref=schema.api_connections),
                *_cols(
                    "spec.apiData",
                    "parameters=parameters endpoint=endpoint method=method url_params=urlParams "
                    "headers=headers body=body test_values=testValues response_limit=limit",
                ),
            ),
        ),
        KindTable(
            "SmarterAuthToken",
            schema.api_tokens,
            (
                *METADATA,
                *_cols("spec.config", "is_active=isActive username=username"),
                Col("expires_at", _p("spec.config.expiresAt"), timestamp=True),
            ),
            links=(
                Links(_p("spec.config.digest"), schema.api_token_digests, "token_id", "digest"),
            ),
        ),
        KindTable(
            "LLMClient",
            schema.llm_clients,
            (
                *METADATA,
                *_cols(
                    "spec.config",
                    "provider=provider default_model=defaultModel "
                    "default_system_role=defaultSystemRole "
                    "default_temperature=defaultTemperature default_max_tokens=defaultMaxTokens "
                    "deployed=deployed subdomain=subdomain custom_domain=customDomain "
                    "app_name=appName app_assistant=appAssistant "
                    "app_welcome_message=appWelcomeMessage "
                    "app_example_prompts=appExamplePrompts app_placeholder=appPlaceholder "
                    "app_info_url=appInfoUrl app_background_image_url=appBackgroundImageUrl "
                    "app_logo_url=appLogoUrl app_file_attachment=appFileAttachment",
                ),
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
                    _p("spec.apiKey"),
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
    return value


def value_source(fields: Mapping[str, Any]) -> str:
    """How a Secret's value is obtained, for the ``secrets.value_source`` column."""
    config = get_path(fields, ("spec", "config"))
    if config.get("encryptedValue"):
        return "encrypted"
    if config.get("valueFingerprint"):
        return "plaintext"
    return "env" if (config.get("valueFrom") or {}).get("env") else "file"
