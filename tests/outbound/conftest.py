"""Real ``samops run`` processes (``tests/daemon/conftest.py``) for the outbound tests."""

from tests.daemon.conftest import repo, start_daemon  # noqa: F401 - fixtures
