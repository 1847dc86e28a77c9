"""The serve tests share the daemon tests' repository fixture."""

from tests.daemon.conftest import repo

__all__ = ["repo"]
