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

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Table, delete, insert, select, update

from reconciler.desired import Identity, ResourceState
from reconciler.plan import Plan
from reconciler.progress import Progress
from reconciler.sam.kinds import Secret
from reconciler.store import schema
from reconciler.store.mapping import KIND_TABLES, KindTable, get_path, to_column, value_source
from reconciler.store.read import REFERENCED_TABLES


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

    def create(self, spec: KindTable, state: ResourceState) -> None:
        result = self.connection.execute(insert(spec.table).values(self.values(spec, state)))
        row_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        if spec.table in self.ids:
            self.ids[spec.table][state.name] = row_id
        self.children(spec, state, row_id)

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
        self.children(spec, state, row_id)

    def children(self, spec: KindTable, state: ResourceState, row_id: int) -> None:
        if spec.detail is not None:
            self.connection.execute(
                insert(spec.detail).values(plugin_id=row_id, **self.detail_values(spec, state))
            )
        for link in spec.links:
            value = get_path(state.fields, link.path)
            items = ([] if value is None else [value]) if link.single else list(value)
            rows = []
            for position, item in enumerate(items):
                stored = self.ids[link.ref][item] if link.ref is not None else item
                row = {link.parent: row_id, link.value: stored}
                if not link.single:
                    row["position"] = position
                rows.append(row)
            if rows:
                self.connection.execute(insert(link.table), rows)

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
    for done, change in enumerate(plan.changes, start=1):
        if progress is not None:
            progress("changes written", done, len(plan.changes))
        spec = KIND_TABLES[change.kind]
        if change.action == "delete":
            if (change.kind, change.name) not in retyped.values():
                writer.delete(spec, change.name)
            continue
        state = desired[(change.kind, change.name)]
        if change.action == "create" and change.name in retyped:
            writer.update(spec, state, retype_from=retyped[change.name][0])
        elif change.action == "create":
            writer.create(spec, state)
        else:
            writer.update(spec, state)


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
