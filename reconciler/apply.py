"""Apply: make the database equal one revision, atomically, and record the attempt.

The last stage before Publish. ``apply_if_files_unchanged`` comes first, before any file is
read: a new revision whose digest (its git tree at the followed path, see
``source.RevisionFiles.digest``) is that of the applied revision has the same files, so it is
recorded as applied, ``unchanged``, in one small transaction, without reading, validating or
planning (a commit elsewhere in a monorepo). Otherwise ``apply_revision`` runs these steps:

1. **already attempted?** read the state row without a write transaction; the same revision
   again returns at once and writes nothing, reporting what it was recorded as: ``up-to-date``
   when it is applied, ``invalid`` or ``refused`` (with ``repeated``) when it was turned down;
2. **invalid?** a revision with errors records a failed sync (with its diagnostics) and
   changes nothing else: the last good state keeps serving;
3. **plan** inside the write transaction, against the rows as they are now (the state row is
   locked first on PostgreSQL, so two appliers run one after the other);
4. **guard** refuse a plan that deletes every LLM client, unless ``allow_empty``;
5. **write** every change, then the sync record and the state row, in the same transaction;
   the generation goes up by one when anything changed;
6. **publish** after the commit, never before: ``on_committed(generation)``; on PostgreSQL
   also ``NOTIFY samops_generation`` (sent in the transaction, delivered only on commit).

A failure in steps 3-5 rolls the transaction back; the attempt is then recorded as ``failed``
in a transaction of its own. Database errors reach the caller as sentences (translated in
``store/db.py``), never as SQL with its parameters. Prune is scoped: only rows whose
``source`` is this source are ever deleted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, Engine, insert, select, text, update

from reconciler.desired import desired_state
from reconciler.errors import ApplyRefused, ApplyUnavailable, DatabaseError, TemporaryError
from reconciler.plan import Plan, compute_plan
from reconciler.progress import Progress
from reconciler.sam.diagnostics import Diagnostic
from reconciler.sam.revision import Revision
from reconciler.source import Peek
from reconciler.store import schema
from reconciler.store.db import reading, translated_errors
from reconciler.store.read import read_actual, read_state
from reconciler.store.write import write_plan

Outcome = Literal["applied", "unchanged", "up-to-date", "invalid", "refused", "failed"]
DEFAULT_SOURCE = "default"
ALLOW_EMPTY_HINT = "(pass --allow-empty if that is intended)"
GENERATION_CHANNEL = "samops_generation"
"""PostgreSQL channel on which each applied generation is announced (after commit)."""


@dataclass(slots=True)
class ApplyResult:
    outcome: Outcome
    revision: str
    generation: int
    plan: Plan = field(default_factory=lambda: Plan(()))
    errors: list[Diagnostic] = field(default_factory=list)
    message: str = ""
    repeated: bool = False
    """The revision had already been attempted with this outcome; nothing was written now."""

    @property
    def ok(self) -> bool:
        return self.outcome in ("applied", "unchanged", "up-to-date")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class _Attempt:
    source: str
    revision: str
    started: dt.datetime
    started_clock: float


def _record(
    connection: Connection,
    attempt: _Attempt,
    *,
    outcome: str,
    plan: Plan,
    generation: int,
    errors: list[dict[str, Any]],
    applied: bool,
    digest: str | None = None,
    fingerprint_key: str | None = None,
) -> None:
    """The sync record and the state row, in the caller's transaction; ``digest`` is that
    of the applied files (recorded when ``applied``); ``fingerprint_key`` the database's new
    fingerprint key, when this apply made one."""
    connection.execute(
        insert(schema.syncs).values(
            source=attempt.source,
            revision=attempt.revision,
            started_at=attempt.started,
            finished_at=_now(),
            outcome=outcome,
            created=plan.count("create"),
            updated=plan.count("update"),
            deleted=plan.count("delete"),
            generation=generation,
            duration_ms=int((time.perf_counter() - attempt.started_clock) * 1000),
            errors=errors,
        )
    )
    values: dict[str, Any] = {
        "source": attempt.source,
        "last_attempted_revision": attempt.revision,
        "generation": generation,
        "updated_at": _now(),
    }
    if applied:
        values["last_applied_revision"] = attempt.revision
        values["last_applied_digest"] = digest
    if fingerprint_key is not None:
        values["fingerprint_key"] = fingerprint_key
    exists = connection.execute(select(schema.state.c.id).where(schema.state.c.id == 1)).first()
    if exists:
        connection.execute(update(schema.state).where(schema.state.c.id == 1).values(values))
    else:
        connection.execute(insert(schema.state).values(id=1, **values))


def _last_outcome(connection: Connection) -> str | None:
    return connection.execute(
        select(schema.syncs.c.outcome).order_by(schema.syncs.c.id.desc()).limit(1)
    ).scalar()


def apply_revision(
    engine: Engine,
    revision: Revision,
    *,
    source: str = DEFAULT_SOURCE,
    allow_empty: bool = False,
    on_committed: Callable[[int], None] | None = None,
    progress: Progress | None = None,
) -> ApplyResult:
    """Make the rows of ``source`` equal ``revision`` in one transaction (see module doc).
    Its digest, when known, is recorded, for ``apply_if_files_unchanged``."""
    started, started_clock = _now(), time.perf_counter()
    rev = revision.revision
    with reading(engine) as connection:  # 1. read-only look: attempted already?
        current = read_state(connection)
        last_outcome = _last_outcome(connection)
        connection.rollback()
    if current.last_attempted_revision == rev and current.source == source:
        short = rev[:12]
        if current.last_applied_revision == rev:
            return ApplyResult("up-to-date", rev, current.generation)
        if not revision.valid and last_outcome == "invalid":
            message = f"revision {short} was already attempted and was invalid: nothing written"
            return ApplyResult(
                "invalid",
                rev,
                current.generation,
                errors=revision.errors,
                message=message,
                repeated=True,
            )
        if last_outcome == "refused" and not allow_empty:
            message = (
                f"revision {short} was already attempted and was refused: it would delete every "
                f"LLM client; nothing written {ALLOW_EMPTY_HINT}"
            )
            return ApplyResult("refused", rev, current.generation, message=message, repeated=True)

    attempt = _Attempt(source, rev, started, started_clock)
    if not revision.valid:  # 2. invalid: record it, change nothing else
        generation = _record_attempt(
            engine, attempt, "invalid", [d.to_json() for d in revision.errors]
        )
        return ApplyResult("invalid", rev, generation, errors=revision.errors)

    try:
        with translated_errors(str(engine.url)), engine.begin() as connection:
            state = read_state(connection, for_update=True)  # 3. plan against rows as they are
            new_key = None if state.fingerprint_key else secrets.token_hex(32)
            key = bytes.fromhex(state.fingerprint_key or new_key or "")
            desired = desired_state(revision.resources, fingerprint_key=key)
            actual = read_actual(connection, source=source)
            plan = compute_plan(desired, actual)
            if plan.deletes_every("LLMClient", actual) and not allow_empty:  # 4. guard
                message = f"refused: this revision would delete every LLM client {ALLOW_EMPTY_HINT}"
                _record(
                    connection,
                    attempt,
                    outcome="refused",
                    plan=plan,
                    generation=state.generation,
                    errors=[
                        {
                            "severity": "error",
                            "code": "would-delete-all-clients",
                            "message": message,
                        }
                    ],
                    applied=False,
                )
                return ApplyResult("refused", rev, state.generation, plan, message=message)
            generation = state.generation + (0 if plan.empty else 1)  # 5. write
            write_plan(connection, plan, desired, source=source, revision=rev, progress=progress)
            if not plan.empty and connection.dialect.name == "postgresql":
                # Transactional: PostgreSQL delivers it to listeners only if this commits.
                connection.execute(
                    text("SELECT pg_notify(:channel, :generation)"),
                    {"channel": GENERATION_CHANNEL, "generation": str(generation)},
                )
            _record(
                connection,
                attempt,
                outcome="unchanged" if plan.empty else "applied",
                plan=plan,
                generation=generation,
                errors=[],
                applied=True,
                digest=revision.digest,
                fingerprint_key=new_key,
            )
    except DatabaseError as exc:
        _record_failure(engine, str(exc), attempt)
        failed = ApplyUnavailable if isinstance(exc, TemporaryError) else ApplyRefused
        raise failed(f"applying {rev[:12]} failed and changed nothing: {exc}") from exc
    except Exception as exc:  # a bug: recorded without its text (it may hold data), not retried
        _record_failure(engine, f"internal error ({type(exc).__name__}); see the log", attempt)
        raise
    if on_committed is not None and not plan.empty:  # 6. publish, after the commit
        on_committed(generation)
    return ApplyResult("unchanged" if plan.empty else "applied", rev, generation, plan)


def apply_if_files_unchanged(
    engine: Engine, peek: Peek, *, source: str = DEFAULT_SOURCE
) -> ApplyResult | None:
    """Step 0, before any file is read: when ``peek``'s digest is that of the applied
    revision of ``source``, record ``peek``'s revision as applied and unchanged (or report it
    up to date) and return the result; None when the files must be read and applied."""
    with reading(engine) as connection:
        current = read_state(connection)
        connection.rollback()
    if current.source != source or current.last_applied_digest != peek.digest:
        return None
    if current.last_applied_revision == peek.revision:
        return ApplyResult("up-to-date", peek.revision, current.generation)
    attempt = _Attempt(source, peek.revision, _now(), time.perf_counter())
    with translated_errors(str(engine.url)), engine.begin() as connection:
        state = read_state(connection, for_update=True)
        if state.source != source or state.last_applied_digest != peek.digest:
            return None  # another applier moved on meanwhile: read and apply as usual
        _record(
            connection,
            attempt,
            outcome="unchanged",
            plan=Plan(()),
            generation=state.generation,
            errors=[],
            applied=True,
            digest=peek.digest,
        )
    return ApplyResult(
        "unchanged",
        peek.revision,
        state.generation,
        message="its manifests are those of the applied revision; nothing was read",
    )


def _record_attempt(
    engine: Engine, attempt: _Attempt, outcome: str, errors: list[dict[str, Any]]
) -> int:
    """Record an attempt that changes nothing, in a transaction of its own; the generation."""
    with engine.begin() as connection:
        state = read_state(connection, for_update=True)
        _record(
            connection,
            attempt,
            outcome=outcome,
            plan=Plan(()),
            generation=state.generation,
            errors=errors,
            applied=False,
        )
    return state.generation


def _record_failure(engine: Engine, message: str, attempt: _Attempt) -> None:
    """Best effort: the database may be the very thing that failed."""
    error = {"severity": "error", "code": "apply-failed", "message": message.splitlines()[0][:500]}
    with contextlib.suppress(Exception):  # the original error is what the caller reports
        _record_attempt(engine, attempt, "failed", [error])


def plan_revision(engine: Engine, revision: Revision, *, source: str = DEFAULT_SOURCE) -> Plan:
    """What ``apply_revision`` would change (read-only; the revision must be valid)."""
    with reading(engine) as connection:
        key = read_state(connection).fingerprint_key
        actual = read_actual(connection, source=source)
        connection.rollback()
    if key is None:  # nothing keyed is stored yet: any key compares the same
        return compute_plan(desired_state(revision.resources), actual)
    return compute_plan(
        desired_state(revision.resources, fingerprint_key=bytes.fromhex(key)), actual
    )
