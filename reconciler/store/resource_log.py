"""One resource's log: where it comes from, when it last changed, and the syncs that touched it.

A read of the store, for Smarter's ``logs/{Kind}?name=`` (the server's manifest API). Syncs do
not list the resources they changed; a resource row records the revision that last changed
it and its file, so the log is the sync that applied that revision and every recent sync whose
errors point into the file. Errors are diagnostics, which never hold a secret value.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from reconciler.errors import DescribeError
from reconciler.store import schema
from reconciler.store.db import reading
from reconciler.store.mapping import KIND_TABLES
from reconciler.store.status import iso_time

RECENT_SYNCS = 200
"""Syncs searched for the resource's file, newest first."""


def resource_log(engine: Engine, kind: str, name: str, *, limit: int = 20) -> dict[str, Any]:
    """The log of resource ``name`` of ``kind``; DescribeError when there is none."""
    table = KIND_TABLES[kind].table
    with reading(engine) as connection:
        query = select(table.c.file, table.c.revision, table.c.source).where(table.c.name == name)
        if table is schema.plugins:
            query = query.where(schema.plugins.c.kind == kind)
        row = connection.execute(query).mappings().first()
        if row is None:
            connection.rollback()
            raise DescribeError(f"there is no {kind} named {name!r} (hint: samops get {kind})")
        syncs = (
            connection.execute(
                select(schema.syncs)
                .where(schema.syncs.c.source == row["source"])
                .order_by(schema.syncs.c.id.desc())
                .limit(RECENT_SYNCS)
            )
            .mappings()
            .all()
        )
        connection.rollback()
    entries = []
    for sync in syncs:
        errors = [e for e in sync["errors"] if e.get("file") == row["file"]]
        changed = sync["outcome"] == "applied" and sync["revision"] == row["revision"]
        if errors or changed:
            entries.append(
                {
                    "revision": sync["revision"],
                    "outcome": sync["outcome"],
                    "finished_at": iso_time(sync["finished_at"]),
                    "changed_this_resource": changed,
                    "errors": errors,
                }
            )
        if len(entries) >= limit:
            break
    return {
        "kind": kind,
        "name": name,
        "file": row["file"],
        "last_changed_revision": row["revision"],
        "syncs": entries,
    }
