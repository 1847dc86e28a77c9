"""Heartbeats: each serving process says which generation it serves and whether it leads.

Beside the serve stage. Every few seconds, and at once when it loads a new generation, a
process upserts its row in ``processes`` (host, pid, role, leads, served generation); the
console's overview reads the rows seen recently (``fleet``), so an operator sees which replica
serves which generation without asking each one. A clean stop deletes the row; rows of
processes that died are ignored after ``STALE_AFTER`` and deleted after ``FORGET_AFTER``. A
database outage only delays the next beat: nothing here can stop a process from serving.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from reconciler.store import schema
from reconciler.store.db import reading
from reconciler.store.status import iso_time

log = logging.getLogger("samops.serve.heartbeat")
INTERVAL_SECONDS = 5.0
STALE_AFTER = dt.timedelta(seconds=30)
FORGET_AFTER = dt.timedelta(hours=1)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Heartbeat:
    engine: Engine
    role: str
    """``run`` (reconciler and server), ``serve`` (a replica) or ``worker``."""
    served_generation: Callable[[], int]
    leads: Callable[[], bool] = lambda: False
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    started_at: dt.datetime = field(default_factory=_now)
    _beat: asyncio.Event = field(default_factory=asyncio.Event)

    def now(self) -> None:
        """Beat at once (a new generation is served)."""
        self._beat.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._beat.clear()
            try:
                await asyncio.to_thread(self._write, self.served_generation(), self.leads())
            except Exception as exc:  # an outage delays the beat; serving goes on
                log.debug("heartbeat not written: %s", type(exc).__name__)
            waits = {asyncio.ensure_future(e.wait()) for e in (stop, self._beat)}
            try:
                await asyncio.wait(waits, timeout=INTERVAL_SECONDS, return_when="FIRST_COMPLETED")
            finally:
                for waiting in waits:
                    waiting.cancel()

    def forget(self) -> None:
        """Delete this process's row (a clean stop). Blocking."""
        with self.engine.begin() as connection:
            connection.execute(delete(schema.processes).where(schema.processes.c.id == self.id))

    def _write(self, generation: int, leads: bool) -> None:
        now = _now()
        values = {"leads": leads, "served_generation": generation, "seen_at": now}
        table = schema.processes
        with self.engine.begin() as connection:
            updated = connection.execute(update(table).where(table.c.id == self.id), values)
            if updated.rowcount == 0:
                connection.execute(
                    insert(table),
                    {
                        **values,
                        "id": self.id,
                        "host": socket.gethostname()[:200],
                        "pid": os.getpid(),
                        "role": self.role,
                        "started_at": self.started_at,
                    },
                )
                connection.execute(delete(table).where(table.c.seen_at < now - FORGET_AFTER))


def fleet(engine: Engine) -> list[dict[str, Any]]:
    """The processes seen in the last ``STALE_AFTER``, leaders first. Blocking."""
    table = schema.processes
    with reading(engine) as connection:
        rows = connection.execute(
            select(table)
            .where(table.c.seen_at >= _now() - STALE_AFTER)
            .order_by(table.c.leads.desc(), table.c.role, table.c.host, table.c.pid)
        ).mappings()
        found = [
            {
                "id": row["id"],
                "host": row["host"],
                "pid": row["pid"],
                "role": row["role"],
                "leads": row["leads"],
                "served_generation": row["served_generation"],
                "started_at": iso_time(row["started_at"]),
                "seen_at": iso_time(row["seen_at"]),
            }
            for row in rows
        ]
        connection.rollback()
    return found
