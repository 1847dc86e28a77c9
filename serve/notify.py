"""Hearing about new generations from PostgreSQL: LISTEN samops_generation.

Publish stage, on serving processes that share a PostgreSQL database. Apply sends
``NOTIFY samops_generation, '<n>'`` in its transaction, so listeners hear it once the commit
is durable. A thread holds one autocommit psycopg connection, listens, and calls ``wake`` for
each notification; it reconnects with backoff if the connection drops. The generation poll
stays as the fallback (a lost notification, a restarted server), so correctness never
depends on this path, only latency does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import Engine

from reconciler.api import GENERATION_CHANNEL
from reconciler.errors import DatabaseUnavailable
from reconciler.store.db import driver_reason, translated_errors

log = logging.getLogger("samops.notify")


class GenerationListener:
    def __init__(self, engine: Engine, wake: Callable[[], None]) -> None:
        self.conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self.shown_url = engine.url.render_as_string(hide_password=True)
        self.wake = wake
        self.stopping = threading.Event()
        self.listening = threading.Event()
        self.thread = threading.Thread(
            target=self._listen_forever, name="samops-listen", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)

    def _listen_forever(self) -> None:
        delay = 0.5
        while not self.stopping.is_set():
            try:
                with (
                    translated_errors(self.shown_url),
                    psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn,
                ):
                    conn.execute(f"LISTEN {GENERATION_CHANNEL}")
                    self.listening.set()
                    delay = 0.5
                    while not self.stopping.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            self.wake()
            except DatabaseUnavailable as exc:
                self.listening.clear()
                log.warning(
                    "generation listener disconnected; retrying",
                    extra={"error": driver_reason(exc.__cause__ or exc)[:200], "retry_in_s": delay},
                )
                self.stopping.wait(delay)
                delay = min(delay * 2, 10.0)
