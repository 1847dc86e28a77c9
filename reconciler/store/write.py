"""Writing a plan's changes as rows, inside the caller's transaction.

Part of Apply; the inverse of ``store/read.py``. Creates and updates run in the plan's
(dependency) order, so a row always exists before a foreign key points at it; deletes run
last, in reverse dependency order, after the clients that listed a plugin have been updated.

A plugin that changes kind under the same name (Plugin -> SqlPlugin) is one ``delete`` and one
``create`` in the plan; here it becomes an in-place change of the ``plugins`` row, so the
clients' links to it stay valid within the transaction.

A key digest belongs to one token (``api_token_digests.digest`` is unique, across sources too:
a presented key must identify one token). A digest may move between tokens in one revision (a
renamed key is a create before a delete; a rotation may move a digest to another key), so the
digests of every token the plan updates or deletes are released first; the revision itself
never lists a digest twice (``sam/references.py`` checks it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Table, delete, func, insert, select, update

from reconciler.desired import Identity, ResourceState
from reconciler.plan import Plan
from reconciler.progress import Progress
from reconciler.sam.kinds import Budget, Secret
from reconciler.store import schema
from reconciler.store.mapping import KIND_TABLES, KindTable, get_path, to_column, value_source
from reconciler.store.read import REFERENCED_TABLES

CREATE_BATCH = 1000
"""New rows of one kind written per statement (and between two progress reports)."""


class _RowIds(dict[str, int]):
    """The row ids of one table by name, each read when first asked for: a change writes the
    rows it names, whatever the size of the tables."""

    def __init__(self, connection: Connection, table: Table) -> None:
        super().__init__()
        self.connection, self.table = connection, table

    def __missing__(self, name: str) -> int:
        found = self.connection.execute(
            select(self.table.c.id).where(self.table.c.name == name)
        ).scalar()
        if found is None:
            raise KeyError(name)
        self[name] = int(found)
        return int(found)


class _Writer:
    def __init__(self, connection: Connection, *, source: str, revision: str) -> None:
        self.connection = connection
        self.source = source
        self.revision = revision
        self.ids: dict[Table, dict[str, int]] = {
            table: _RowIds(connection, table) for table in REFERENCED_TABLES
        }

    def row_id(self, table: Table, name: str) -> int:
        found = self.connection.execute(select(table.c.id).where(table.c.name == name)).scalar()
        assert found is not None, f"{table.name} {name!r} should exist"
        return int(found)

    def values(self, spec: KindTable, state: ResourceState) -> dict[str, Any]:
        values = {
            "name": state.name,
            "source": self.source,
            "file": state.file,
            "revision": self.revision,
            **{
                c.column: to_column(c, get_path(state.fields, c.path), self.ids)
                for c in spec.columns
            },
        }
        if spec.table is schema.plugins:
            values["kind"] = spec.kind
        if spec.kind == "Secret":
            assert isinstance(state.model, Secret)
            values["value_source"] = value_source(state.model)
        return values

    def detail_values(self, spec: KindTable, state: ResourceState) -> dict[str, Any]:
        return {
            c.column: to_column(c, get_path(state.fields, c.path), self.ids)
            for c in spec.detail_columns
        }

    def create(self, spec: KindTable, states: list[ResourceState]) -> None:
        """New rows of one kind, in a few statements whatever their number (a cold apply of
        10,000 clients is a handful of statements per kind, not 40,000)."""
        if not states:
            return
        rows = [self.values(spec, state) for state in states]
        if self.connection.dialect.name == "postgresql":
            row_ids = self.reserved_ids(spec.table, len(rows))
            for row, row_id in zip(rows, row_ids, strict=True):
                row["id"] = row_id
            self.connection.execute(insert(spec.table), rows)
        else:
            returned = self.connection.execute(
                insert(spec.table).returning(spec.table.c.id, sort_by_parameter_order=True),
                rows,
            )
            row_ids = [int(row_id) for row_id in returned.scalars()]
        if spec.table in self.ids:
            self.ids[spec.table].update((s.name, i) for s, i in zip(states, row_ids, strict=True))
        self.children(spec, list(zip(states, row_ids, strict=True)))

    def reserved_ids(self, table: Table, count: int) -> list[int]:
        """``count`` ids from the table's sequence, in one statement. On PostgreSQL, rows
        inserted with their ids go as one short statement repeated (psycopg's pipelined
        executemany); with ``RETURNING`` they went as statements of a thousand rows each,
        whose text psycopg parses for placeholders without caching (a third of a cold
        apply's time at 10,000 clients, measured)."""
        sequence = func.pg_get_serial_sequence(table.name, "id")
        reserved = self.connection.execute(
            select(func.nextval(sequence)).select_from(func.generate_series(1, count))
        )
        return [int(row_id) for row_id in reserved.scalars()]

    def update(
        self, spec: KindTable, state: ResourceState, *, retype_from: str | None = None
    ) -> None:
        row_id = self.row_id(spec.table, state.name)
        self.connection.execute(
            update(spec.table).where(spec.table.c.id == row_id).values(self.values(spec, state))
        )
        if retype_from is not None:
            old = KIND_TABLES[retype_from]
            assert old.detail is not None
            self.connection.execute(delete(old.detail).where(old.detail.c.plugin_id == row_id))
        else:
            self.remove_children(spec, row_id)
        self.children(spec, [(state, row_id)])

    def children(self, spec: KindTable, rows: list[tuple[ResourceState, int]]) -> None:
        """The detail row and link rows of each (state, row id), one statement per table."""
        if spec.detail is not None:
            self.connection.execute(
                insert(spec.detail),
                [
                    {"plugin_id": row_id, **self.detail_values(spec, state)}
                    for state, row_id in rows
                ],
            )
        for link in spec.links:
            linked = []
            for state, row_id in rows:
                value = get_path(state.fields, link.path)
                items = ([] if value is None else [value]) if link.single else list(value)
                for position, item in enumerate(items):
                    stored = self.ids[link.ref][item] if link.ref is not None else item
                    row = {link.parent: row_id, link.value: stored}
                    if not link.single:
                        row["position"] = position
                    linked.append(row)
            if linked:
                self.connection.execute(insert(link.table), linked)

    def remove_children(self, spec: KindTable, row_id: int) -> None:
        for link in spec.links:
            self.connection.execute(delete(link.table).where(link.table.c[link.parent] == row_id))
        if spec.detail is not None:
            self.connection.execute(delete(spec.detail).where(spec.detail.c.plugin_id == row_id))

    def delete(self, spec: KindTable, name: str) -> None:
        row_id = self.row_id(spec.table, name)
        self.remove_children(spec, row_id)
        self.connection.execute(delete(spec.table).where(spec.table.c.id == row_id))
        if spec.table in self.ids:
            self.ids[spec.table].pop(name, None)


def write_plan(
    connection: Connection,
    plan: Plan,
    desired: Mapping[Identity, ResourceState],
    *,
    source: str,
    revision: str,
    progress: Progress | None = None,
) -> None:
    """Apply every change of ``plan`` through ``connection`` (the caller owns the transaction)."""
    writer = _Writer(connection, source=source, revision=revision)
    _release_digests(connection, plan)
    retyped = _plugins_changing_kind(plan)
    creates: list[ResourceState] = []  # consecutive creates of one kind, written together

    def flush(done: int) -> None:
        if creates:
            writer.create(KIND_TABLES[creates[0].kind], creates)
            creates.clear()
        if progress is not None:
            progress("changes written", done, len(plan.changes))

    for done, change in enumerate(plan.changes):
        spec = KIND_TABLES[change.kind]
        plain_create = change.action == "create" and change.name not in retyped
        if creates and (not plain_create or creates[0].kind != change.kind):
            flush(done)
        if plain_create:
            creates.append(desired[(change.kind, change.name)])
            if len(creates) < CREATE_BATCH:
                continue
            flush(done + 1)
            continue
        if change.action == "delete":
            if (change.kind, change.name) not in retyped.values():
                writer.delete(spec, change.name)
        elif change.action == "create":
            state = desired[(change.kind, change.name)]
            writer.update(spec, state, retype_from=retyped[change.name][0])
        else:
            writer.update(spec, desired[(change.kind, change.name)])
        if progress is not None:
            progress("changes written", done + 1, len(plan.changes))
    flush(len(plan.changes))
    _attach_budgets(connection, plan, desired)


def _attach_budgets(
    connection: Connection, plan: Plan, desired: Mapping[Identity, ResourceState]
) -> None:
    """Keep ``budget_attachments`` in step with the budgets the plan changes: a resource a
    budget lists for the first time is attached now; one it no longer lists is detached."""
    table = schema.budget_attachments
    now = dt.datetime.now(dt.UTC)
    for change in plan.changes:
        if change.kind != "Budget":
            continue
        existing = {
            (row.resource_kind, row.resource_name)
            for row in connection.execute(
                select(table.c.resource_kind, table.c.resource_name).where(
                    table.c.budget == change.name
                )
            )
        }
        listed: set[tuple[str, str]] = set()
        if change.action != "delete":
            budget = desired[(change.kind, change.name)].model
            assert isinstance(budget, Budget)
            listed = {(r.kind, r.name) for r in budget.spec.resources}
        for kind, name in existing - listed:
            connection.execute(
                delete(table).where(
                    table.c.budget == change.name,
                    table.c.resource_kind == kind,
                    table.c.resource_name == name,
                )
            )
        new = [
            {"budget": change.name, "resource_kind": k, "resource_name": n, "attached_at": now}
            for k, n in sorted(listed - existing)
        ]
        if new:
            connection.execute(insert(table), new)


def _release_digests(connection: Connection, plan: Plan) -> None:
    """Remove the digests of the tokens that the plan updates or deletes (see module doc)."""
    names = [c.name for c in plan.changes if c.kind == "SmarterAuthToken" and c.action != "create"]
    if names:
        tokens = select(schema.api_tokens.c.id).where(schema.api_tokens.c.name.in_(names))
        digests = schema.api_token_digests
        connection.execute(delete(digests).where(digests.c.token_id.in_(tokens)))


def _plugins_changing_kind(plan: Plan) -> dict[str, Identity]:
    """name -> (old kind, name) for plugins deleted and created under another plugin kind."""
    tables = {k: KIND_TABLES[k].table for k in KIND_TABLES}
    deleted = {
        c.name: c.kind
        for c in plan.changes
        if c.action == "delete" and tables[c.kind] is schema.plugins
    }
    return {
        c.name: (deleted[c.name], c.name)
        for c in plan.changes
        if c.action == "create" and tables[c.kind] is schema.plugins and c.name in deleted
    }
