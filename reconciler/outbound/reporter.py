"""The daemon's side of the outbound: its passes and control changes, as events.

Publish stage. The daemon tells its ``SyncReporter`` when a pass starts reading a revision,
how it ended, and what the control row says; the reporter remembers what the last pass did
(a success after a failure is a recovery) and whether reconciling is suspended (a change is
told once), and hands each ``Event`` to ``on_event`` (the process's ``Outbound.emit``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reconciler.outbound.events import Event, sync_event
from reconciler.store.control import Control


@dataclass
class SyncReporter:
    on_event: Callable[[Event], None] | None = None
    """Any thread; None: nobody listens."""
    _failing: bool = False
    _suspended: bool | None = None
    _suspensions: int = 0

    def _tell(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def started(self, revision: str) -> None:
        self._tell(Event("sync_started", "info", "", revision))

    def finished(
        self, outcome: str, revision: str, generation: int, errors: list[Any], message: str
    ) -> None:
        event = sync_event(
            outcome,
            revision,
            generation=generation,
            errors=errors,
            message=message,
            failing_before=self._failing,
        )
        self._failing = event.kind == "sync_failed"
        self._tell(event)

    def control(self, control: Control) -> None:
        """What the leader read of the control row: a change of suspension is told."""
        if control.suspended == self._suspended:
            return
        was, self._suspended = self._suspended, control.suspended
        if control.suspended:
            self._suspensions += 1
            why = control.suspended_reason or "no reason given"
            summary = f"samops is suspended: it applies nothing until resumed ({why})"
            reason = f"{self._suspensions}: {why}"
            self._tell(Event("suspended", "warning", summary, reason=reason))
        elif was:  # not at start-up: a daemon that starts active says nothing
            summary = "samops resumed: it applies new revisions again"
            self._tell(Event("resumed", "info", summary, reason=str(self._suspensions)))
