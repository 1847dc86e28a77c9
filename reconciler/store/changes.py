"""Change records: which resources each applied generation created, updated or deleted.

Written by Apply in the generation's own transaction (``record_changes``); read by serving
processes a generation or a few behind (``changes_since``), which then read only those rows
(``read.read_actual(only=...)``) and rebuild only their dependants, so that a one-file commit
costs every replica one row or two, whatever the number of clients. The last
``KEEP_GENERATIONS`` generations are kept; a process further behind, or one that finds a
generation of its range unrecorded (a database from before these records), reads everything.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, insert, select

from reconciler.desired import Identity
from reconciler.plan import Plan
from reconciler.store.schema import generation_changes

KEEP_GENERATIONS = 1000


def record_changes(connection: Connection, generation: int, plan: Plan) -> None:
    """The changes of ``plan``, as those of ``generation``; older records pruned."""
    rows = [
        {"generation": generation, "kind": c.kind, "name": c.name, "action": c.action}
        for c in plan.changes
    ]
    if rows:
        connection.execute(insert(generation_changes), rows)
    connection.execute(
        delete(generation_changes).where(
            generation_changes.c.generation <= generation - KEEP_GENERATIONS
        )
    )


def changes_since(
    connection: Connection, after: int, upto: int, *, limit: int
) -> set[Identity] | None:
    """The identities that generations ``after`` + 1 to ``upto`` changed; None when more
    than ``limit`` did, or when one of those generations has no record: then read it all."""
    if upto <= after:
        return set()
    if upto - after > KEEP_GENERATIONS:
        return None
    table = generation_changes
    rows = connection.execute(
        select(table.c.generation, table.c.kind, table.c.name)
        .where(table.c.generation > after, table.c.generation <= upto)
        .limit(limit + 1)
    ).all()
    if len(rows) > limit or len({row.generation for row in rows}) != upto - after:
        return None
    return {(row.kind, row.name) for row in rows}
