"""Commands to a running daemon, through the database: suspend, resume, reconcile now.

Like Flux's annotations on the API server, the request is a write to shared state, so
``samops suspend`` works from any host that reaches the database; the daemon reads the state
row on every wake-up (at least every ``control_poll_seconds``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from reconciler.store import schema


@dataclass(frozen=True, slots=True)
class Control:
    suspended: bool = False
    suspended_reason: str | None = None
    reconcile_requested_at: dt.datetime | None = None


def read_control(connection: Connection) -> Control:
    row = connection.execute(
        select(
            schema.state.c.suspended,
            schema.state.c.suspended_reason,
            schema.state.c.reconcile_requested_at,
        ).where(schema.state.c.id == 1)
    ).first()
    if row is None:
        return Control()
    return Control(bool(row.suspended), row.suspended_reason, row.reconcile_requested_at)


def _upsert(engine: Engine, values: dict[str, Any]) -> None:
    with engine.begin() as connection:
        exists = connection.execute(select(schema.state.c.id).where(schema.state.c.id == 1))
        if exists.first() is None:
            connection.execute(
                insert(schema.state).values(
                    id=1, generation=0, updated_at=dt.datetime.now(dt.UTC), **values
                )
            )
        else:
            connection.execute(update(schema.state).where(schema.state.c.id == 1).values(values))


def set_suspended(engine: Engine, suspended: bool, reason: str | None = None) -> None:
    _upsert(engine, {"suspended": suspended, "suspended_reason": reason if suspended else None})


def request_reconcile(engine: Engine) -> dt.datetime:
    """Ask the daemon for a pass now; returns the request's time."""
    now = dt.datetime.now(dt.UTC)
    _upsert(engine, {"reconcile_requested_at": now})
    return now
