"""Progress of long work (reading files, validating, writing rows), reported to whoever watches.

Core functions take an optional ``Progress`` and call it as work advances; they never decide
how it is shown. The CLI passes a terminal reporter when standard error is a terminal and the
output is for people (``reconciler/cli/common.py``); everything else passes nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol


class Progress(Protocol):
    def __call__(self, stage: str, done: int, total: int) -> None:
        """``done`` of ``total`` items of ``stage`` (e.g. "files read", "rows written")."""


class LoggedProgress:
    """A ``Progress`` that logs (info) at most every ``PROGRESS_SECONDS``: a pass over a large
    revision says how far it is, a short one says nothing."""

    def __init__(self, logger: logging.Logger, revision: str) -> None:
        self.logger, self.revision = logger, revision
        self.next_at = time.monotonic() + PROGRESS_SECONDS

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now >= self.next_at and done < total:
            self.next_at = now + PROGRESS_SECONDS
            self.logger.info(
                f"{stage}: {done:,}/{total:,}",
                extra={"revision": self.revision, "done": done, "total": total},
            )


PROGRESS_SECONDS = 2.0
