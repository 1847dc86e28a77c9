"""On PostgreSQL, serving processes hear each applied generation as a notification, sent only
when the apply commits."""

from __future__ import annotations

import shutil
from pathlib import Path

from reconciler.apply import apply_revision
from reconciler.source import DirectorySource, validate_source
from reconciler.store.db import open_database
from serve.notify import GenerationListener
from tests.conftest import MANIFESTS
from tests.daemon.conftest import wait_for


def test_listener_hears_committed_generations(postgres_url: str, tmp_path: Path) -> None:
    engine = open_database(postgres_url)
    heard: list[int] = []
    listener = GenerationListener(engine, lambda: heard.append(1))
    listener.start()
    try:
        wait_for(listener.listening.is_set, what="LISTEN")
        folder = Path(shutil.copytree(MANIFESTS, tmp_path / "manifests"))
        apply_revision(engine, validate_source(DirectorySource(folder)))
        wait_for(lambda: len(heard) == 1, what="a notification")

        apply_revision(engine, validate_source(DirectorySource(folder)))  # nothing changes
        support = folder / "clients" / "support.yaml"
        support.write_text(support.read_text().replace("Charlie", "Chuck"))
        apply_revision(engine, validate_source(DirectorySource(folder)))
        wait_for(lambda: len(heard) == 2, what="a second notification")
    finally:
        listener.stop()
        engine.dispose()
    assert len(heard) == 2
