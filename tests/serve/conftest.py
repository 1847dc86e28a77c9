"""The serve tests share the daemon tests' repository and process fixtures."""

from tests.daemon.conftest import repo, start_daemon

__all__ = ["repo", "start_daemon"]
