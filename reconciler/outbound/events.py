"""What samops tells the outside world: one ``Event`` per thing that happened.

Publish stage, after the fact. The daemon makes sync and control events
(``sync_started`` when a pass reads a revision, ``sync_succeeded``, ``sync_failed``,
``sync_recovered`` for the first success after a failure, ``suspended``, ``resumed``); a
serving process makes budget events (``budget_warning``, ``budget_blocked``) for the crossings
it settles. Each event carries a ``dedupe`` key (kind, revision and reason): the dispatcher
sends an event whose key it has sent before to no one (Flux's rule: a stuck commit pages once,
not at every retry).

Events are plain data and hold no secret: errors as their ``file:line:col`` sentences (which
never echo a secret value), budgets by name and amounts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal[
    "sync_started",
    "sync_succeeded",
    "sync_failed",
    "sync_recovered",
    "suspended",
    "resumed",
    "budget_warning",
    "budget_blocked",
]
Severity = Literal["info", "warning", "error"]
NOTIFIED: frozenset[str] = frozenset(
    {"sync_failed", "sync_recovered", "suspended", "resumed", "budget_warning", "budget_blocked"}
)
"""The kinds sent to webhooks and Slack; commit statuses take the sync kinds."""
ERRORS_SENT = 5
EVENT_JSON_VERSION = 1


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class Event:
    kind: Kind
    severity: Severity
    summary: str
    """One sentence a person reads first."""
    revision: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    """What, beside kind and revision, makes this event different from an earlier one."""
    at: dt.datetime = field(default_factory=_now)

    @property
    def dedupe(self) -> str:
        raw = f"{self.kind}\0{self.revision or ''}\0{self.reason}"
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def to_json(self) -> dict[str, Any]:
        """The body of a generic webhook (``docs/daemon.md``, Notifications)."""
        return {
            "version": EVENT_JSON_VERSION,
            "kind": self.kind,
            "severity": self.severity,
            "summary": self.summary,
            "revision": self.revision,
            "at": self.at.isoformat(),
            "details": self.details,
            "dedupe": self.dedupe,
        }


def error_lines(errors: list[dict[str, Any]]) -> list[str]:
    """The first errors of a revision as ``file:line:col: message`` sentences."""
    lines = []
    for error in errors[:ERRORS_SENT]:
        where = ":".join(
            str(part)
            for part in (error.get("file"), error.get("line"), error.get("column"))
            if part is not None
        )
        lines.append(f"{where}: {error.get('message', '')}" if where else str(error["message"]))
    return lines


def sync_event(
    outcome: str,
    revision: str,
    *,
    generation: int,
    errors: list[dict[str, Any]],
    message: str,
    failing_before: bool,
) -> Event:
    """The event of a finished pass (the caller skips passes that read no revision)."""
    short = revision[:12]
    if outcome in ("applied", "unchanged", "up-to-date"):
        details = {"outcome": outcome, "generation": generation}
        if failing_before:
            summary = f"samops recovered: {short} is {outcome}, generation {generation}"
            return Event("sync_recovered", "info", summary, revision, details)
        summary = f"samops: {short} is {outcome}, generation {generation}"
        return Event("sync_succeeded", "info", summary, revision, details)
    lines = error_lines(errors)
    count = len(errors)
    if count:
        what = f"{count} error{'s' * (count != 1)}: {lines[0]}"
    else:
        what = message or "the pass failed"
    summary = f"samops could not apply {short} ({outcome}): {what}"
    details = {"outcome": outcome, "errors": lines, "errors_total": count, "message": message}
    return Event(
        "sync_failed", "error", summary, revision, details, reason=lines[0] if lines else message
    )
