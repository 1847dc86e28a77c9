"""Leadership: exactly one daemon applies at a time; the others stand by.

Used by the daemon before every pass. On PostgreSQL, a session-level advisory lock held on a
dedicated connection: when the leader dies, its connection closes, the server releases the
lock, and a standby's next attempt (every ``control_poll_seconds``) takes over. On SQLite,
where every daemon shares one machine, an exclusive ``flock`` on a file beside the database
plays the same role. Apply also locks the state row, so even a mistaken second leader could
not apply concurrently.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, text

LOCK_NAMESPACE = "samops reconciler"


class LeaderLock(Protocol):
    def try_acquire(self) -> bool:
        """True when this process is (still, or now) the leader."""

    def release(self) -> None: ...


def lock_key(source_name: str) -> int:
    """A stable signed 64-bit key for ``pg_try_advisory_lock``."""
    digest = hashlib.sha256(f"{LOCK_NAMESPACE}\0{source_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresLeaderLock:
    def __init__(self, engine: Engine, source_name: str) -> None:
        self.engine = engine
        self.key = lock_key(source_name)
        self.connection: Connection | None = None

    def try_acquire(self) -> bool:
        if self.connection is not None:
            try:  # still alive? a dead connection means the lock is gone
                self.connection.execute(text("SELECT 1"))
                self.connection.commit()
                return True
            except Exception:
                self.release()
        connection = self.engine.connect()
        try:
            got = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key})
            acquired = bool(got.scalar())
            connection.commit()
        except Exception:
            connection.close()
            raise
        if acquired:
            self.connection = connection
        else:
            connection.close()
        return acquired

    def release(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                self.connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
                self.connection.commit()
            with contextlib.suppress(Exception):
                self.connection.close()
            self.connection = None


class FileLeaderLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.descriptor: int | None = None

    def try_acquire(self) -> bool:
        if self.descriptor is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return False
        self.descriptor = descriptor
        return True

    def release(self) -> None:
        if self.descriptor is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self.descriptor, fcntl.LOCK_UN)
            os.close(self.descriptor)
            self.descriptor = None


def leader_lock_for(engine: Engine, source_name: str) -> LeaderLock:
    if engine.dialect.name == "postgresql":
        return PostgresLeaderLock(engine, source_name)
    database = engine.url.database or "samops"
    return FileLeaderLock(Path(f"{database}.{source_name}.leader.lock"))


def leader_present(engine: Engine, source_name: str) -> bool:
    """Whether a daemon leads ``source_name`` on this database right now, judged by the lock it
    holds while it follows (``samops reconcile``, ``suspend`` and ``resume`` say whether anyone
    will act). Reads only: on PostgreSQL ``pg_locks``; on SQLite a non-blocking ``flock`` probe
    of an existing lock file, released at once (a daemon that polls in that instant retries at
    its next poll)."""
    if engine.dialect.name == "postgresql":
        key = lock_key(source_name) & 0xFFFF_FFFF_FFFF_FFFF
        with engine.connect() as connection:
            held = connection.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database()) "
                    "AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1"
                ),
                {"high": key >> 32, "low": key & 0xFFFF_FFFF},
            ).scalar()
        return bool(held)
    lock = leader_lock_for(engine, source_name)
    assert isinstance(lock, FileLeaderLock)
    try:
        descriptor = os.open(lock.path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)  # closing releases a lock this probe took
    return False
