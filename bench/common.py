"""Helpers every benchmark uses: free loopback ports, percentiles, the databases to run on.

A benchmark that needs a database gets a fresh one from ``fresh_database``: a SQLite file in
its temporary folder, or a new PostgreSQL database on the server of ``--database-url`` that is
dropped afterwards, so runs never see each other's rows.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

POSTGRES_URL = os.environ.get(
    "SAMOPS_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
"""The PostgreSQL server benchmarks create their throwaway databases on (any database of it)."""
KINDS = ("sqlite", "postgresql")
LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(samples: list[float], fraction: float) -> float:
    """The sample at ``fraction`` (0..1) of the sorted samples (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _psycopg(url: str) -> str:
    """Plain ``postgresql://`` URLs use the psycopg 3 driver this project installs."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def postgres_version(url: str) -> tuple[str | None, str]:
    """(the server's version, "") when PostgreSQL at ``url`` answers; (None, why) otherwise."""
    engine = create_engine(_psycopg(url), poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            version = connection.exec_driver_sql("SHOW server_version").scalar()
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines() or [type(exc).__name__]
        where = make_url(url).render_as_string(hide_password=True)
        return None, f"PostgreSQL at {where} is not reachable: {reason[0]}"
    finally:
        engine.dispose()
    return str(version), ""


@contextmanager
def fresh_database(
    kind: str, *, folder: Path, name: str, postgres_url: str, drop_attempts: int = 10
) -> Iterator[str]:
    """The URL of a new, empty database of ``kind``; a PostgreSQL one is dropped afterwards
    (retried ``drop_attempts`` times, half a second apart, if the server is coming back)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / name}.sqlite3"
        return
    admin = create_engine(_psycopg(postgres_url), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    database = f"samops_bench_{name}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{database}"')
    try:
        yield (
            make_url(_psycopg(postgres_url))
            .set(database=database)
            .render_as_string(hide_password=False)
        )
    finally:
        for _ in range(drop_attempts):
            try:
                with admin.connect() as connection:
                    connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                break
            except SQLAlchemyError:
                time.sleep(0.5)
        admin.dispose()
