"""The serve tests share the daemon tests' repository and process fixtures, and the ways to
make a database fail (``outages.py``)."""

import pytest
from sqlalchemy import Engine

from tests.daemon.conftest import repo, start_daemon
from tests.serve.outages import Outages

__all__ = ["repo", "start_daemon"]


@pytest.fixture
def outages(engine: Engine, postgres_admin: Engine | None) -> Outages:
    """Real ways to make ``engine``'s database fail (``outages.py``)."""
    return Outages(engine, postgres_admin)
