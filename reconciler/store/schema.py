"""The database schema: normalised tables a person can read with SQL.

Part of Apply and of every reader of the actual state (plan, status, the chat server). One
table per kind (the three plugin kinds share ``plugins`` plus a detail table each), link tables
for lists of references, ``syncs`` for history and a single ``state`` row. Every resource row
records where it came from: the source, the file, and the revision that last changed it.

Secret values are never stored: ``secrets`` holds how to obtain a value (an environment
variable, a file, or a sealed ciphertext that only the daemon's key opens) or, for plaintext
allowed by configuration, only a fingerprint.

Changes to this module need an Alembic migration in ``store/migrations/versions``; a test
checks that the migrations produce exactly this schema.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

from reconciler.store import console_tables
from reconciler.store.metadata import metadata as metadata

NAME = 50
# The console's tables are defined in their own module, on the same metadata.
console_sessions, processes = console_tables.console_sessions, console_tables.processes


def _resource_columns() -> list[Column[object]]:
    """What every resource table starts with: identity, provenance, common metadata."""
    return [
        Column("id", Integer, primary_key=True),
        Column("name", String(NAME), nullable=False, unique=True),
        Column("source", String(200), nullable=False, index=True),
        Column("file", Text, nullable=False),
        Column("revision", String(80), nullable=False, comment="revision that last changed it"),
        Column("description", Text),
        Column("version", String(100)),
        Column("tags", JSON, nullable=False),
        Column("annotations", JSON, nullable=False),
        Column("account_number", String(14)),
        Column("owner_username", String(200), comment="metadata.username"),
    ]


def _secret_ref(column: str) -> Column[object]:
    return Column(column, ForeignKey("secrets.id"), comment="a Secret: never its value")


secrets = Table(
    "secrets",
    metadata,
    *_resource_columns(),
    Column("value_source", String(10), nullable=False),
    Column("env_name", String(200)),
    Column("file_path", Text),
    Column("encrypted_value", Text, comment="sealed to the daemon's key; safe as in git"),
    Column("value_fingerprint", String(30), comment="plaintext only: sha256 prefix, no value"),
    Column("expiration_date", DateTime(timezone=True)),
    CheckConstraint("value_source IN ('env', 'file', 'encrypted', 'plaintext')", name="source"),
)

providers = Table(
    "providers",
    metadata,
    *_resource_columns(),
    Column("display_name", Text),
    Column("base_url", Text, nullable=False),
    _secret_ref("api_key_secret_id"),
    Column("default_model", Text),
    Column("connectivity_test_path", Text),
    Column("provider_description", Text),
    Column("website_url", Text),
    Column("docs_url", Text),
    Column("logo_url", Text),
    Column("terms_of_use_url", Text),
    Column("privacy_policy_url", Text),
    Column("contact_email", Text),
    Column("support_email", Text),
    Column("logo", Text, comment="Smarter's current name of logo_url"),
    Column("terms_of_service_url", Text, comment="Smarter's current name of terms_of_use_url"),
)

sql_connections = Table(
    "sql_connections",
    metadata,
    *_resource_columns(),
    Column("db_engine", String(60), nullable=False),
    Column("hostname", Text),
    Column("port", Integer),
    Column("database_name", Text, nullable=False),
    Column("username", Text),
    _secret_ref("password_secret_id"),
    Column("timeout_seconds", Integer, nullable=False),
    Column("use_ssl", Boolean, nullable=False),
    Column("ssl_cert", Text),
    Column("ssl_key", Text),
    Column("ssl_ca", Text),
    Column("proxy_host", Text),
    Column("proxy_port", Integer),
    Column("proxy_username", Text),
    _secret_ref("proxy_password_secret_id"),
    Column("ssh_known_hosts", Text),
    Column("pool_size", Integer, nullable=False),
    Column("max_overflow", Integer, nullable=False),
    Column("authentication_method", String(20), nullable=False),
)

api_connections = Table(
    "api_connections",
    metadata,
    *_resource_columns(),
    Column("base_url", Text, nullable=False),
    _secret_ref("api_key_secret_id"),
    Column("auth_method", String(10), nullable=False),
    Column("timeout_seconds", Integer, nullable=False),
    Column("proxy_protocol", String(10)),
    Column("proxy_host", Text),
    Column("proxy_port", Integer),
    Column("proxy_username", Text),
    _secret_ref("proxy_password_secret_id"),
)

plugins = Table(
    "plugins",
    metadata,
    *_resource_columns(),
    Column("kind", String(20), nullable=False),
    Column("plugin_class", String(10)),
    Column("selector_directive", String(20), nullable=False),
    Column("search_terms", JSON, nullable=False),
    Column("prompt_provider", String(NAME), nullable=False, comment="a provider's name"),
    Column("prompt_system_role", Text, nullable=False),
    Column("prompt_model", Text),
    Column("prompt_temperature", Float),
    Column("prompt_max_tokens", Integer),
    CheckConstraint("kind IN ('Plugin', 'SqlPlugin', 'ApiPlugin')", name="kind"),
)


def _plugin_detail(name: str, *columns: Column[object]) -> Table:
    return Table(
        name,
        metadata,
        Column("plugin_id", ForeignKey("plugins.id", ondelete="CASCADE"), primary_key=True),
        *columns,
    )


static_plugin_data = _plugin_detail("static_plugin_data", Column("static_data", JSON))
sql_plugin_data = _plugin_detail(
    "sql_plugin_data",
    Column("connection_id", ForeignKey("sql_connections.id"), nullable=False),
    Column("parameters", JSON, nullable=False),
    Column("sql_query", Text, nullable=False),
    Column("test_values", JSON, nullable=False),
    Column("row_limit", Integer, nullable=False),
)
api_plugin_data = _plugin_detail(
    "api_plugin_data",
    Column("connection_id", ForeignKey("api_connections.id"), nullable=False),
    Column("parameters", JSON, nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("method", String(10), nullable=False),
    Column("url_params", JSON, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("body", JSON),
    Column("test_values", JSON, nullable=False),
    Column("response_limit", Integer, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    *_resource_columns(),
    Column("is_active", Boolean, nullable=False),
    Column("username", Text),
    Column("expires_at", DateTime(timezone=True)),
)

api_token_digests = Table(
    "api_token_digests",
    metadata,
    Column("token_id", ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column(
        "digest",
        String(140),
        nullable=False,
        unique=True,
        comment="sha256:/sha512: hex digest of a key; never the key",
    ),
)

llm_clients = Table(
    "llm_clients",
    metadata,
    *_resource_columns(),
    Column("provider", String(NAME), nullable=False, comment="a provider's name"),
    Column("default_model", Text, nullable=False),
    Column("default_system_role", Text),
    Column("default_temperature", Float, nullable=False),
    Column("default_max_tokens", Integer, nullable=False),
    Column("deployed", Boolean, nullable=False),
    Column("subdomain", Text),
    Column("custom_domain", JSON),
    Column("app_name", Text),
    Column("app_assistant", Text),
    Column("app_welcome_message", Text),
    Column("app_example_prompts", JSON, nullable=False),
    Column("app_placeholder", Text),
    Column("app_info_url", Text),
    Column("app_background_image_url", Text),
    Column("app_logo_url", Text),
    Column("app_file_attachment", Boolean, nullable=False),
    Column("allowed_origins", JSON, nullable=False),
    Column("styles", JSON, comment="Smarter Chat's look (current format), kept"),
    Column("manifest_format", String(20), comment="'current': the file used that format"),
)

client_plugins = Table(
    "client_plugins",
    metadata,
    Column("client_id", ForeignKey("llm_clients.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("plugin_id", ForeignKey("plugins.id"), nullable=False, index=True),
)

client_functions = Table(
    "client_functions",
    metadata,
    Column("client_id", ForeignKey("llm_clients.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("function", String(40), nullable=False),
)

client_tokens = Table(
    "client_tokens",
    metadata,
    Column("client_id", ForeignKey("llm_clients.id", ondelete="CASCADE"), primary_key=True),
    Column("token_id", ForeignKey("api_tokens.id"), nullable=False, index=True),
)

budgets = Table(
    "budgets",
    metadata,
    *_resource_columns(),
    Column("unit", String(10), nullable=False, comment="cost (US dollars) or tokens"),
    Column("periodic_limit", Numeric(24, 6), nullable=False, comment="per period; 0: none"),
    Column("absolute_limit", Numeric(24, 6), nullable=False, comment="in total; 0: none"),
    Column("period", String(10), nullable=False),
    Column("duration", Integer, nullable=False, comment="periods it applies for; 0: always"),
    Column("action", String(10), nullable=False),
    Column("warning_threshold", Integer, nullable=False, comment="percent; 0: never"),
    Column("message", Text, comment="what a refused caller is told"),
    Column(
        "resources",
        JSON,
        nullable=False,
        comment="[{kind, name, accountNumber}]: each gets the limits for itself",
    ),
    CheckConstraint("unit IN ('cost', 'tokens')", name="unit"),
    CheckConstraint("action IN ('block', 'warn')", name="action"),
    CheckConstraint("period IN ('hour', 'day', 'week', 'month')", name="period"),
)

budget_attachments = Table(
    "budget_attachments",
    metadata,
    Column("budget", String(NAME), primary_key=True),
    Column("resource_kind", String(40), primary_key=True),
    Column("resource_name", String(NAME), primary_key=True),
    Column(
        "attached_at",
        DateTime(timezone=True),
        nullable=False,
        comment="when a revision first listed the resource in the budget",
    ),
)
"""When each budget was attached to each of its resources (written by Apply, in the
revision's transaction): where its absolute limit and its duration count from. A resource
removed from the list is detached (its row goes); listed again, it starts afresh."""

syncs = Table(
    "syncs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source", String(200), nullable=False, index=True),
    Column("revision", String(80), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("created", Integer, nullable=False),
    Column("updated", Integer, nullable=False),
    Column("deleted", Integer, nullable=False),
    Column("generation", BigInteger, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("errors", JSON, nullable=False, comment="diagnostics; never secret values"),
    CheckConstraint(
        "outcome IN ('applied', 'unchanged', 'invalid', 'refused', 'failed')", name="outcome"
    ),
)

state = Table(
    "state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source", String(200), comment="the source applied last"),
    Column("last_applied_revision", String(80)),
    Column("last_attempted_revision", String(80)),
    Column(
        "last_applied_digest",
        String(80),
        comment="what the applied revision's files were read from (git tree and path)",
    ),
    Column(
        "generation",
        BigInteger,
        nullable=False,
        comment="bumped once per revision that changed something",
    ),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column(
        "suspended",
        Boolean,
        nullable=False,
        server_default=false(),
        comment="samops suspend: the daemon applies nothing until resumed",
    ),
    Column("suspended_reason", Text),
    Column(
        "fingerprint_key",
        String(64),
        comment="random HMAC key of plaintext-secret fingerprints (not a secret's value)",
    ),
    Column(
        "reconcile_requested_at",
        DateTime(timezone=True),
        comment="samops reconcile: the daemon runs a pass when this moves",
    ),
    CheckConstraint("id = 1", name="single_row"),
)

generation_changes = Table(
    "generation_changes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "generation",
        BigInteger,
        nullable=False,
        index=True,
        comment="the generation whose apply made this change",
    ),
    Column("kind", String(40), nullable=False),
    Column("name", String(NAME), nullable=False),
    Column("action", String(10), nullable=False),
    CheckConstraint("action IN ('create', 'update', 'delete')", name="action"),
)
"""Which resources each applied generation changed, so that a serving process a generation
or a few behind reads only those rows (``store/changes.py``). The latest generations only."""

# --- chat sessions (written by the server, never by apply) ----------------------------------

chat_sessions = Table(
    "chat_sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_key", String(64), nullable=False, unique=True),
    Column("client_name", String(NAME), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column(
        "opened_by",
        String(NAME),
        comment="the SmarterAuthToken whose key opened the session; NULL: no key",
    ),
)


def _session_record(name: str, *columns: Column[object] | UniqueConstraint) -> Table:
    """A table of what happened in a chat session, deleted with it."""
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True),
        Column(
            "session_id",
            ForeignKey("chat_sessions.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        *columns,
        Column("created_at", DateTime(timezone=True), nullable=False),
    )


chat_messages = _session_record(
    "chat_messages",
    Column("position", Integer, nullable=False),
    Column("role", String(20), nullable=False),
    Column("content", Text),
    Column("tool_calls", JSON, comment="assistant tool calls, as the model sent them"),
    Column("tool_call_id", String(100)),
    Column("generation", BigInteger, nullable=False, comment="configuration that answered"),
    UniqueConstraint("session_id", "position"),
)

chat_tool_calls = _session_record(
    "chat_tool_calls",
    Column("tool", String(NAME), nullable=False),
    Column("arguments", JSON, nullable=False),
    Column("result", Text),
    Column("error", Text),
    Column("duration_ms", Integer, nullable=False),
)

chat_plugin_uses = _session_record(
    "chat_plugin_uses",
    Column("plugin", String(NAME), nullable=False),
)

chat_usage = Table(
    "chat_usage",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, comment="when the turn ended"),
    Column("client", String(NAME), nullable=False),
    Column("route", String(20), nullable=False, comment="openai or smarter"),
    Column("key_name", String(NAME), comment="the SmarterAuthToken of the key; NULL: none"),
    Column("session_key", String(64), comment="the chat session (Smarter's routes)"),
    Column("provider", String(NAME), nullable=False),
    Column("model", String(200), nullable=False, comment="the model the upstream was asked for"),
    Column("outcome", String(20), nullable=False),
    Column("upstream_calls", Integer, nullable=False),
    Column("prompt_tokens", BigInteger, comment="NULL: an upstream call did not say"),
    Column("completion_tokens", BigInteger),
    Column("total_tokens", BigInteger),
    Column("cost_usd", Numeric(20, 10), comment="NULL: unknown (no price for the model)"),
    Column("latency_ms", Integer, nullable=False),
    Column("generation", BigInteger, nullable=False, comment="configuration that answered"),
    CheckConstraint("outcome IN ('ok', 'failed')", name="outcome"),
    Index("ix_chat_usage_client_at", "client", "at"),
    Index("ix_chat_usage_key_name_at", "key_name", "at"),
    Index("ix_chat_usage_at", "at"),
)
"""What each chat turn cost: one row per turn, written in batches off the request path
(``serve/usage.py``); ``samops usage`` and plain SQL read it."""

quota_counters = Table(
    "quota_counters",
    metadata,
    Column("scope", String(200), primary_key=True, comment="what is counted, e.g. a budget"),
    Column("period_start", DateTime(timezone=True), primary_key=True),
    Column("used", Numeric(30, 10), nullable=False, comment="settled: what turns spent"),
    Column(
        "leased",
        Numeric(30, 10),
        nullable=False,
        comment="handed to serving processes and not yet settled or returned",
    ),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
"""Shared counters of budgets and rate limits, one row per scope and period: every serving
process takes slices of a limit from here atomically (``store/quotas.py``), so a fleet of
replicas shares one limit."""
