"""Reading the actual state: rows back into canonical fields, plus the state row and history.

Used by Plan (desired vs actual), by ``status``/``get``/``describe`` and, later, by the chat
server. The inverse of ``store/write.py``, both driven by ``store/mapping.py``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, select

from reconciler.desired import Identity, ResourceState
from reconciler.sam.base import alias_path
from reconciler.sam.kinds import Secret
from reconciler.store import schema
from reconciler.store.mapping import KIND_TABLES, from_column, get_path, set_path

REFERENCED_TABLES = (
    schema.secrets,
    schema.sql_connections,
    schema.api_connections,
    schema.plugins,
    schema.api_tokens,
)


@dataclass(frozen=True, slots=True)
class StateRow:
    source: str | None
    last_applied_revision: str | None
    last_attempted_revision: str | None
    generation: int
    updated_at: dt.datetime | None
    last_applied_digest: str | None = None
    fingerprint_key: str | None = None
    """Hex HMAC key of this database's plaintext-secret fingerprints (None until one is needed)."""


EMPTY_STATE = StateRow(None, None, None, 0, None)


def read_state(connection: Connection, *, for_update: bool = False) -> StateRow:
    """The single state row (zeros before the first apply). ``for_update`` locks it on
    PostgreSQL so concurrent applies run one after the other."""
    query = select(schema.state).where(schema.state.c.id == 1)
    if for_update:
        query = query.with_for_update()
    row = connection.execute(query).mappings().first()
    if row is None:
        return EMPTY_STATE
    return StateRow(
        row["source"],
        row["last_applied_revision"],
        row["last_attempted_revision"],
        row["generation"],
        row["updated_at"],
        row["last_applied_digest"],
        row["fingerprint_key"],
    )


def name_maps(connection: Connection) -> dict[Table, dict[int, str]]:
    """id -> name for every table that references point at."""
    return {
        table: dict(connection.execute(select(table.c.id, table.c.name)).all())
        for table in REFERENCED_TABLES
    }


def read_identities(connection: Connection) -> set[Identity]:
    """(kind, name) of every resource row, reading nothing else."""
    found: set[Identity] = set()
    for kind, spec in KIND_TABLES.items():
        query = select(spec.table.c.name)
        if spec.table is schema.plugins:
            query = query.where(schema.plugins.c.kind == kind)
        found.update((kind, name) for (name,) in connection.execute(query))
    return found


CHUNK = 500
"""Names or ids per ``IN (...)`` of a partial read (well under every driver's limit)."""


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def read_actual(
    connection: Connection,
    *,
    source: str | None = None,
    only: Collection[Identity] | None = None,
) -> dict[Identity, ResourceState]:
    """Every resource row (of ``source``, or of all sources) as canonical fields; with
    ``only``, just those identities (the ones that exist), reading no other row."""
    rows_by_kind: dict[str, list[Any]] = {}
    for kind, spec in KIND_TABLES.items():
        query = select(spec.table)
        if spec.detail is not None:
            query = select(spec.table, *[spec.detail.c[c.column] for c in spec.detail_columns])
            query = query.join(spec.detail, spec.detail.c.plugin_id == spec.table.c.id)
        if spec.table is schema.plugins:
            query = query.where(schema.plugins.c.kind == kind)
        if source is not None:
            query = query.where(spec.table.c.source == source)
        if only is None:
            rows_by_kind[kind] = list(connection.execute(query).mappings())
            continue
        wanted = sorted(name for k, name in only if k == kind)
        rows_by_kind[kind] = [
            row
            for chunk in _chunks(wanted)
            for row in connection.execute(query.where(spec.table.c.name.in_(chunk))).mappings()
        ]
    links = {
        kind: _links(
            connection, KIND_TABLES[kind].links, None if only is None else [r["id"] for r in rows]
        )
        for kind, rows in rows_by_kind.items()
        if rows
    }
    names = name_maps(connection) if only is None else _names(connection, rows_by_kind, links)
    states: dict[Identity, ResourceState] = {}
    for kind, rows in rows_by_kind.items():
        spec = KIND_TABLES[kind]
        for row in rows:
            fields: dict[str, Any] = {"metadata": {"name": row["name"]}}
            for col in (*spec.columns, *spec.detail_columns):
                set_path(fields, col.path, from_column(col, row[col.column], names))
            for link in spec.links:
                values = [
                    names[link.ref][v] if link.ref is not None else v
                    for v in links[kind][link.table].get(row["id"], [])
                ]
                set_path(
                    fields, link.path, (values[0] if values else None) if link.single else values
                )
            if kind == "Secret":
                _fold_value_from(fields)
            states[(kind, row["name"])] = ResourceState(kind, row["name"], row["file"], fields)
    return states


def _names(
    connection: Connection,
    rows_by_kind: Mapping[str, list[Any]],
    links: Mapping[str, Mapping[Table, Mapping[int, list[Any]]]],
) -> dict[Table, dict[int, str]]:
    """id -> name of just the rows that ``rows_by_kind`` and their ``links`` refer to."""
    wanted: dict[Table, set[int]] = defaultdict(set)
    for kind, rows in rows_by_kind.items():
        spec = KIND_TABLES[kind]
        for col in (*spec.columns, *spec.detail_columns):
            if col.ref is not None:
                wanted[col.ref].update(r[col.column] for r in rows if r[col.column] is not None)
        for link in spec.links:
            if link.ref is not None and kind in links:
                for values in links[kind][link.table].values():
                    wanted[link.ref].update(values)
    names: dict[Table, dict[int, str]] = {table: {} for table in REFERENCED_TABLES}
    for table, ids in wanted.items():
        for chunk in _chunks(sorted(ids)):
            query = select(table.c.id, table.c.name).where(table.c.id.in_(chunk))
            names[table].update((id_, name) for id_, name in connection.execute(query))
    return names


def _links(
    connection: Connection, links: tuple[Any, ...], parents: list[int] | None
) -> dict[Table, dict[int, list[Any]]]:
    """Each link table's values (row ids where they refer to rows) by parent row, in order;
    of ``parents`` only, when given."""
    found: dict[Table, dict[int, list[Any]]] = {}
    for link in links:
        table = link.table
        order = [table.c[link.parent]] + ([table.c.position] if "position" in table.c else [])
        query = select(table.c[link.parent], table.c[link.value]).order_by(*order)
        grouped: dict[int, list[Any]] = defaultdict(list)
        chunks = [None] if parents is None else list(_chunks(parents))
        for chunk in chunks:
            selected = query if chunk is None else query.where(table.c[link.parent].in_(chunk))
            for parent, value in connection.execute(selected):
                grouped[parent].append(value)
        found[table] = grouped
    return found


VALUE_FROM = alias_path(Secret, ("spec", "config", "value_from"))


def _fold_value_from(fields: dict[str, Any]) -> None:
    """A Secret's ``valueFrom`` is stored as two columns; both null is no ``valueFrom``."""
    if not any((get_path(fields, VALUE_FROM) or {}).values()):
        set_path(fields, VALUE_FROM, None)
