"""Progress of long work (reading files, validating, writing rows), reported to whoever watches.

Core functions take an optional ``Progress`` and call it as work advances; they never decide
how it is shown. The CLI passes a terminal reporter when standard error is a terminal and the
output is for people (``reconciler/cli/common.py``); everything else passes nothing.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def __call__(self, stage: str, done: int, total: int) -> None:
        """``done`` of ``total`` items of ``stage`` (e.g. "files read", "rows written")."""
