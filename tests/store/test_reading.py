"""On SQLite, reads never wait for a writer: while another connection holds the write lock (a
long apply does), readiness, status and snapshot loads still read the last committed state."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, text

from reconciler.apply import apply_revision
from reconciler.source import DirectorySource, validate_source
from reconciler.store.db import open_database, reading
from reconciler.store.read import read_actual, read_state
from reconciler.store.status import status_document
from tests.conftest import MANIFESTS


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_database(f"sqlite:///{tmp_path / 'state.sqlite3'}")

    @event.listens_for(engine, "connect")
    def _impatient(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout = 100")  # fail fast instead of 10 s

    engine.dispose()  # connections made from now on get the short timeout
    apply_revision(engine, validate_source(DirectorySource(MANIFESTS)))
    yield engine
    engine.dispose()


@pytest.fixture
def writer_holding_the_lock(sqlite_engine: Engine) -> Iterator[sqlite3.Connection]:
    database = sqlite_engine.url.database
    assert database is not None
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("UPDATE state SET updated_at = updated_at")
    yield holder
    holder.execute("ROLLBACK")
    holder.close()


def test_reads_answer_while_a_writer_holds_the_lock(
    sqlite_engine: Engine, writer_holding_the_lock: sqlite3.Connection
) -> None:
    with reading(sqlite_engine) as connection:
        assert read_state(connection).generation == 1
        assert read_actual(connection)
    assert status_document(sqlite_engine)["generation"] == 1


def test_writes_still_take_the_lock_first(
    sqlite_engine: Engine, writer_holding_the_lock: sqlite3.Connection
) -> None:
    with pytest.raises(Exception, match="locked"), sqlite_engine.begin() as connection:
        connection.execute(text("SELECT 1"))  # BEGIN IMMEDIATE waits, then gives up


def test_models_read_back_share_their_fields_sets_and_stay_correct(engine: Engine) -> None:
    """Issue 15 (memory): models built from rows share one ``model_fields_set`` object per
    distinct set of given fields; what each model says, dumps and copies is unchanged."""
    apply_revision(engine, validate_source(DirectorySource(MANIFESTS)))
    with reading(engine) as connection:
        first = read_actual(connection)
        second = read_actual(connection)
        connection.rollback()
    plugins = [s.model for (kind, _), s in first.items() if kind == "Plugin"]
    again = [s.model for (kind, _), s in second.items() if kind == "Plugin"]
    for one, other in zip(plugins, again, strict=True):
        assert one == other
        assert one.metadata.model_fields_set is other.metadata.model_fields_set
        assert one.model_dump(exclude_unset=True) == other.model_dump(exclude_unset=True)
    model = plugins[0]
    before = set(model.metadata.model_fields_set)
    copied = model.metadata.model_copy(update={"description": "changed"})
    assert "description" in copied.model_fields_set
    assert copied.model_fields_set is not model.metadata.model_fields_set
    assert model.metadata.model_fields_set == before  # the copy did not touch the shared set
    assert model.metadata.description != "changed"
