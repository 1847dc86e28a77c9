"""A daemon that remembers a revision it did not apply itself: the benchmarks' warm-up.

Beside the daemon (``daemon.py``). The passes of a daemon that has been running leave the
applied revision in its memory, so that the next pass goes by what changed; a benchmark that
starts a daemon on a database already at a revision gets the same memory here, untimed.
"""

from __future__ import annotations

from reconciler.daemon import Daemon
from reconciler.incremental import AppliedRevision
from reconciler.store.db import reading
from reconciler.store.read import read_state


def remember_applied(daemon: Daemon) -> bool:
    """Read and validate the followed revision and remember it if the database is at it.
    True when remembered."""
    snapshot = daemon.follower.read()
    revision = daemon.validated(snapshot)
    with reading(daemon.engine) as connection:
        state = read_state(connection)
        connection.rollback()
    applied = (
        state.source == daemon.settings.source_name
        and snapshot.digest is not None
        and state.last_applied_digest == snapshot.digest
    )
    if not (revision.valid and applied and state.fingerprint_key is not None):
        return False
    daemon.memory = AppliedRevision.of(
        revision,
        snapshot,
        generation=state.generation,
        fingerprint_key=state.fingerprint_key,
    )
    return True
