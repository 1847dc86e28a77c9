"""Connecting to the database and bringing its schema up to date.

Used by every command that touches state. SQLite is the default (a file in the data
directory); PostgreSQL is chosen with ``SAMOPS_DATABASE_URL``. Migrations are Alembic's, run
in-process at start (``open_database``) and by ``samops db upgrade``.

Only the commands that own the state (``apply``, ``run``, ``serve``, ``db upgrade``) create a
database or migrate it. Every other command opens it with ``open_existing_database``, which
creates nothing (no SQLite file, no data folder, no table) and says what it found instead: no
file, an empty database, a schema behind or ahead of this samops.

SQLAlchemy's and the drivers' exceptions are translated here, and only here
(``translated_errors``), into the ``DatabaseError`` branch of ``reconciler/errors.py`` with a
sentence and a hint, so commands never print a driver traceback and the loop knows whether to
retry:

- ``OperationalError``, ``InterfaceError``, a psycopg connection error: ``DatabaseUnavailable``
  (temporary: the database cannot be reached or used right now);
- any other ``DBAPIError`` (``IntegrityError``, ``DataError``...): ``DatabaseRefused``
  (permanent: the database refused a statement). The sentence is built from the error's
  structured parts (constraint, table and column names), never from the SQL statement or its
  parameters, which hold manifest data.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy.exc
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from reconciler.errors import (
    DatabaseError,
    DatabaseMisconfigured,
    DatabaseRefused,
    DatabaseUnavailable,
)
from reconciler.settings import setting

MIGRATIONS = Path(__file__).parent / "migrations"
DEFAULT_DATA_DIR = Path("data")


__all__ = ["DatabaseError", "DatabaseMisconfigured", "DatabaseRefused", "DatabaseUnavailable"]


def default_data_dir() -> Path:
    """``SAMOPS_DATA_DIR`` (default ``data``): the SQLite database, clones of remotes."""
    return Path(setting("SAMOPS_DATA_DIR") or DEFAULT_DATA_DIR)


def default_database_url() -> str:
    """``SAMOPS_DATABASE_URL``, else a SQLite file in the data directory."""
    url = setting("SAMOPS_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{default_data_dir() / 'samops.sqlite3'}"


def normalise_url(url: str) -> str:
    """Plain ``postgresql://`` URLs use the psycopg 3 driver this project installs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


def _shown(url: str) -> str:
    """``redacted`` for a URL that may not even parse."""
    try:
        return redacted(url)
    except sqlalchemy.exc.ArgumentError:
        return "..." + url.split("@", 1)[-1] if "@" in url else url


def _sqlite_setup(engine: Engine) -> None:
    """Foreign keys on, WAL for concurrent readers, and transactions that SQLAlchemy (not the
    sqlite3 module) begins, so a transaction covers exactly what the code says it does."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA busy_timeout = 10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")  # deferred: in WAL mode it never waits
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


READ_ONLY_OPTION = "samops_read_only"


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads only. On SQLite its transactions begin deferred, so a read never
    waits for a writer (WAL gives it the last committed state): readiness checks, snapshot
    loads and session history keep answering while a long apply holds the write lock. Other
    transactions begin ``IMMEDIATE`` there, so that a writer never fails half-way on a lock."""
    with engine.connect() as connection:
        yield connection.execution_options(**{READ_ONLY_OPTION: True})


def _parsed(url: str) -> Any:
    """The URL parsed, or a ``DatabaseError`` that shows it (password masked) with a hint."""
    try:
        return make_url(normalise_url(url))
    except sqlalchemy.exc.ArgumentError as exc:
        raise DatabaseMisconfigured(
            f"the database URL {_shown(url)!r} is not a URL SQLAlchemy can read (hint: "
            "postgresql://user@host:5432/db or sqlite:///path/to/file.sqlite3)"
        ) from exc


def create_database_engine(url: str, *, create: bool = True) -> Engine:
    """An engine on ``url``. With ``create=False`` a SQLite file (and its folder) must already
    exist: nothing is created on disk."""
    parsed = _parsed(url)
    url = parsed.render_as_string(hide_password=False)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            if not create and not Path(parsed.database).is_file():
                raise DatabaseMisconfigured(
                    f"there is no samops database at {parsed.database} (the SQLite file does "
                    "not exist) (hint: 'samops apply' or 'samops run' create it; set "
                    "SAMOPS_DATABASE_URL or --database-url to read another database)"
                )
            if create:
                folder = Path(parsed.database).parent
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise DatabaseMisconfigured(
                        f"cannot create the folder {folder} of the SQLite database: "
                        f"{exc.strerror} (hint: check the path in SAMOPS_DATABASE_URL or "
                        "SAMOPS_DATA_DIR)"
                    ) from exc
        engine = _with_driver(url)
        _sqlite_setup(engine)
        return engine
    return _with_driver(url, pool_pre_ping=True)


def _with_driver(url: str, **options: Any) -> Engine:
    """``create_engine``, whose driver import fails for a URL naming one samops does not
    install (``mysql://``, ``postgresql+asyncpg://``)."""
    try:
        return create_engine(url, **options)
    except ImportError as exc:
        raise DatabaseMisconfigured(
            f"the database URL {redacted(url)} names a driver samops does not install or "
            f"cannot use ({exc}) (hint: samops supports postgresql:// (psycopg 3) and "
            "sqlite:///)"
        ) from exc


TEMPORARY_SQLSTATES = ("08", "40", "53", "57P", "25006", "55P03")
"""SQLSTATEs that say "not now" rather than "never": connection exceptions, serialization
failures and deadlocks, exhausted resources, an operator's shutdown, a read-only server
(PostgreSQL in recovery, a standby during a fail-over), a lock not available."""


def temporary(exc: sqlalchemy.exc.SQLAlchemyError) -> bool:
    """Whether the database cannot be used right now (try again later), rather than that it
    refused this statement."""
    if isinstance(
        exc,
        sqlalchemy.exc.OperationalError
        | sqlalchemy.exc.InterfaceError
        | sqlalchemy.exc.TimeoutError,
    ):
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        sqlstate = getattr(getattr(exc.orig, "diag", None), "sqlstate", None) or ""
        return exc.connection_invalidated or sqlstate.startswith(TEMPORARY_SQLSTATES)
    return False


@contextmanager
def translated_errors(url: str) -> Iterator[None]:
    """The one place where SQLAlchemy's and the drivers' errors become ``DatabaseError``s:
    temporary ones ``DatabaseUnavailable``, refusals ``DatabaseRefused``, a missing driver
    ``DatabaseMisconfigured``. Anything else is a bug and propagates as it is."""
    try:
        yield
    except sqlalchemy.exc.NoSuchModuleError as exc:
        raise DatabaseMisconfigured(
            f"no driver for the database URL {_shown(url)} (hint: PostgreSQL URLs start "
            "with postgresql://, SQLite ones with sqlite:///)"
        ) from exc
    except sqlalchemy.exc.SQLAlchemyError as exc:
        if temporary(exc):
            raise DatabaseUnavailable(
                f"cannot use the database {redacted(url)}: {driver_reason(exc)} (hint: check "
                "SAMOPS_DATABASE_URL and that the server is running)"
            ) from exc
        if isinstance(exc, sqlalchemy.exc.DBAPIError):
            raise DatabaseRefused(refusal(exc)) from exc
        raise
    except psycopg.Error as exc:  # a connection of our own (LISTEN), outside SQLAlchemy
        raise DatabaseUnavailable(
            f"cannot use the database {redacted(url)}: {type(exc).__name__} (hint: check "
            "SAMOPS_DATABASE_URL and that the server is running)"
        ) from exc


def driver_reason(exc: BaseException) -> str:
    """The driver's own first line (never the statement or its parameters)."""
    orig = getattr(exc, "orig", None)
    lines = str(orig if orig is not None else exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


UNIQUE_VIOLATION = "23505"


def refusal(exc: sqlalchemy.exc.DBAPIError) -> str:
    """A sentence for a statement the database refused, without the statement or its values.

    PostgreSQL (psycopg) gives structured fields: an integrity error's primary message names
    only relations, columns and constraints; other errors are named by class and SQLSTATE, as
    their messages may quote a value. sqlite3's messages name constraints and columns, never
    values (``UNIQUE constraint failed: api_tokens.name``).
    """
    orig = exc.orig
    diag = getattr(orig, "diag", None)
    sqlstate = getattr(diag, "sqlstate", None) or ""
    if sqlstate.startswith("23"):
        reason = str(diag.message_primary)  # type: ignore[union-attr]
    elif sqlstate:
        reason = f"{type(orig).__name__} (SQLSTATE {sqlstate})"
    else:
        reason = str(orig).strip().splitlines()[0] if orig is not None else type(exc).__name__
    unique = sqlstate == UNIQUE_VIOLATION or reason.startswith("UNIQUE constraint failed")
    hint = (
        " (hint: another row already holds this value; a resource name or key digest may "
        "also be declared by another source sharing this database)"
        if unique
        else ""
    )
    return f"the database refused the change: {reason}{hint}"


def _alembic_config(engine: Engine | None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    command.upgrade(_alembic_config(engine), "head")


def head_revision() -> str:
    """The schema revision this samops expects (the newest migration)."""
    head = ScriptDirectory.from_config(_alembic_config(None)).get_current_head()
    assert head is not None
    return head


def schema_revision(engine: Engine) -> str | None:
    """The database's schema revision, None when no samops schema is there. Reads only."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def schema_is_current(engine: Engine) -> bool:
    return schema_revision(engine) == head_revision()


def open_existing_database(url: str | None = None) -> Engine:
    """An engine on an existing samops database whose schema is current; creates and migrates
    nothing. Anything else is a ``DatabaseError`` saying what was found and what to run."""
    url = url or default_database_url()
    with translated_errors(url):
        engine = create_database_engine(url, create=False)
        try:
            found = schema_revision(engine)
            _require_current(url, found)
        except BaseException:
            engine.dispose()
            raise
        return engine


def _require_current(url: str, found: str | None) -> None:
    head = head_revision()
    if found == head:
        return
    if found is None:
        raise DatabaseMisconfigured(
            f"the database {redacted(url)} holds no samops schema (hint: 'samops apply' or "
            "'samops run' fill it; 'samops db upgrade' creates the empty schema)"
        )
    known = {
        r.revision for r in ScriptDirectory.from_config(_alembic_config(None)).walk_revisions()
    }
    if found in known:
        raise DatabaseMisconfigured(
            f"the database {redacted(url)} has schema revision {found}, older than this "
            f"samops' {head} (hint: run 'samops db upgrade')"
        )
    raise DatabaseMisconfigured(
        f"the database {redacted(url)} has schema revision {found}, which this samops does "
        f"not know (its newest is {head}): a newer samops wrote it (hint: upgrade samops)"
    )


def open_database(url: str | None = None, *, migrate: bool = True) -> Engine:
    """An engine on ``url`` (default: ``default_database_url()``), schema up to date."""
    url = url or default_database_url()
    with translated_errors(url):
        engine = create_database_engine(url)
        if migrate and not schema_is_current(engine):
            upgrade(engine)
        return engine
