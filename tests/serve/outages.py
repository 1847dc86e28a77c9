"""Real ways to make a serving process's database fail, for SQLite and PostgreSQL: the
session and usage writers' outage tests (``test_sessions.py``, ``test_usage.py``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text


class Outages:
    """Real ways to make the store's database fail, for SQLite and PostgreSQL."""

    def __init__(self, engine: Engine, admin: Engine | None) -> None:
        self.engine, self.admin = engine, admin
        self.max_pages: int | None = None
        if engine.dialect.name == "sqlite":

            @event.listens_for(engine, "connect")
            def _fail_fast(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.execute("PRAGMA busy_timeout = 50")
                if self.max_pages is not None:
                    dbapi_connection.execute(f"PRAGMA max_page_count = {self.max_pages}")

            engine.dispose()

    def _postgres(self, *statements: str) -> None:
        assert self.admin is not None
        name = self.engine.url.database
        with self.admin.connect() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement.format(name=name))
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )

    @contextmanager
    def unreachable(self) -> Iterator[None]:
        """Neither reads nor writes work."""
        if self.engine.dialect.name == "sqlite":
            # A held write lock is no outage for reads (they never wait for a writer), so the
            # file goes away: new connections fail with "unable to open database file". The
            # path becomes a dangling link in one rename, and the file comes back in one, after
            # its -wal and -shm: there is never a moment when the path is free, in which a
            # writer thread's new connection would create an empty database there (and see "no
            # such table" for as long as it lives: a read after the outage failed that way).
            path = Path(str(self.engine.url.database))
            self.engine.dispose()
            away = path.with_name(path.name + ".away")
            link = path.with_name(path.name + ".link")
            link.symlink_to(path.with_name(path.name + ".nowhere") / "database")
            os.link(path, away)
            os.replace(link, path)  # from here on, opening the path fails; nothing is created
            extras = [path.with_name(path.name + x) for x in ("-wal", "-shm")]
            moved = [(f, f.with_name(f.name + ".away")) for f in extras if f.exists()]
            for original, aside in moved:
                original.rename(aside)
            try:
                yield
            finally:
                for original, aside in moved:
                    aside.rename(original)
                os.replace(away, path)  # the dangling link gives way to the file at once
                self.engine.dispose()
            return
        self._postgres('ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            yield
        finally:
            self._postgres('ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

    @contextmanager
    def read_only(self) -> Iterator[None]:
        """Reads work, writes fail."""
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as connection:
                self.max_pages = connection.exec_driver_sql("PRAGMA page_count").scalar_one()
            self.engine.dispose()
            try:
                yield
            finally:
                self.max_pages = None
                self.engine.dispose()
            return
        self._postgres('ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        try:
            yield
        finally:
            self._postgres('ALTER DATABASE "{name}" RESET default_transaction_read_only')
