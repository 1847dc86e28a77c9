"""The whole-revision pass, in the daemon's process or in a child (``daemon.py``'s slow path).

A pass goes by what changed (``incremental.py``) while the daemon remembers the applied
revision; otherwise (a start, an invalid commit, a tree git cannot diff) it reads, validates and
plans every file. That holds every parse at once, about 200 MB at 20,000 files, and CPython
keeps most of those pages after the pass: a daemon that ran it in its own process would serve
with that peak for the rest of its life. Revisions of ``DaemonSettings.whole_pass_child_files``
files or more are therefore passed in a child process:

- the child is forked from multiprocessing's fork server, a clean process started once with
  samops imported; never a fork of the daemon itself, whose threads (the event loop, the
  watcher, database reads) may hold a lock at the moment of a fork;
- it reads the followed revision, validates it, applies it in one transaction and builds the
  memory of the next incremental pass, then sends back the outcome and that memory; its log
  records come back as they happen and are logged here, so they read like the daemon's own;
- it takes the daemon's environment and working folder as they are now, opens its own database
  connections, and shares nothing else (no parse cache, no metrics);
- when it exits, its memory returns to the system. When it dies (killed, out of memory) the
  pass failed transiently and is retried with backoff; when the daemon stops it kills the
  child, and the database rolls the child's transaction back.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import os
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any

from sqlalchemy import Engine

from reconciler.apply import ApplyResult, apply_revision
from reconciler.errors import SamopsError, TemporaryError
from reconciler.follow import Follower
from reconciler.incremental import AppliedRevision
from reconciler.plan import Change, Plan
from reconciler.progress import LoggedProgress
from reconciler.sam.revision import ParseCache, validate_files
from reconciler.sam.yamlread import ReadLimits
from reconciler.settings import DaemonSettings
from reconciler.source import RevisionFiles, UnreadFile
from reconciler.store.db import create_database_engine, translated_errors

log = logging.getLogger("samops.daemon")


@dataclass(slots=True)
class WholePass:
    """What a whole-revision pass leaves: its outcome, and the memory of the revision when the
    database is now at it (None otherwise)."""

    result: ApplyResult
    memory: AppliedRevision | None


def pass_whole(
    engine: Engine,
    snapshot: RevisionFiles,
    *,
    settings: DaemonSettings,
    cache: ParseCache,
    reread: Callable[[], RevisionFiles],
    on_committed: Callable[[int], None] | None = None,
) -> WholePass:
    """Validate and plan every file of ``snapshot`` (parses from ``cache`` when it has them,
    none added) and apply it; ``reread`` reads the revision's files when the snapshot left
    some unread that the cache does not hold. Long work logs its progress every few
    seconds."""
    options, limits = settings.load_options, ReadLimits()
    if any(
        isinstance(f, UnreadFile) and (f.path, f.blob, options, limits) not in cache
        for f in snapshot.files
    ):  # listed for the memory or the size, not read: read them all at once
        snapshot = reread()
    progress = LoggedProgress(log, snapshot.revision)
    revision = validate_files(
        snapshot.revision,
        snapshot.files,
        options=options,
        limits=limits,
        cache=cache,
        source_diagnostics=snapshot.diagnostics,
        digest=snapshot.digest,
        keep_new_parses=False,
        progress=progress,
    )
    result = apply_revision(
        engine,
        revision,
        source=settings.source_name,
        allow_empty=settings.allow_empty,
        on_committed=on_committed,
        progress=progress,
        create_fields=False,
    )
    memory = None
    if result.ok and revision.valid and result.fingerprint_key is not None:
        memory = AppliedRevision.of(
            revision,
            snapshot,
            generation=result.generation,
            fingerprint_key=result.fingerprint_key,
            desired=result.desired,
        )
    return WholePass(result, memory)


# --- in a child process -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Job:
    database_url: str
    follower: Follower
    settings: DaemonSettings
    environ: dict[str, str]
    folder: str
    log_level: int


class ChildPassError(RuntimeError):
    """A bug in the child's pass (not a ``SamopsError``): its traceback, as the child saw it."""


class RunningChild:
    """The child of the pass under way, so that a stopping daemon can kill it."""

    def __init__(self) -> None:
        self.process: BaseProcess | None = None

    def kill(self) -> None:
        process = self.process
        if process is not None and process.is_alive():
            process.kill()


def pass_whole_in_child(
    engine: Engine, follower: Follower, settings: DaemonSettings, running: RunningChild
) -> WholePass:
    """``pass_whole`` over the followed revision, read and applied in a child process (see
    the module doc). Blocks until the child answers; raises what the child raised."""
    job = _Job(
        database_url=engine.url.render_as_string(hide_password=False),
        follower=follower,
        settings=settings,
        environ=dict(os.environ),
        folder=os.getcwd(),
        log_level=logging.getLogger("samops").getEffectiveLevel(),
    )
    context = _context()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(job, sender), name="samops-whole-pass")
    process.daemon = True  # never outlives the daemon's interpreter
    process.start()
    sender.close()
    running.process = process
    try:
        return _outcome(receiver, process)
    finally:
        running.process = None
        receiver.close()
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join()


def _outcome(receiver: Connection, process: BaseProcess) -> WholePass:
    while True:
        try:
            message: tuple[str, Any] = receiver.recv()
        except EOFError:
            process.join(timeout=5)
            raise TemporaryError(
                f"the child process of the whole-revision pass ended ({_ending(process)}) "
                "before it answered; nothing it did was committed unless a later pass "
                "says so (hint: a killed or out-of-memory child; see the system log)"
            ) from None
        kind, payload = message
        if kind == "log":
            logging.getLogger(payload.name).handle(payload)
        elif kind == "done":
            done: WholePass = payload
            return done
        elif isinstance(payload, SamopsError):
            raise payload
        else:
            raise ChildPassError(f"the whole-revision pass failed in its child process:\n{payload}")


def _ending(process: BaseProcess) -> str:
    code = process.exitcode
    if code is None:
        return "still running"
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit status {code}"


_CONTEXT: ForkServerContext | None = None


def _context() -> ForkServerContext:
    """The fork server, with samops and the program's main module imported once, so that a
    child starts in milliseconds."""
    global _CONTEXT
    if _CONTEXT is None:
        context = multiprocessing.get_context("forkserver")
        assert isinstance(context, ForkServerContext)
        context.set_forkserver_preload(["__main__", __name__])
        _CONTEXT = context
    return _CONTEXT


def start_child_server() -> None:
    """Start the fork server now (it imports samops, about a second) rather than when the
    first large pass needs it: ``samops run`` calls this when the followed revision is
    large, so the start-up's other work hides the import."""
    from multiprocessing import forkserver

    _context()
    forkserver.ensure_running()


class _PipeHandler(logging.Handler):
    """In the child: every record, with its message formatted and its exception as text, to
    the parent."""

    def __init__(self, sender: Connection) -> None:
        super().__init__()
        self.sender = sender
        self.prepare = logging.handlers.QueueHandler.prepare.__get__(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sender.send(("log", self.prepare(record)))
        except Exception:  # the parent is gone: nobody to tell
            self.handleError(record)


def _child(job: _Job, sender: Connection) -> None:
    """The child's whole life: one pass, its outcome to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C in a terminal: end quietly
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.environ.clear()
    os.environ.update(job.environ)
    os.chdir(job.folder)
    root = logging.getLogger()
    root.handlers[:] = [_PipeHandler(sender)]
    logging.getLogger("samops").setLevel(job.log_level)
    log.debug("whole-revision pass in a child process", extra={"pid": os.getpid()})
    engine = create_database_engine(job.database_url, create=False)
    try:
        with translated_errors(job.database_url):
            done = pass_whole(
                engine,
                job.follower.read(lambda _path, _blob: True),  # listed; read at once below
                settings=job.settings,
                cache=ParseCache(max_entries=0),
                reread=job.follower.read,
            )
        done.result = _lean(done.result)
        sender.send(("done", done))
    except SamopsError as exc:
        sender.send(("failed", exc))
    except Exception:
        sender.send(("failed", traceback.format_exc()))
    finally:
        engine.dispose()
        sender.close()


def _lean(result: ApplyResult) -> ApplyResult:
    """The outcome as the daemon uses it (its log line and metrics count the plan's
    changes): the changes without their field values (at 10,000 clients, hundreds of
    thousands of them, which nothing after the pass reads), and no desired state."""
    changes = tuple(Change(c.action, c.kind, c.name, c.file) for c in result.plan.changes)
    return replace(result, plan=Plan(changes), desired=None)
