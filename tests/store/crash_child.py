"""Child process for the crash test: apply a revision and SIGKILL ourselves at a chosen point.

``python -m tests.store.crash_child URL REPO REF POINT`` where POINT is ``statement:N`` (just
before the N-th SQL statement), ``commit`` (as the transaction commits) or ``published``
(after the commit, before publishing). Prints the number of statements when it survives.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import event

from reconciler.apply import apply_revision
from reconciler.source import GitSource, validate_source
from reconciler.store.db import open_database


def main() -> None:
    url, repo, ref, point = sys.argv[1:5]
    engine = open_database(url)
    revision = validate_source(GitSource(Path(repo), ref=ref, path="manifests"))
    statements = 0

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def before_statement(*_args: Any) -> None:
        nonlocal statements
        statements += 1
        if point == f"statement:{statements}":
            die()

    event.listen(engine, "before_cursor_execute", before_statement)
    if point == "commit":
        event.listen(engine, "commit", lambda _connection: die())
    apply_revision(
        engine, revision, on_committed=lambda _g: die() if point == "published" else None
    )
    print(statements)


main()
