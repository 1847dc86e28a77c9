"""Migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from reconciler.store.db import open_database, schema_is_current, upgrade
from reconciler.store.schema import metadata


def test_migrations_produce_the_declared_schema(engine: Engine) -> None:
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []
    assert schema_is_current(engine)


def test_upgrade_is_idempotent(database_url: str) -> None:
    engine = open_database(database_url)
    upgrade(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"llm_clients", "plugins", "client_plugins", "secrets", "syncs", "state"} <= tables
    engine.dispose()
