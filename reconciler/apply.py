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

Steps 2-5 run in order over one ``_Pass`` in one transaction, each with the same signature;
the one that decides the outcome ends the pass, and ``_record`` then writes the sync record and
the state row from the pass, whatever the outcome. A failure rolls the transaction back; the
attempt is then recorded as ``failed`` in a transaction of its own (a bug without its text,
which may hold data). Database errors reach the caller as sentences (translated in
``store/db.py``), never as SQL with its parameters. Prune is scoped: only rows whose
``source`` is this source are ever deleted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, Engine, insert, select, text, update

from reconciler.desired import Identity, ResourceState, desired_state
from reconciler.errors import ApplyRefused, ApplyUnavailable, DatabaseError, TemporaryError
from reconciler.incremental import Planned
from reconciler.plan import Plan, compute_plan
from reconciler.progress import Progress
from reconciler.sam.diagnostics import Diagnostic
from reconciler.sam.revision import Revision
from reconciler.source import Peek
from reconciler.store import schema
from reconciler.store.changes import record_changes
from reconciler.store.db import reading, translated_errors
from reconciler.store.read import read_actual, read_state
from reconciler.store.write import write_plan

Outcome = Literal["applied", "unchanged", "up-to-date", "invalid", "refused", "failed"]
DEFAULT_SOURCE = "default"
ALLOW_EMPTY_HINT = "(pass --allow-empty if that is intended)"
GENERATION_CHANNEL = "samops_generation"
"""PostgreSQL channel on which each applied generation is announced (after commit)."""


class StalePlan(Exception):
    """A plan made by what changed no longer fits the database (another applier moved it):
    nothing was written; plan against the rows instead."""


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
    fingerprint_key: str | None = field(default=None, repr=False)
    """The database's fingerprint key after the pass (None when it has none or was not read)."""
    desired: Mapping[Identity, ResourceState] | None = field(default=None, repr=False)
    """The desired state this pass planned with, when it planned (the applier's memory)."""

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


@dataclass(slots=True)
class _Pass:
    """What one apply knows so far. Each step reads it and fills in its part; the record at
    the end is written from it, whichever step ended the pass."""

    revision: Revision
    attempt: _Attempt
    allow_empty: bool
    progress: Progress | None
    generation: int = 0
    outcome: Outcome = "failed"
    plan: Plan = field(default_factory=lambda: Plan(()))
    errors: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    stored_key: str | None = None
    """The database's fingerprint key, as the pass found it."""
    planned: Planned | None = None
    """A plan made by what changed (``incremental.py``), used while the database is where it
    was made; None: plan against the rows."""
    create_fields: bool = True
    """Whether the plan lists the fields of what it creates (``compute_plan``)."""
    new_key: str | None = None
    """The database's fingerprint key, when this pass made it (the first apply)."""
    desired: dict[Identity, ResourceState] = field(default_factory=dict)

    @property
    def applied(self) -> bool:
        return self.outcome in ("applied", "unchanged")

    def result(self) -> ApplyResult:
        errors = self.revision.errors if self.outcome == "invalid" else []
        return ApplyResult(
            self.outcome,
            self.attempt.revision,
            self.generation,
            self.plan,
            errors=errors,
            message=self.message,
            fingerprint_key=self.new_key or self.stored_key,
            desired=self.desired if self.planned is None else None,
        )


Step = Callable[[Connection, _Pass], bool]
"""A step of an apply, inside its transaction: True ends the pass (its outcome is set)."""


def _refuse_invalid(connection: Connection, run: _Pass) -> bool:
    """2. A revision with errors changes nothing but its record: the last good state serves."""
    if run.revision.valid:
        return False
    run.outcome = "invalid"
    run.errors = [d.to_json() for d in run.revision.errors]
    return True


def _plan_and_guard(connection: Connection, run: _Pass) -> bool:
    """3-4. Plan against the rows as they are now (the state row is locked); refuse a plan
    that deletes every LLM client unless allowed. A plan made by what changed is used as it
    is: ``apply_revision`` checked that the database is where it was made, and its maker
    sends a plan that would delete every client down this path instead."""
    if run.planned is not None:
        run.plan, run.desired = run.planned.plan, dict(run.planned.desired)
        return False
    run.new_key = None if run.stored_key else secrets.token_hex(32)
    key = bytes.fromhex(run.stored_key or run.new_key or "")
    desired = desired_state(run.revision.resources, fingerprint_key=key)
    actual = read_actual(connection, source=run.attempt.source)
    run.plan = compute_plan(desired, actual, create_fields=run.create_fields)
    run.desired = desired
    if run.plan.deletes_every("LLMClient", actual) and not run.allow_empty:
        run.outcome = "refused"
        run.message = f"refused: this revision would delete every LLM client {ALLOW_EMPTY_HINT}"
        run.errors = [
            {"severity": "error", "code": "would-delete-all-clients", "message": run.message}
        ]
        run.new_key = None
        return True
    return False


def _write(connection: Connection, run: _Pass) -> bool:
    """5. Every change, in dependency order; the generation goes up when anything changed,
    with a record of what it changed (``store/changes.py``, for serving processes). On
    PostgreSQL the generation is announced in the transaction (delivered on commit)."""
    source, revision = run.attempt.source, run.attempt.revision
    write_plan(
        connection, run.plan, run.desired, source=source, revision=revision, progress=run.progress
    )
    run.outcome = "unchanged" if run.plan.empty else "applied"
    run.generation += 0 if run.plan.empty else 1
    if not run.plan.empty:
        record_changes(connection, run.generation, run.plan)
    if not run.plan.empty and connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_notify(:channel, :generation)"),
            {"channel": GENERATION_CHANNEL, "generation": str(run.generation)},
        )
    return True


STEPS: tuple[Step, ...] = (_refuse_invalid, _plan_and_guard, _write)


def _record(connection: Connection, run: _Pass) -> None:
    """The one summary of a pass: the sync record and the state row, in the pass's
    transaction; the applied files' digest and a new fingerprint key when it applied."""
    attempt, plan = run.attempt, run.plan
    connection.execute(
        insert(schema.syncs).values(
            source=attempt.source,
            revision=attempt.revision,
            started_at=attempt.started,
            finished_at=_now(),
            outcome=run.outcome,
            created=plan.count("create"),
            updated=plan.count("update"),
            deleted=plan.count("delete"),
            generation=run.generation,
            duration_ms=int((time.perf_counter() - attempt.started_clock) * 1000),
            errors=run.errors,
        )
    )
    values: dict[str, Any] = {
        "source": attempt.source,
        "last_attempted_revision": attempt.revision,
        "generation": run.generation,
        "updated_at": _now(),
    }
    if run.applied:
        values["last_applied_revision"] = attempt.revision
        values["last_applied_digest"] = run.revision.digest
    if run.new_key is not None:
        values["fingerprint_key"] = run.new_key
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
    planned: Planned | None = None,
    create_fields: bool = True,
) -> ApplyResult:
    """Make the rows of ``source`` equal ``revision`` in one transaction (see module doc).
    Its digest, when known, is recorded, for ``apply_if_files_unchanged``. With ``planned``
    (``incremental.py``: ``revision`` then holds only the changed resources), raises
    ``StalePlan``, having written nothing, when the database is no longer where the plan was
    made. Without ``create_fields`` the plan names what it creates without its fields (the
    daemon's)."""
    started, started_clock = _now(), time.perf_counter()
    repeated = _already_attempted(engine, revision, source, allow_empty)  # 1.
    if repeated is not None:
        return repeated
    run = _Pass(
        revision, _Attempt(source, revision.revision, started, started_clock), allow_empty, progress
    )
    run.planned, run.create_fields = planned, create_fields
    try:
        with translated_errors(str(engine.url)), engine.begin() as connection:
            state = read_state(connection, for_update=True)  # appliers take turns
            run.generation, run.stored_key = state.generation, state.fingerprint_key
            if planned is not None and (
                state.generation != planned.generation
                or state.fingerprint_key != planned.fingerprint_key
                or state.source != source
            ):
                raise StalePlan(f"the database moved to generation {state.generation}")
            for step in STEPS:
                if step(connection, run):
                    break
            _record(connection, run)
    except StalePlan:
        raise
    except DatabaseError as exc:
        _record_failure(engine, str(exc), run)
        failed = ApplyUnavailable if isinstance(exc, TemporaryError) else ApplyRefused
        raise failed(
            f"applying {revision.revision[:12]} failed and changed nothing: {exc}"
        ) from exc
    except Exception as exc:  # a bug: recorded without its text (it may hold data), not retried
        _record_failure(engine, f"internal error ({type(exc).__name__}); see the log", run)
        raise
    if on_committed is not None and run.outcome == "applied":  # 6. publish, after the commit
        on_committed(run.generation)
    return run.result()


def _already_attempted(
    engine: Engine, revision: Revision, source: str, allow_empty: bool
) -> ApplyResult | None:
    """1. A read-only look: the same revision again writes nothing and says what it was
    recorded as (None: attempt it)."""
    rev = revision.revision
    with reading(engine) as connection:
        current = read_state(connection)
        last_outcome = _last_outcome(connection)
        connection.rollback()
    if current.last_attempted_revision != rev or current.source != source:
        return None
    short = rev[:12]
    if current.last_applied_revision == rev:
        return ApplyResult(
            "up-to-date", rev, current.generation, fingerprint_key=current.fingerprint_key
        )
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
    return None


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
        run = _Pass(Revision(peek.revision, digest=peek.digest), attempt, False, None)
        run.generation, run.outcome = state.generation, "unchanged"
        _record(connection, run)
    return ApplyResult(
        "unchanged",
        peek.revision,
        state.generation,
        message="its manifests are those of the applied revision; nothing was read",
    )


def _record_failure(engine: Engine, message: str, run: _Pass) -> None:
    """A failed pass, recorded in a transaction of its own after its own rolled back. Best
    effort: the database may be the very thing that failed."""
    run.outcome, run.plan, run.new_key = "failed", Plan(()), None
    run.errors = [
        {"severity": "error", "code": "apply-failed", "message": message.splitlines()[0][:500]}
    ]
    with contextlib.suppress(Exception), engine.begin() as connection:
        run.generation = read_state(connection, for_update=True).generation
        _record(connection, run)


def plan_revision(engine: Engine, revision: Revision, *, source: str = DEFAULT_SOURCE) -> Plan:
    """What ``apply_revision`` would change (read-only; the revision must be valid)."""
    with translated_errors(str(engine.url)), reading(engine) as connection:
        key = read_state(connection).fingerprint_key
        actual = read_actual(connection, source=source)
        connection.rollback()
    if key is None:  # nothing keyed is stored yet: any key compares the same
        return compute_plan(desired_state(revision.resources), actual)
    return compute_plan(
        desired_state(revision.resources, fingerprint_key=bytes.fromhex(key)), actual
    )
