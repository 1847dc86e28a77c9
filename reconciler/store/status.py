"""The status document: applied and attempted revisions, generation, recent syncs.

One source for ``samops status --format json`` and the server's ``/api/v1/status``, so the two
never disagree. Keys are documented in docs/cli.md and are only ever added to.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine, func, select

from reconciler.desired import KIND_ORDER
from reconciler.store import schema
from reconciler.store.control import read_control
from reconciler.store.db import reading
from reconciler.store.mapping import KIND_TABLES
from reconciler.store.read import read_state

STATUS_JSON_VERSION = 1
ERRORS_PER_SYNC = 20
"""Errors shown per sync; ``errors_total`` counts them all (``samops validate`` lists them)."""


def iso_time(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).isoformat()


def sync_json(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "revision": row["revision"],
        "outcome": row["outcome"],
        "started_at": iso_time(row["started_at"]),
        "finished_at": iso_time(row["finished_at"]),
        "duration_ms": row["duration_ms"],
        "created": row["created"],
        "updated": row["updated"],
        "deleted": row["deleted"],
        "generation": row["generation"],
        "errors": row["errors"][:ERRORS_PER_SYNC],
        "errors_total": len(row["errors"]),
    }


def status_document(engine: Engine, *, history: int = 5) -> dict[str, Any]:
    """The status document (``samops status --format json``, later ``/api/v1/status``)."""
    with reading(engine) as connection:
        state = read_state(connection)
        control = read_control(connection)
        syncs = (
            connection.execute(
                select(schema.syncs).order_by(schema.syncs.c.id.desc()).limit(max(history, 1))
            )
            .mappings()
            .all()
        )
        counts = {}
        for kind in KIND_ORDER:
            table = KIND_TABLES[kind].table
            query = select(func.count()).select_from(table)
            if table is schema.plugins:
                query = query.where(schema.plugins.c.kind == kind)
            counts[kind] = connection.execute(query).scalar_one()
        connection.rollback()
    return {
        "version": STATUS_JSON_VERSION,
        "source": state.source,
        "last_applied_revision": state.last_applied_revision,
        "last_attempted_revision": state.last_attempted_revision,
        "generation": state.generation,
        "updated_at": iso_time(state.updated_at),
        "suspended": control.suspended,
        "suspended_reason": control.suspended_reason,
        "last_sync": sync_json(syncs[0]) if syncs else None,
        "history": [sync_json(row) for row in syncs[:history]],
        "resources": counts,
    }
